/**
 * The URL policy tried as an attacker would: every spelling of an internal address, names that
 * resolve to one, schemes that are not https, file:// where files are not allowed. The table is
 * test/fixtures/url-policy/urls.json, which test/python/test_url_policy.py reads too, so both
 * policies give the same verdicts. Names are answered by an injected resolver: nothing here
 * touches DNS or the network.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { S3Client } from '@aws-sdk/client-s3';
import { S3Reader } from '../../src/aws/s3-reader.js';
import { LocalReader } from '../../src/local/file-reader.js';
import type { Result } from '../../src/result.js';
import { checkFetchable, checkHttpsUrl, pinnedLookup, resolveHttps, type Resolve } from '../../src/run/url-policy.js';

interface Table {
  refusedLiterals: Array<{ url: string; why: string }>;
  refusedNames: Array<{ url: string; asks: string; answers: string[]; why: string }>;
  refusedForms: Array<{ url: string; why: string | null }>;
  fileUrls: string[];
  accepted: Array<{ url: string; asks?: string; answers?: string[] }>;
}

const TABLE = JSON.parse(readFileSync(new URL('../fixtures/url-policy/urls.json', import.meta.url), 'utf8')) as Table;

const reasonOf = (r: Result<unknown>) => (r.ok ? undefined : r.reason);

/** A resolver that answers `answers` (any name) and records the names it was asked. */
function answering(answers: string[]) {
  const asked: string[] = [];
  const resolve: Resolve = async (hostname) => {
    asked.push(hostname);
    return answers.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  return { resolve, asked };
}

const noDns: Resolve = async (hostname) => {
  throw new Error(`the resolver was asked for ${hostname}`);
};

describe('the address table', () => {
  it('has the spellings the policy is tried with', () => {
    expect(TABLE.refusedLiterals.length + TABLE.refusedNames.length).toBeGreaterThanOrEqual(25);
  });

  it('WHATWG URL turns decimal, octal, hex, short and encoded IPv4 spellings into the dotted address', () => {
    for (const spelling of ['2130706433', '0177.0.0.1', '0x7f.1', '127.1', '0x7f000001', '%31%32%37.0.0.1', '\uff11\uff12\uff17.\uff10.\uff10.\uff11', '127.0.0.1.']) {
      expect(new URL(`https://${spelling}/x`).hostname, spelling).toBe('127.0.0.1');
    }
    expect(new URL('https://[0:0:0:0:0:ffff:7f00:1]/').hostname).toBe('[::ffff:7f00:1]');
  });
});

describe.each(TABLE.refusedLiterals)('$url', ({ url, why }) => {
  it(`is refused without asking DNS (${why})`, async () => {
    const refusal = reasonOf(checkHttpsUrl(url));
    expect(refusal).toContain(why);
    expect(refusal).toMatch(/public internet, e\.g\. https:\/\/example\.org\/iss\/experiment\.json/);
    expect(reasonOf(await resolveHttps(url, {}, noDns))).toBe(refusal);
  });
});

describe.each(TABLE.refusedNames)('$url resolving to $answers', ({ url, asks, answers, why }) => {
  it(`is refused (${why}) after one question to the resolver`, async () => {
    const dns = answering(answers);
    const refusal = reasonOf(await resolveHttps(url, {}, dns.resolve));
    expect(refusal).toContain(`${asks} resolves to`);
    expect(refusal).toContain(why);
    expect(dns.asked).toEqual([asks]);
    // the static check alone lets it through: only resolving finds it
    expect(checkHttpsUrl(url).ok).toBe(true);
  });
});

describe.each(TABLE.refusedForms)('$url', ({ url, why }) => {
  it('is refused locally and on AWS', async () => {
    for (const files of [true, false]) {
      const refusal = reasonOf(checkFetchable(url, { files }));
      expect(refusal).toBeDefined();
      if (why) expect(refusal).toContain(why);
    }
    if (url.startsWith('https://')) expect(reasonOf(await resolveHttps(url, {}, noDns))).toBeDefined();
  });
});

describe.each(TABLE.accepted)('$url', ({ url, asks, answers }) => {
  it('is accepted, pinned to the first address it resolves to', async () => {
    expect(checkFetchable(url, { files: false }).ok).toBe(true);
    const dns = answers ? answering(answers) : undefined;
    const checked = await resolveHttps(url, {}, dns?.resolve ?? noDns);
    if (!checked.ok) throw new Error(checked.reason);
    if (dns) {
      expect(dns.asked).toEqual([asks]);
      expect(checked.value).toMatchObject({ host: asks, address: answers![0], family: answers![0]!.includes(':') ? 6 : 4 });
    } else {
      expect(checked.value.address).toBe(checked.value.host);
    }
  });
});

describe('file:// URLs', () => {
  it.each(TABLE.fileUrls)('%s is a file for the local backend and refused for the AWS one', (url) => {
    expect(checkFetchable(url, { files: true })).toEqual({ ok: true, value: { kind: 'file', path: new URL(url).pathname } });
    expect(reasonOf(checkFetchable(url, { files: false }))).toMatch(/a file:\/\/ URL names a file on one machine.*e\.g\. https:\/\/example\.org/);
  });

  it('a file:// URL of another machine is refused even locally', () => {
    expect(reasonOf(checkFetchable('file://fileserver/share/experiment.json', { files: true }))).toMatch(/not a file:\/\/ URL of this machine/);
  });
});

describe('the refusal a scientist reads', () => {
  it('names the URL, the address, what it is, and an example of an accepted URL', async () => {
    expect(reasonOf(checkHttpsUrl('https://169.254.169.254/latest/meta-data/'))).toBe(
      'https://169.254.169.254/latest/meta-data/ is refused: 169.254.169.254 is a link-local address (where cloud instance and container metadata are served). Inputs are read only from servers on the public internet, e.g. https://example.org/iss/experiment.json',
    );
    expect(reasonOf(await resolveHttps('https://data.lab.internal/iss/experiment.json', {}, answering(['10.0.0.5']).resolve))).toBe(
      'https://data.lab.internal/iss/experiment.json is refused: data.lab.internal resolves to 10.0.0.5, which is a private network address (RFC 1918). Inputs are read only from servers on the public internet, e.g. https://example.org/iss/experiment.json',
    );
  });

  it('says when a name does not resolve', async () => {
    const missing: Resolve = async () => {
      throw Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' });
    };
    expect(reasonOf(await resolveHttps('https://no-such-host.example/x', {}, missing))).toMatch(/the name no-such-host.example was not found \(ENOTFOUND\)/);
    expect(reasonOf(await resolveHttps('https://empty.example/x', {}, answering([]).resolve))).toMatch(/has no address/);
  });
});

describe('the host allowlist', () => {
  const policy = { allowedHosts: ['data.lab.org', '*.spacetx.org'] };

  it('admits only the hosts it lists, and names them with an allowed example', () => {
    expect(checkHttpsUrl('https://data.lab.org/iss/experiment.json', policy).ok).toBe(true);
    expect(checkHttpsUrl('https://DATA.LAB.ORG./iss/experiment.json', policy).ok).toBe(true);
    expect(checkHttpsUrl('https://a.b.spacetx.org/iss/experiment.json', policy).ok).toBe(true);
    for (const url of ['https://example.org/x', 'https://spacetx.org/x', 'https://evilspacetx.org/x', 'https://data.lab.org.evil.example/x']) {
      expect(reasonOf(checkHttpsUrl(url, policy)), url).toBe(
        `${url} is refused: this deployment reads https inputs only from data.lab.org, *.spacetx.org. Example: https://data.lab.org/iss/experiment.json`,
      );
    }
  });

  it('never admits an internal address, even for an allowed host', async () => {
    expect(reasonOf(await resolveHttps('https://data.lab.org/x', policy, answering(['10.0.0.5']).resolve))).toMatch(
      /data.lab.org resolves to 10.0.0.5, which is a private network address.*e\.g\. https:\/\/data.lab.org\/iss\/experiment.json/,
    );
  });
});

describe('testOnlyAddresses', () => {
  it('admits exactly the addresses listed, in any spelling', async () => {
    const policy = { testOnlyAddresses: ['127.0.0.1', '::1'] };
    expect((await resolveHttps('https://data.lab.test/x', policy, answering(['127.0.0.1']).resolve)).ok).toBe(true);
    expect((await resolveHttps('https://data.lab.test/x', policy, answering(['0:0:0:0:0:0:0:1']).resolve)).ok).toBe(true);
    expect(reasonOf(await resolveHttps('https://data.lab.test/x', policy, answering(['127.0.0.2']).resolve))).toContain('loopback');
  });
});

describe('pinnedLookup', () => {
  const lookup = pinnedLookup({ host: 'data.lab.org', address: '93.184.215.14', family: 4 });
  const ask = (hostname: string, all: boolean) =>
    new Promise<unknown[]>((resolve) => lookup(hostname, { all }, (...args) => resolve(args)));

  it('answers the checked address for the checked host, in both forms net.connect asks for', async () => {
    expect(await ask('data.lab.org', false)).toEqual([null, '93.184.215.14', 4]);
    expect(await ask('data.lab.org', true)).toEqual([null, [{ address: '93.184.215.14', family: 4 }]]);
  });

  it('fails for any other name', async () => {
    const [error] = await ask('elsewhere.example', false);
    expect((error as NodeJS.ErrnoException).code).toBe('ENOTFOUND');
  });
});

describe('the readers apply the policy', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'url-policy-'));
  const file = path.join(dir, 'experiment.json');
  writeFileSync(file, '{"version":"5.0.0"}');
  const aws = new S3Reader({ client: new S3Client({ region: 'us-east-1' }), buckets: ['lab-data'], https: { resolve: noDns } });
  const local = new LocalReader({ https: { resolve: noDns } });

  it('the local backend reads a file:// URL and a path; the AWS backend refuses both', async () => {
    const url = pathToFileURL(file).href;
    expect((await local.read(url)).toString()).toBe('{"version":"5.0.0"}');
    expect((await local.read(file)).toString()).toBe('{"version":"5.0.0"}');
    expect(local.checkReadable(url).ok).toBe(true);
    expect(reasonOf(aws.checkReadable(url))).toMatch(/a file:\/\/ URL names a file on one machine/);
    await expect(aws.read(url)).rejects.toThrow(/a file:\/\/ URL names a file on one machine/);
    expect(reasonOf(aws.checkReadable(file))).toMatch(/is a file path, which the AWS deployment cannot read/);
  });

  it('the local backend copies from a file:// URL', async () => {
    const to = path.join(dir, 'staged', 'experiment.json');
    await local.copy(pathToFileURL(file).href, to);
    expect(readFileSync(to, 'utf8')).toBe('{"version":"5.0.0"}');
  });

  it.each(['http://169.254.169.254/latest/meta-data/', 'https://0x7f.1/experiment.json', 'https://[::ffff:169.254.169.254]/', 'gopher://127.0.0.1:6379/_INFO'])(
    'both refuse %s before any connection',
    async (url) => {
      expect(local.checkReadable(url).ok).toBe(false);
      expect(aws.checkReadable(url).ok).toBe(false);
      await expect(local.read(url)).rejects.toThrow(/refused/);
      await expect(aws.read(url)).rejects.toThrow(/refused/);
    },
  );

  it('both refuse a name that resolves to an internal address when reading', async () => {
    const internal = { https: { resolve: answering(['169.254.169.254']).resolve } };
    const url = 'https://metadata.example/latest/meta-data/';
    await expect(new LocalReader(internal).read(url)).rejects.toThrow(/metadata.example resolves to 169.254.169.254, which is a link-local address/);
    await expect(new S3Reader({ client: new S3Client({ region: 'us-east-1' }), buckets: ['lab-data'], ...internal }).read(url)).rejects.toThrow(/resolves to 169.254.169.254/);
  });
});
