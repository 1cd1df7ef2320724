/**
 * The Reader port on one machine: paths, file:// URLs and https:// URLs (under the URL policy,
 * src/run/url-policy.ts: public addresses only, pinned, no redirects). s3:// needs the AWS
 * backend; http:// and other schemes are refused.
 */
import { promises as fs } from 'node:fs';
import { passed, refuse, type Result } from '../result.js';
import path from 'node:path';
import type { GetOptions, Reader } from '../ports.js';
import { kindOf, tooLarge } from '../run/locations.js';
import { httpsGet, type HttpsGetOptions } from '../run/https-get.js';
import { checkFetchable, type Fetchable } from '../run/url-policy.js';

export interface LocalReaderOptions {
  /** The URL policy's options for https inputs (the host allowlist; a resolver and CA in tests). */
  https?: HttpsGetOptions;
}

export class LocalReader implements Reader {
  private readonly https: HttpsGetOptions;

  constructor(options: LocalReaderOptions = {}) {
    this.https = options.https ?? {};
  }

  private fetchable(url: string): Fetchable {
    if (kindOf(url) === 's3') throw new Error('s3:// URLs need the AWS backend (docs/aws.md); on this machine use a file path');
    const checked = checkFetchable(url, { ...this.https, files: true });
    if (!checked.ok) throw new Error(checked.reason);
    return checked.value;
  }

  async read(url: string, options: GetOptions = {}): Promise<Buffer> {
    const target = this.fetchable(url);
    const { maxBytes } = options;
    if (target.kind === 'https') return httpsGet(url, { ...this.https, ...(maxBytes !== undefined ? { maxBytes } : {}) });
    try {
      if (maxBytes !== undefined && (await fs.stat(target.path)).size > maxBytes) throw new Error(tooLarge(maxBytes));
      return await fs.readFile(target.path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('no such file', { cause: error });
      throw error;
    }
  }

  async copy(fromUrl: string, toUrl: string): Promise<void> {
    if (kindOf(toUrl) !== 'path' || /^[a-z][a-z0-9+.-]+:/i.test(toUrl)) throw new Error(`the local backend writes only to paths, not ${toUrl}`);
    const from = this.fetchable(fromUrl);
    await fs.mkdir(path.dirname(toUrl), { recursive: true });
    if (from.kind === 'file') await fs.copyFile(from.path, toUrl);
    else await fs.writeFile(toUrl, await this.read(fromUrl));
  }

  checkReadable(url: string): Result<void> {
    if (kindOf(url) === 's3') return refuse(`${url} is an s3:// URL, which the local backend cannot read. Use a file path here, or the AWS backend (docs/aws.md).`);
    const checked = checkFetchable(url, { ...this.https, files: true });
    return checked.ok ? passed : checked;
  }
}
