/**
 * GET over https for inputs people name, under the URL policy (src/run/url-policy.ts): the host
 * resolved once and every address checked, the connection pinned to the checked address (TLS
 * still verifies the certificate for the host name), no redirects (a redirect could lead the
 * reader to an internal address), a timeout, and a size cap, so a wrong URL cannot exhaust a
 * Lambda's memory.
 */
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { pinnedLookup, resolveHttps, type CheckedTarget, type Resolve, type UrlPolicy } from './url-policy.js';

const MAX_HTTPS_BYTES = 256 * 2 ** 20;

export interface HttpsGetOptions extends UrlPolicy {
  /** The resolver (dns.lookup by default); tests answer for names here. */
  resolve?: Resolve;
  /** Certificate authorities to trust instead of Node's bundle (tests with a local server). */
  ca?: string | Buffer;
  maxBytes?: number;
  timeoutMs?: number;
}

export async function httpsGet(url: string, options: HttpsGetOptions = {}): Promise<Buffer> {
  const checked = await resolveHttps(url, options, options.resolve);
  if (!checked.ok) throw new Error(checked.reason);
  return get(checked.value, url, options);
}

function request(target: CheckedTarget, timeoutMs: number, ca: string | Buffer | undefined) {
  return https.request({
    method: 'GET',
    host: target.host,
    port: target.url.port || 443,
    path: `${target.url.pathname}${target.url.search}`,
    // SNI only for names; the certificate is checked against the host either way.
    ...(isIP(target.host) ? {} : { servername: target.host }),
    lookup: pinnedLookup(target),
    // A socket of its own: nothing pooled under another lookup is reused.
    agent: false,
    ...(ca ? { ca } : {}),
    headers: { accept: '*/*', 'user-agent': 'starfish-chatops' },
    signal: AbortSignal.timeout(timeoutMs),
  });
}

async function get(target: CheckedTarget, url: string, options: HttpsGetOptions): Promise<Buffer> {
  const maxBytes = options.maxBytes ?? MAX_HTTPS_BYTES;
  const req = request(target, options.timeoutMs ?? 60_000, options.ca);
  req.end();
  const [response] = (await once(req, 'response')) as [IncomingMessage];
  try {
    refuseResponse(response, url, maxBytes);
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of response as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > maxBytes) throw new Error(`the response is larger than the ${maxBytes}-byte limit for an https input; stage it into the bucket first`);
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  } finally {
    response.destroy();
    req.destroy();
  }
}

/** Throws for a redirect, a failed status, or a declared size over the limit. */
function refuseResponse(response: IncomingMessage, url: string, maxBytes: number): void {
  const status = response.statusCode ?? 0;
  if (status >= 300 && status < 400) {
    const location = String(response.headers.location ?? '(no Location)').slice(0, 200);
    throw new Error(`${url} answered with a redirect (HTTP ${status}) to ${location}; redirects are not followed, so that a public server cannot send the reader to an internal address. Give the final URL instead.`);
  }
  if (status < 200 || status >= 300) throw new Error(`HTTP ${status}`);
  const declared = Number(response.headers['content-length'] ?? NaN);
  if (declared > maxBytes) throw new Error(`${declared} bytes is more than the ${maxBytes}-byte limit for an https input; stage it into the bucket first`);
}
