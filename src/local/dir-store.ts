/**
 * The Store port on a directory (STARFISH_HOME). Conditional create is a hard link, which the
 * file system refuses atomically when the name exists; compare-and-swap holds a lock file
 * while it compares and renames. Both are safe across processes, not just within one.
 *
 * Every write goes to a temporary name in the object's folder first and becomes the object by a
 * rename (or a link): an object is whole or absent, never cut short. When the disk is full (or
 * refuses the write: EACCES, EIO, EROFS…), the temporary file is removed, an object that was there
 * keeps its old body, and the error names the key and the errno (`.code` keeps the errno).
 */
import { createHash, randomUUID } from 'node:crypto';
import { promises } from 'node:fs';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import type { GetOptions, Store, StoredObject } from '../ports.js';

const etagOf = (body: Buffer) => createHash('md5').update(body).digest('hex');

/** The calls the store makes on the file system: node:fs/promises, or a stand-in for tests. */
type Files = Pick<typeof promises, 'mkdir' | 'writeFile' | 'rename' | 'link' | 'rm' | 'readFile' | 'open' | 'readdir'>;

const NEXT_STEP: Record<string, string> = {
  ENOSPC: 'free space on that disk and try again',
  EDQUOT: 'free space within your disk quota and try again',
  EACCES: 'make that folder writable for this user',
  EPERM: 'make that folder writable for this user',
  EROFS: 'the disk is read-only: choose STARFISH_HOME on a writable disk',
  EIO: 'the disk reported an I/O error: check it',
};

/** An error writing `key`: which key, where, the errno and what to do; the errno stays in `.code`. */
function writeError(key: string, root: string, error: unknown): Error {
  const e = error as NodeJS.ErrnoException;
  if (!e?.code) return error as Error;
  const what = /^[A-Z]+: ([^,]+)/.exec(e.message)?.[1] ?? e.message;
  const next = NEXT_STEP[e.code];
  return Object.assign(new Error(`Could not write ${key} in ${root}: ${what} (${e.code})${next ? `; ${next}` : ''}`, { cause: error }), { code: e.code });
}

export class DirectoryStore implements Store {
  constructor(
    readonly root: string,
    private readonly fs: Files = promises,
  ) {}

  private pathOf(key: string): string {
    const full = path.resolve(this.root, key);
    if (!full.startsWith(path.resolve(this.root) + path.sep)) throw new Error(`key escapes the store: ${key}`);
    return full;
  }

  /** Writes `body` to a new temporary file next to `key`'s; on any failure the file is gone. */
  private async temp(key: string, body: Buffer | string): Promise<string> {
    const full = this.pathOf(key);
    const tmp = `${full}.${randomUUID()}.tmp`;
    try {
      await this.fs.mkdir(path.dirname(full), { recursive: true });
      await this.fs.writeFile(tmp, body);
      return tmp;
    } catch (error) {
      await this.fs.rm(tmp, { force: true }).catch(() => undefined);
      throw writeError(key, this.root, error);
    }
  }

  /** Makes the temporary file the object (rename replaces it whole); on failure the file is gone. */
  private async commit(key: string, tmp: string): Promise<void> {
    try {
      await this.fs.rename(tmp, this.pathOf(key));
    } catch (error) {
      await this.fs.rm(tmp, { force: true }).catch(() => undefined);
      throw writeError(key, this.root, error);
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<StoredObject | undefined> {
    try {
      if (options.maxBytes !== undefined) return await this.getAtMost(key, options.maxBytes);
      const body = await this.fs.readFile(this.pathOf(key));
      return { body, etag: etagOf(body) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  /** Reads one byte more than allowed, to tell a too-large object from one at the limit. */
  private async getAtMost(key: string, maxBytes: number): Promise<StoredObject> {
    const file = await this.fs.open(this.pathOf(key), 'r');
    try {
      // Sized by the file under the cap: a 64 MiB cap does not zero 64 MiB to read a 1 KB file.
      const { size } = await file.stat();
      const buffer = Buffer.alloc(Math.min(size, maxBytes) + 1);
      const { bytesRead } = await file.read(buffer, 0, buffer.length, 0);
      const body = buffer.subarray(0, Math.min(bytesRead, maxBytes));
      return bytesRead > maxBytes ? { body, etag: etagOf(body), tooLarge: true } : { body, etag: etagOf(body) };
    } finally {
      await file.close();
    }
  }

  async put(key: string, body: Buffer | string): Promise<{ etag: string }> {
    const tmp = await this.temp(key, body);
    await this.commit(key, tmp);
    return { etag: etagOf(Buffer.from(body)) };
  }

  async createIfAbsent(key: string, body: Buffer | string): Promise<{ etag: string } | 'exists'> {
    const tmp = await this.temp(key, body);
    try {
      await this.fs.link(tmp, this.pathOf(key));
      return { etag: etagOf(Buffer.from(body)) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return 'exists';
      throw writeError(key, this.root, error);
    } finally {
      await this.fs.rm(tmp, { force: true });
    }
  }

  async replaceIf(key: string, body: Buffer | string, etag: string): Promise<{ etag: string } | 'conflict'> {
    const full = this.pathOf(key);
    const release = await this.lock(key, full);
    try {
      const current = await this.get(key);
      if (!current || current.etag !== etag) return 'conflict';
      const tmp = await this.temp(key, body);
      await this.commit(key, tmp);
      return { etag: etagOf(Buffer.from(body)) };
    } finally {
      await release();
    }
  }

  private async lock(key: string, full: string): Promise<() => Promise<void>> {
    try {
      await this.fs.mkdir(path.dirname(full), { recursive: true });
      return await lockfile.lock(full, {
        realpath: false,
        retries: { retries: 200, minTimeout: 2, maxTimeout: 50, randomize: true },
        stale: 10_000,
      });
    } catch (error) {
      throw writeError(key, this.root, error);
    }
  }

  async delete(key: string): Promise<void> {
    await this.fs.rm(this.pathOf(key), { force: true });
  }

  async list(prefix: string): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await this.fs.readdir(dir, { withFileTypes: true });
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

  async listFolders(prefix: string, startAfter?: string): Promise<string[]> {
    try {
      const entries = await this.fs.readdir(this.pathOf(prefix.replace(/\/$/, '')), { withFileTypes: true });
      return entries
        .filter((e) => e.isDirectory() && (startAfter === undefined || e.name > startAfter))
        .map((e) => e.name)
        .sort();
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
