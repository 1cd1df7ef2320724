import { describe, expect, it } from 'vitest';
import { httpsGet } from '../../src/run/https-get.js';

/** fetch at the edge: records what was asked and answers with a real Response. */
function fakeFetch(body: BodyInit | null, init: ResponseInit = {}) {
  const asked: RequestInit[] = [];
  const fn = (async (_url: string | URL | Request, options?: RequestInit) => {
    asked.push(options ?? {});
    return new Response(body, init);
  }) as typeof fetch;
  return { fn, asked };
}

describe('httpsGet', () => {
  it('reads a body and refuses to follow redirects', async () => {
    const f = fakeFetch('{"version":"5.0.0"}');
    expect((await httpsGet('https://example.org/experiment.json', f.fn)).toString()).toBe('{"version":"5.0.0"}');
    expect(f.asked[0]!.redirect).toBe('error');
  });

  it('refuses a declared size over the limit before reading it', async () => {
    const f = fakeFetch('x', { headers: { 'content-length': '5000' } });
    await expect(httpsGet('https://example.org/tile.tiff', f.fn, 1000)).rejects.toThrow(/5000 bytes is more than the 1000-byte limit.*stage it into the bucket first/);
  });

  it('stops reading a body that grows past the limit', async () => {
    const stream = new ReadableStream({
      start(c) {
        for (let i = 0; i < 10; i++) c.enqueue(new Uint8Array(200));
        c.close();
      },
    });
    await expect(httpsGet('https://example.org/big', fakeFetch(stream).fn, 1000)).rejects.toThrow(/larger than the 1000-byte limit/);
  });

  it('reads only https', async () => {
    await expect(httpsGet('http://169.254.169.254/latest/meta-data', fakeFetch('secret').fn)).rejects.toThrow(/only https:\/\/ URLs are read/);
  });

  it('names the HTTP status of a failed read', async () => {
    await expect(httpsGet('https://example.org/missing.json', fakeFetch('no', { status: 404 }).fn)).rejects.toThrow('HTTP 404');
  });
});
