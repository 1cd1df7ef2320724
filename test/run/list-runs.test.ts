/**
 * `listRuns` reads only as far back as it must: the newest runs from the last days' listing,
 * widening to a month, a year, then everything, and a window's runs from that window's first day.
 * What it returns is what reading every run would give; the second half is on the wire, where S3
 * pages are counted (the real SDK against the recording endpoint).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DirectoryStore } from '../../src/local/dir-store.js';
import { listRuns } from '../../src/run/manifest-store.js';
import { runKeys } from '../../src/run/layout.js';
import { runIdDay } from '../../src/run/run-id.js';
import { S3Store } from '../../src/aws/s3-store.js';
import type { Store } from '../../src/ports.js';
import { MemoryStore } from '../helpers/memory-adapters.js';
import { manifest } from '../messages/fixtures.js';
import { AwsEndpoint } from '../aws/wire/endpoint.js';

const NOW = Date.parse('2026-11-26T12:00:00Z');
const DAY = 86_400_000;

/** A run created `daysAgo` days before NOW (and `n` ms later, so that two runs of a day differ). */
async function runAt(store: Store, daysAgo: number, n: number): Promise<string> {
  const at = NOW - daysAgo * DAY + n;
  const runId = `${runIdDay(new Date(at))}-${n.toString(36).padStart(4, '0')}`;
  await store.put(runKeys(runId).manifest, JSON.stringify(manifest({ runId, createdAt: new Date(at).toISOString() })));
  return runId;
}

/** The newest `limit` runs by creation time, or every run since `sinceDay`: reading them all. */
function expected(runs: Array<{ runId: string; at: number }>, limit: number, sinceDay?: string): string[] {
  const chosen = sinceDay !== undefined ? runs.filter((r) => r.runId.slice(0, 6) >= sinceDay) : runs;
  const newest = [...chosen].sort((a, b) => b.at - a.at);
  return (sinceDay !== undefined ? newest : newest.slice(0, limit)).map((r) => r.runId);
}

describe('listRuns', () => {
  it('returns what reading every run would, whatever the spread of runs over two years', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 800 }), { maxLength: 60 }), fc.integer({ min: 1, max: 30 }), fc.integer({ min: 0, max: 400 }), async (ages, limit, since) => {
        const store = new MemoryStore();
        const runs: Array<{ runId: string; at: number }> = [];
        for (const [n, daysAgo] of ages.entries()) runs.push({ runId: await runAt(store, daysAgo, n + 2), at: NOW - daysAgo * DAY + n + 2 });
        const ids = (r: Awaited<ReturnType<typeof listRuns>>) => r.map((x) => x.runId);
        expect(ids(await listRuns(store, limit, undefined, NOW))).toEqual(expected(runs, limit));
        const sinceDay = runIdDay(new Date(NOW - since * DAY));
        expect(ids(await listRuns(store, 0, sinceDay, NOW))).toEqual(expected(runs, 0, sinceDay));
      }),
      { numRuns: 60 },
    );
  });
});

describe('listRuns on S3 (the real SDK against the recording endpoint)', () => {
  let endpoint: AwsEndpoint;
  let clients: ReturnType<AwsEndpoint['clients']>;
  let store: S3Store;

  beforeEach(async () => {
    endpoint = new AwsEndpoint();
    await endpoint.start();
    clients = endpoint.clients();
    store = new S3Store({ client: clients.s3, bucket: 'lab-starfish-results' });
  });
  afterEach(async () => {
    for (const client of Object.values(clients)) client.destroy();
    await endpoint.close();
  });

  const lists = () => endpoint.requests.filter((r) => r.operation === 'ListObjectsV2');

  it("a bucket of two years' runs: the newest 50, and a week's history, are one page each", async () => {
    // 2,400 runs of two years ago to a month ago (3 pages of 1,000 if listed from the start), 60 this week.
    for (let n = 0; n < 2_400; n++) await runAt(store, 31 + (n % 700), n + 2);
    const recent: string[] = [];
    for (let n = 0; n < 60; n++) recent.push(await runAt(store, n % 6, 10_000 + n));
    endpoint.requests.length = 0;

    const newest = await listRuns(store, 50, undefined, NOW);
    expect(newest).toHaveLength(50);
    expect(newest.every((r) => recent.includes(r.runId))).toBe(true);
    expect(lists()).toHaveLength(1);
    expect(decodeURIComponent(lists()[0]!.path)).toContain(`start-after=runs/${runIdDay(new Date(NOW - 7 * DAY))}`);

    endpoint.requests.length = 0;
    const week = await listRuns(store, 0, runIdDay(new Date(NOW - 7 * DAY)), NOW);
    expect(week.map((r) => r.runId).sort()).toEqual([...recent].sort());
    expect(lists()).toHaveLength(1);
  });

  it('a quiet lab (its last runs months ago) is still listed whole, widening the window', async () => {
    const old = [await runAt(store, 400, 2), await runAt(store, 90, 3)];
    endpoint.requests.length = 0;
    expect((await listRuns(store, 20, undefined, NOW)).map((r) => r.runId)).toEqual([...old].reverse());
    // a week, a month, a year, then everything: each a single page here
    expect(lists()).toHaveLength(4);
  });
});

describe('listRuns on a directory store', () => {
  it('a run.json that cannot be opened (a directory there, EISDIR) is that run listed as unreadable, not every run hidden', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'list-runs-'));
    try {
      const store = new DirectoryStore(root);
      const good = [await runAt(store, 1, 2), await runAt(store, 0, 3)];
      const bad = `${runIdDay(new Date(NOW))}-zzzz`;
      await mkdir(path.join(root, runKeys(bad).manifest), { recursive: true });
      const listed = await listRuns(store, 20, undefined, NOW);
      expect(listed.filter((r) => 'manifest' in r).map((r) => r.runId).sort()).toEqual([...good].sort());
      const unreadable = listed.find((r) => r.runId === bad);
      expect(unreadable && 'unreadable' in unreadable && unreadable.unreadable.why).toMatch(/EISDIR/);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it("reads thousands of runs without opening them all at once (a process's open-file limit is often 1,024, 256 on macOS)", async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'list-runs-'));
    try {
      const store = new DirectoryStore(root);
      for (let n = 0; n < 3_000; n++) await runAt(store, n % 7, n + 2);
      // Counted at the port edge: each manifest read holds one open file.
      let open = 0;
      let most = 0;
      const get = store.get.bind(store);
      store.get = async (...args) => {
        most = Math.max(most, ++open);
        try {
          return await get(...args);
        } finally {
          open--;
        }
      };
      expect(await listRuns(store, 0, runIdDay(new Date(NOW - 7 * DAY)), NOW)).toHaveLength(3_000);
      expect(most).toBeLessThanOrEqual(64);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }, 60_000);
});
