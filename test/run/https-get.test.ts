/**
 * httpsGet over a real TLS connection to a local server (test/fixtures/tls): the name is
 * resolved once through an injected resolver, the socket goes to the address that was checked,
 * the certificate is verified for the host name. Loopback is admitted only through the policy's
 * testOnlyAddresses; nothing reaches DNS or the internet.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { httpsGet, type HttpsGetOptions } from '../../src/run/https-get.js';
import type { Resolve } from '../../src/run/url-policy.js';
import { TEST_CA, TEST_HOST, startTestServer, type TestServer } from '../fixtures/tls/server.js';

/** Answers each question with the next of `answers` (the last one again when they run out). */
function resolver(...answers: string[][]) {
  const asked: string[] = [];
  const resolve: Resolve = async (hostname) => {
    const answer = answers[Math.min(asked.length, answers.length - 1)]!;
    asked.push(hostname);
    return answer.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  return { resolve, asked };
}

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function serve(handle: (req: IncomingMessage, res: ServerResponse) => void) {
  server = await startTestServer(handle);
  return server;
}

/** The options of a test: the local server's CA, loopback admitted, a short timeout. */
function local(resolve: Resolve, extra: HttpsGetOptions = {}): HttpsGetOptions {
  return { resolve, ca: TEST_CA, testOnlyAddresses: ['127.0.0.1'], timeoutMs: 5_000, ...extra };
}

describe('httpsGet', () => {
  it('reads a body over TLS from the checked address, with the host name as SNI and Host', async () => {
    const s = await serve((_req, res) => res.end('{"version":"5.0.0"}'));
    const dns = resolver(['127.0.0.1']);
    const body = await httpsGet(`https://${TEST_HOST}:${s.port}/iss/experiment.json?v=1`, local(dns.resolve));
    expect(body.toString()).toBe('{"version":"5.0.0"}');
    expect(dns.asked).toEqual([TEST_HOST]);
    expect(s.seen).toEqual([{ url: '/iss/experiment.json?v=1', host: `${TEST_HOST}:${s.port}`, servername: TEST_HOST }]);
  });

  it('connects to the address that was checked even when DNS answers differently afterwards (rebinding)', async () => {
    const s = await serve((_req, res) => res.end('checked'));
    // First answer: the (test-admitted) server. Any later answer: the metadata service.
    const dns = resolver(['127.0.0.1'], ['169.254.169.254']);
    expect((await httpsGet(`https://${TEST_HOST}:${s.port}/x`, local(dns.resolve))).toString()).toBe('checked');
    expect(dns.asked).toEqual([TEST_HOST]);
    expect(s.seen).toHaveLength(1);
  });

  it('refuses before connecting when the name resolves to loopback and the test has not admitted it', async () => {
    const s = await serve((_req, res) => res.end('secret'));
    const dns = resolver(['127.0.0.1']);
    await expect(httpsGet(`https://${TEST_HOST}:${s.port}/x`, { resolve: dns.resolve, ca: TEST_CA })).rejects.toThrow(
      `${TEST_HOST} resolves to 127.0.0.1, which is a loopback address (this machine itself)`,
    );
    expect(s.connections()).toBe(0);
  });

  it('refuses when any of the addresses is internal, without connecting to the good one', async () => {
    const s = await serve((_req, res) => res.end('secret'));
    await expect(httpsGet(`https://${TEST_HOST}:${s.port}/x`, local(resolver(['127.0.0.1', '10.0.0.5']).resolve))).rejects.toThrow(/resolves to 10\.0\.0\.5, which is a private network address/);
    expect(s.connections()).toBe(0);
  });

  it('does not follow a redirect, and says where it pointed', async () => {
    const s = await serve((_req, res) => res.writeHead(302, { location: 'https://169.254.169.254/latest/meta-data/' }).end());
    await expect(httpsGet(`https://${TEST_HOST}:${s.port}/experiment.json`, local(resolver(['127.0.0.1']).resolve))).rejects.toThrow(
      /answered with a redirect \(HTTP 302\) to https:\/\/169\.254\.169\.254\/latest\/meta-data\/; redirects are not followed/,
    );
    expect(s.seen).toHaveLength(1);
  });

  it('verifies the certificate against the host name, not the pinned address', async () => {
    const s = await serve((_req, res) => res.end('wrong host'));
    await expect(httpsGet(`https://elsewhere.lab.test:${s.port}/x`, local(resolver(['127.0.0.1']).resolve))).rejects.toThrow(/does not match certificate|altnames/i);
    expect(s.seen).toHaveLength(0);
  });

  it('refuses a declared size over the limit before reading it', async () => {
    const s = await serve((_req, res) => res.writeHead(200, { 'content-length': '5000' }).end('x'.repeat(5000)));
    await expect(httpsGet(`https://${TEST_HOST}:${s.port}/tile.tiff`, local(resolver(['127.0.0.1']).resolve, { maxBytes: 1000 }))).rejects.toThrow(
      /5000 bytes is more than the 1000-byte limit.*stage it into the bucket first/,
    );
  });

  it('stops reading a body that grows past the limit', async () => {
    const s = await serve((_req, res) => {
      for (let i = 0; i < 10; i++) res.write(Buffer.alloc(200));
      res.end();
    });
    await expect(httpsGet(`https://${TEST_HOST}:${s.port}/big`, local(resolver(['127.0.0.1']).resolve, { maxBytes: 1000 }))).rejects.toThrow(/larger than the 1000-byte limit/);
  });

  it('names the HTTP status of a failed read', async () => {
    const s = await serve((_req, res) => res.writeHead(404).end('no'));
    await expect(httpsGet(`https://${TEST_HOST}:${s.port}/missing.json`, local(resolver(['127.0.0.1']).resolve))).rejects.toThrow('HTTP 404');
  });

  it('gives up after the timeout', async () => {
    const s = await serve(() => undefined);
    await expect(httpsGet(`https://${TEST_HOST}:${s.port}/slow`, local(resolver(['127.0.0.1']).resolve, { timeoutMs: 200 }))).rejects.toThrow(/timeout|aborted/i);
  });

  it('reads only https, and asks no resolver for anything else', async () => {
    const dns = resolver(['93.184.215.14']);
    await expect(httpsGet('http://169.254.169.254/latest/meta-data', { resolve: dns.resolve })).rejects.toThrow(/inputs are read over https:\/\/ only/);
    expect(dns.asked).toEqual([]);
  });
});
