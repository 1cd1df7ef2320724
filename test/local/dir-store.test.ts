import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fork } from 'node:child_process';
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

  it('round-trips objects and lists them by prefix', async () => {
    const store = new DirectoryStore(root);
    await store.put('runs/a/run.json', '{"a":1}');
    await store.put('runs/b/run.json', '{"b":2}');
    await store.put('experiments/x/experiment.json', '{}');
    expect((await store.get('runs/a/run.json'))?.body.toString()).toBe('{"a":1}');
    expect(await store.get('runs/missing')).toBeUndefined();
    expect(await store.list('runs/')).toEqual(['runs/a/run.json', 'runs/b/run.json']);
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
