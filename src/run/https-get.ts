/**
 * GET over https for inputs people name: no redirects (a redirect could lead the reader to an
 * internal address), a timeout, and a size cap, so a wrong URL cannot exhaust a Lambda's memory.
 */
const MAX_HTTPS_BYTES = 256 * 2 ** 20;

export async function httpsGet(url: string, fetchFn: typeof fetch = fetch, maxBytes = MAX_HTTPS_BYTES, timeoutMs = 60_000): Promise<Buffer> {
  if (!url.startsWith('https://')) throw new Error(`only https:// URLs are read, not ${url}`);
  const response = await fetchFn(url, { redirect: 'error', signal: AbortSignal.timeout(timeoutMs) });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const declared = Number(response.headers.get('content-length') ?? NaN);
  if (declared > maxBytes) throw new Error(`${declared} bytes is more than the ${maxBytes}-byte limit for an https input; stage it into the bucket first`);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of (response.body ?? []) as AsyncIterable<Uint8Array>) {
    total += chunk.length;
    if (total > maxBytes) throw new Error(`the response is larger than the ${maxBytes}-byte limit for an https input; stage it into the bucket first`);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}
