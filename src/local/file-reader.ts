/** The Reader port on one machine: paths and https:// URLs (fetch). s3:// needs the AWS backend. */
import { promises as fs } from 'node:fs';
import { passed, refuse, type Result } from '../result.js';
import path from 'node:path';
import type { Reader } from '../ports.js';
import { kindOf } from '../run/locations.js';
import { httpsGet } from '../run/https-get.js';

export class LocalReader implements Reader {
  async read(url: string): Promise<Buffer> {
    switch (kindOf(url)) {
      case 'path':
        try {
          return await fs.readFile(url);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('no such file', { cause: error });
          throw error;
        }
      case 'https':
        return httpsGet(url);
      case 's3':
        throw new Error('s3:// URLs need the AWS backend (docs/aws.md); on this machine use a file path');
    }
  }

  async copy(fromUrl: string, toUrl: string): Promise<void> {
    if (kindOf(toUrl) !== 'path') throw new Error(`the local backend writes only to paths, not ${toUrl}`);
    await fs.mkdir(path.dirname(toUrl), { recursive: true });
    if (kindOf(fromUrl) === 'path') await fs.copyFile(fromUrl, toUrl);
    else await fs.writeFile(toUrl, await this.read(fromUrl));
  }

  checkReadable(url: string): Result<void> {
    if (kindOf(url) === 's3') return refuse(`${url} is an s3:// URL, which the local backend cannot read. Use a file path here, or the AWS backend (docs/aws.md).`);
    return passed;
  }
}
