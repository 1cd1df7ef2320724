/**
 * The Store port on a directory (STARFISH_HOME). Conditional create is a hard link, which the
 * file system refuses atomically when the name exists; compare-and-swap holds a lock file
 * while it compares and renames. Both are safe across processes, not just within one.
 */
import { createHash, randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import type { GetOptions, Store, StoredObject } from '../ports.js';

const etagOf = (body: Buffer) => createHash('md5').update(body).digest('hex');

export class DirectoryStore implements Store {
  constructor(readonly root: string) {}

  private pathOf(key: string): string {
    const full = path.resolve(this.root, key);
    if (!full.startsWith(path.resolve(this.root) + path.sep)) throw new Error(`key escapes the store: ${key}`);
    return full;
  }

  private async temp(key: string, body: Buffer | string): Promise<string> {
    const full = this.pathOf(key);
    await fs.mkdir(path.dirname(full), { recursive: true });
    const tmp = `${full}.${randomUUID()}.tmp`;
    await fs.writeFile(tmp, body);
    return tmp;
  }

  async get(key: string, options: GetOptions = {}): Promise<StoredObject | undefined> {
    try {
      if (options.maxBytes !== undefined) return await this.getAtMost(key, options.maxBytes);
      const body = await fs.readFile(this.pathOf(key));
      return { body, etag: etagOf(body) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  /** Reads one byte more than allowed, to tell a too-large object from one at the limit. */
  private async getAtMost(key: string, maxBytes: number): Promise<StoredObject> {
    const file = await fs.open(this.pathOf(key), 'r');
    try {
      const buffer = Buffer.alloc(maxBytes + 1);
      const { bytesRead } = await file.read(buffer, 0, maxBytes + 1, 0);
      const body = buffer.subarray(0, Math.min(bytesRead, maxBytes));
      return bytesRead > maxBytes ? { body, etag: etagOf(body), tooLarge: true } : { body, etag: etagOf(body) };
    } finally {
      await file.close();
    }
  }

  async put(key: string, body: Buffer | string): Promise<{ etag: string }> {
    const tmp = await this.temp(key, body);
    await fs.rename(tmp, this.pathOf(key));
    return { etag: etagOf(Buffer.from(body)) };
  }

  async createIfAbsent(key: string, body: Buffer | string): Promise<{ etag: string } | 'exists'> {
    const tmp = await this.temp(key, body);
    try {
      await fs.link(tmp, this.pathOf(key));
      return { etag: etagOf(Buffer.from(body)) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return 'exists';
      throw error;
    } finally {
      await fs.rm(tmp, { force: true });
    }
  }

  async replaceIf(key: string, body: Buffer | string, etag: string): Promise<{ etag: string } | 'conflict'> {
    const full = this.pathOf(key);
    await fs.mkdir(path.dirname(full), { recursive: true });
    const release = await lockfile.lock(full, {
      realpath: false,
      retries: { retries: 200, minTimeout: 2, maxTimeout: 50, randomize: true },
      stale: 10_000,
    });
    try {
      const current = await this.get(key);
      if (!current || current.etag !== etag) return 'conflict';
      const tmp = await this.temp(key, body);
      await fs.rename(tmp, full);
      return { etag: etagOf(Buffer.from(body)) };
    } finally {
      await release();
    }
  }

  async delete(key: string): Promise<void> {
    await fs.rm(this.pathOf(key), { force: true });
  }

  async list(prefix: string): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await fs.readdir(dir, { withFileTypes: true });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw error;
      }
      for (const e of entries) {
        const full = path.join(dir, e.name);
        if (e.isDirectory()) await walk(full);
        else if (!e.name.endsWith('.tmp') && !e.name.endsWith('.lock')) out.push(path.relative(this.root, full).split(path.sep).join('/'));
      }
    };
    // Walk only the directory part of the prefix, then filter by the rest.
    const dirPart = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    await walk(path.join(this.root, dirPart));
    return out.filter((k) => k.startsWith(prefix)).sort();
  }

  async listFolders(prefix: string): Promise<string[]> {
    try {
      const entries = await fs.readdir(this.pathOf(prefix.replace(/\/$/, '')), { withFileTypes: true });
      return entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  }

  locate(key: string): string {
    return this.pathOf(key);
  }

  async downloadLink(key: string): Promise<string> {
    return `file://${this.pathOf(key)}`;
  }
}
