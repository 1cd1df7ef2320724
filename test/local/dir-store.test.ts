import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mkdir, mkdtemp, readdir, rm, truncate, type FileHandle } from 'node:fs/promises';
import { closeSync, openSync, promises, writeSync, type PathLike } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fork, spawnSync } from 'node:child_process';
import { DirectoryStore } from '../../src/local/dir-store.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'starfish-store-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('DirectoryStore', () => {
  it('reads at most maxBytes of an object, and says when it was larger', async () => {
    const store = new DirectoryStore(root);
    await store.put('outputs/a/fovs/fov_001.error.json', 'y'.repeat(5_000));
    const capped = await store.get('outputs/a/fovs/fov_001.error.json', { maxBytes: 4_096 });
    expect(capped).toMatchObject({ tooLarge: true });
    expect(capped!.body.length).toBe(4_096);
    const whole = await store.get('outputs/a/fovs/fov_001.error.json', { maxBytes: 5_000 });
    expect(whole!.tooLarge).toBeUndefined();
    expect(whole!.body.toString()).toBe('y'.repeat(5_000));
    expect(await store.get('outputs/a/missing', { maxBytes: 10 })).toBeUndefined();
  });

  it('reads a small object under a large cap without allocating the cap', async () => {
    const store = new DirectoryStore(root);
    await store.put('outputs/a/results/summary.json', '{"spots_total": 1}');
    const alloc = vi.spyOn(Buffer, 'alloc');
    try {
      const object = await store.get('outputs/a/results/summary.json', { maxBytes: 64 * 2 ** 20 });
      expect(object!.body.toString()).toBe('{"spots_total": 1}');
      expect(object!.tooLarge).toBeUndefined();
      expect(Math.max(0, ...alloc.mock.calls.map(([size]) => size))).toBeLessThan(2 ** 20);
    } finally {
      alloc.mockRestore();
    }
  });

  it('round-trips objects and lists them by prefix', async () => {
    const store = new DirectoryStore(root);
    await store.put('runs/a/run.json', '{"a":1}');
    await store.put('runs/b/run.json', '{"b":2}');
    await store.put('experiments/x/experiment.json', '{}');
    expect((await store.get('runs/a/run.json'))?.body.toString()).toBe('{"a":1}');
    expect(await store.get('runs/missing')).toBeUndefined();
    expect(await store.list('runs/')).toEqual(['runs/a/run.json', 'runs/b/run.json']);
    // Folders, and only those after a name (run ids after a day), as S3's StartAfter lists them.
    await store.put('runs/261120-abcd/run.json', '{}');
    expect(await store.listFolders('runs/')).toEqual(['261120-abcd', 'a', 'b']);
    expect(await store.listFolders('runs/', '261120')).toEqual(['261120-abcd', 'a', 'b']);
    expect(await store.listFolders('runs/', 'a')).toEqual(['b']);
  });

  it('refuses keys that escape the store', async () => {
    await expect(new DirectoryStore(root).put('../outside', 'x')).rejects.toThrow(/escapes the store/);
  });

  it('creates once: of 50 concurrent conditional creates exactly one wins', async () => {
    const store = new DirectoryStore(root);
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => store.createIfAbsent('runs/x/claim', `writer ${i}`)));
    const winners = results.filter((r) => r !== 'exists');
    expect(winners).toHaveLength(1);
    const body = (await store.get('runs/x/claim'))!.body.toString();
    expect(body).toMatch(/^writer \d+$/);
  });

  it('compare-and-swap refuses a stale etag', async () => {
    const store = new DirectoryStore(root);
    const first = await store.put('k', 'one');
    expect(await store.replaceIf('k', 'two', first.etag)).not.toBe('conflict');
    expect(await store.replaceIf('k', 'three', first.etag)).toBe('conflict');
    expect((await store.get('k'))!.body.toString()).toBe('two');
  });

  it('loses no increment when 8 processes × 25 increments race on one counter', async () => {
    const store = new DirectoryStore(root);
    await store.put('counter', '0');
    const worker = path.resolve('test/helpers/cas-increment.ts');
    await Promise.all(
      Array.from({ length: 8 }, () =>
        new Promise<void>((resolve, reject) => {
          const child = fork(worker, [root, '25'], { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
          child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker exited ${code}`))));
        }),
      ),
    );
    expect(Number((await store.get('counter'))!.body.toString())).toBe(200);
  });
});

// ───────────────────────── disk full (issue 12) ─────────────────────────

const PAGE = 4096;
const KEY = 'runs/r1/run.json';
const OLD = '{"status":"running"}';

/** Node's own error for a failed write, as fs.promises raises it. */
const errno = (code: string, text: string, syscall: string) => Object.assign(new Error(`${code}: ${text}, ${syscall}`), { code, syscall });

/** fs.promises whose writeFile writes half the bytes and then fails like a full disk. */
const fullDisk = (): typeof promises => ({
  ...promises,
  writeFile: (async (file: PathLike | FileHandle, data: string | Uint8Array) => {
    const bytes = Buffer.from(data);
    await promises.writeFile(file, bytes.subarray(0, bytes.length >> 1));
    throw errno('ENOSPC', 'no space left on device', 'write');
  }) as typeof promises.writeFile,
});

/** A system program (mount, umount): present on the Linux machines these tests run on. */
const system = (command: string, args: string[]) => spawnSync(command, args, { encoding: 'utf8' });

const leftovers = async (dir: string) => (await readdir(dir, { recursive: true })).filter((f) => f.endsWith('.tmp'));

describe('DirectoryStore on a full disk (injected at the fs edge)', () => {
  it.each(['put', 'createIfAbsent', 'replaceIf'] as const)('%s: an ENOSPC names the key and the errno, leaves no partial file, and keeps the old object', async (op) => {
    const seeded = await new DirectoryStore(root).put(KEY, OLD);
    const store = new DirectoryStore(root, fullDisk());
    const key = op === 'createIfAbsent' ? 'runs/r2/claim' : KEY;
    const write = op === 'put' ? store.put(key, 'x'.repeat(10_000)) : op === 'createIfAbsent' ? store.createIfAbsent(key, 'x'.repeat(10_000)) : store.replaceIf(key, 'x'.repeat(10_000), seeded.etag);
    const error = await write.then(
      () => undefined,
      (e: NodeJS.ErrnoException) => e,
    );
    expect(error?.message).toBe(`Could not write ${key} in ${root}: no space left on device (ENOSPC); free space on that disk and try again`);
    expect(error?.code).toBe('ENOSPC');
    expect(await leftovers(root)).toEqual([]);
    expect((await store.get(KEY))!.body.toString()).toBe(OLD);
    if (op === 'createIfAbsent') expect(await store.get(key)).toBeUndefined();
    // The lock of replaceIf was released: the same swap succeeds on a disk with room.
    if (op === 'replaceIf') expect(await new DirectoryStore(root).replaceIf(KEY, 'new', seeded.etag)).not.toBe('conflict');
  });

  it('names the key and the errno when the rename fails (EIO), and removes the temporary file', async () => {
    const store = new DirectoryStore(root, { ...promises, rename: async () => Promise.reject(errno('EIO', 'i/o error', 'rename')) });
    await expect(store.put(KEY, 'x')).rejects.toThrow(`Could not write ${KEY} in ${root}: i/o error (EIO); the disk reported an I/O error: check it`);
    expect(await leftovers(root)).toEqual([]);
  });
});

/**
 * A real full disk: a tmpfs of 256 KiB filled up to `free` bytes. Needs root and `mount`; the
 * injected tests above cover the store elsewhere.
 */
describe('DirectoryStore on a full tmpfs, at several sizes', () => {
  let disk: string;
  let mounted = false;
  beforeEach(async (ctx) => {
    disk = path.join(root, 'disk');
    await mkdir(disk);
    if (process.getuid?.() !== 0) return ctx.skip('needs root to mount a tmpfs (the injected ENOSPC tests cover the store)');
    const r = system('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', disk]);
    if (r.status !== 0) return ctx.skip(`mount -t tmpfs is not allowed here (${r.stderr.trim()})`);
    mounted = true;
  });
  afterEach(() => {
    if (mounted) system('umount', [disk]);
    mounted = false;
  });

  /** Fills the disk, then frees `free` bytes (whole pages) at its end; returns the filler's path. */
  const fill = async (free: number) => {
    const filler = path.join(disk, 'filler');
    const fd = openSync(filler, 'w');
    const page = Buffer.alloc(PAGE, 1);
    let written = 0;
    try {
      for (;;) written += writeSync(fd, page);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
    } finally {
      closeSync(fd);
    }
    await truncate(filler, Math.max(0, written - free));
    return filler;
  };

  // [pages left free, bytes written]: the body never fits.
  it.each([
    [0, 10],
    [0, PAGE * 3],
    [1, PAGE + 1],
    [2, PAGE * 8],
  ])('with %i page(s) free, a %i-byte put fails naming the key and ENOSPC, and what fits afterwards still fits', async (pages, size) => {
    const store = new DirectoryStore(disk);
    const old = await store.put(KEY, OLD);
    await store.createIfAbsent('requests/q1', 'first');
    await fill(pages * PAGE);
    const body = 'y'.repeat(size);
    await expect(store.put(KEY, body)).rejects.toThrow(new RegExp(`^Could not write ${KEY} in ${disk}: no space left on device \\(ENOSPC\\)`));
    await expect(store.replaceIf(KEY, body, old.etag)).rejects.toMatchObject({ code: 'ENOSPC', message: expect.stringContaining(KEY) });
    await expect(store.createIfAbsent('requests/q2', body)).rejects.toMatchObject({ code: 'ENOSPC', message: expect.stringContaining('requests/q2') });
    // Whole or absent: the old bodies, no partial object, no temporary file eating the space.
    expect((await store.get(KEY))!.body.toString()).toBe(OLD);
    expect((await store.get('requests/q1'))!.body.toString()).toBe('first');
    expect(await store.get('requests/q2')).toBeUndefined();
    expect(await leftovers(disk)).toEqual([]);
    expect(await store.list('requests/')).toEqual(['requests/q1']);
    // The failed writes left the free pages free: a body of one page fits where one was free.
    if (pages > 0) expect(await store.replaceIf(KEY, 'z'.repeat(PAGE), old.etag)).not.toBe('conflict');
    // With room again, the same writes succeed whole.
    await rm(path.join(disk, 'filler'));
    expect(await store.createIfAbsent('requests/q2', body)).not.toBe('exists');
    await store.put(KEY, body);
    expect((await store.get(KEY))!.body.toString()).toBe(body);
    expect((await store.get('requests/q2'))!.body.toString()).toBe(body);
  });
});
