/** Locations of inputs: s3:// and https:// URLs, or plain paths on the local backend. */
import os from 'node:os';
import { refuse, type Result } from '../result.js';
import path from 'node:path';
import type { Reader } from '../ports.js';

export type LocationKind = 's3' | 'https' | 'path';

export function kindOf(location: string): LocationKind {
  if (location.startsWith('s3://')) return 's3';
  if (location.startsWith('https://')) return 'https';
  return 'path';
}

/** A path as the absolute one it means (`~` is the home directory); URLs are left alone. */
export function absoluteLocation(location: string): string {
  if (kindOf(location) !== 'path') return location;
  const expanded = location === '~' || location.startsWith('~/') ? path.join(os.homedir(), location.slice(1)) : location;
  return path.resolve(expanded);
}

export function parseS3(url: string): { bucket: string; key: string } {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(url);
  if (!m) throw new Error(`not an s3:// URL: ${url}`);
  return { bucket: m[1]!, key: m[2]! };
}

/**
 * Whether this deployment may read a location the scientist gave (named `what`, e.g. "The
 * experiment"): file paths only where paths are allowed, then the reader's own allowlist.
 */
export function checkLocation(where: { reader: Pick<Reader, 'checkReadable'>; allowPaths: boolean }, location: string, what: string): Result<void> {
  if (kindOf(location) === 'path' && !where.allowPaths) {
    return refuse(`${what} "${location}" is a file path, but this deployment reads only s3:// or https:// URLs. Example: s3://lab-data/iss/experiment.json`);
  }
  return where.reader.checkReadable(location);
}

/** Why an input was not read: it is larger than what this kind of input may be. */
export const tooLarge = (maxBytes: number) =>
  `it is larger than ${maxBytes >= 2 ** 20 ? `${Math.round(maxBytes / 2 ** 20)} MiB` : `${maxBytes.toLocaleString('en-US')} bytes`}, more than this kind of input may be; stage a smaller file or split the experiment`;
