import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { S3Store, MAX_DOWNLOAD_EXPIRY_SECONDS } from '../../src/aws/s3-store.js';
import { CREDENTIALS, REGION, conditionalConflict, fakeS3, s3Error, type FakeS3 } from './helpers.js';

const client = () => new S3Client({ region: REGION, credentials: CREDENTIALS });

describe('S3Store', () => {
  let s3: FakeS3;
  beforeEach(() => {
    s3 = fakeS3();
  });
  afterEach(() => s3.mock.restore());

  it('puts and gets objects under the key prefix, with the ETag S3 returns', async () => {
    const store = new S3Store({ client: client(), bucket: 'results', prefix: '/starfish/' });
    const { etag } = await store.put('runs/a/run.json', '{"x":1}');
    expect(etag).toMatch(/^"[0-9a-f]{32}"$/);
    expect(s3.text('s3://results/starfish/runs/a/run.json')).toBe('{"x":1}');
    const got = await store.get('runs/a/run.json');
    expect(got?.body.toString()).toBe('{"x":1}');
    expect(got?.etag).toBe(etag);
    expect(s3.mock.commandCalls(PutObjectCommand)[0]!.args[0].input).toMatchObject({ Bucket: 'results', Key: 'starfish/runs/a/run.json', ContentType: 'application/json' });
    expect(await store.get('runs/missing.json')).toBeUndefined();
    expect(store.locate('runs/a/run.json')).toBe('s3://results/starfish/runs/a/run.json');
  });

  it('reads at most maxBytes of an object a job wrote, with a Range request, and says when it was larger', async () => {
    const store = new S3Store({ client: client(), bucket: 'results' });
    await store.put('outputs/a/results/summary.json', 'x'.repeat(100));
    const capped = await store.get('outputs/a/results/summary.json', { maxBytes: 10 });
    expect(s3.mock.commandCalls(GetObjectCommand).at(-1)!.args[0].input.Range).toBe('bytes=0-10');
    expect(capped).toMatchObject({ tooLarge: true });
    expect(capped!.body.length).toBe(10);
    const whole = await store.get('outputs/a/results/summary.json', { maxBytes: 100 });
    expect(whole!.tooLarge).toBeUndefined();
    expect(whole!.body.length).toBe(100);
  });

  it('createIfAbsent sends If-None-Match: * and maps 412 PreconditionFailed to "exists"', async () => {
    const store = new S3Store({ client: client(), bucket: 'results' });
    expect(await store.createIfAbsent('claims/x', 'one')).toEqual({ etag: expect.any(String) });
    expect(await store.createIfAbsent('claims/x', 'two')).toBe('exists');
    expect(s3.text('s3://results/claims/x')).toBe('one');
    const calls = s3.mock.commandCalls(PutObjectCommand);
    expect(calls.map((c) => c.args[0].input.IfNoneMatch)).toEqual(['*', '*']);
  });

  it('createIfAbsent retries a 409 ConditionalRequestConflict, then reports the winner as "exists"', async () => {
    const store = new S3Store({ client: client(), bucket: 'results' });
    s3.beforePut.push(() => {
      // A concurrent writer was mid-flight: S3 answers 409; by the retry it has written the object.
      s3.put('s3://results/claims/y', 'theirs');
      throw conditionalConflict();
    });
    expect(await store.createIfAbsent('claims/y', 'mine')).toBe('exists');
    expect(s3.mock.commandCalls(PutObjectCommand)).toHaveLength(2);
    expect(s3.text('s3://results/claims/y')).toBe('theirs');
  });

  it('createIfAbsent retries a 409 and writes when the concurrent write did not create the object', async () => {
    const store = new S3Store({ client: client(), bucket: 'results' });
    s3.beforePut.push(() => {
      throw conditionalConflict();
    });
    expect(await store.createIfAbsent('claims/w', 'mine')).toEqual({ etag: expect.any(String) });
    expect(s3.text('s3://results/claims/w')).toBe('mine');
  });

  it('createIfAbsent gives up on a 409 that persists', async () => {
    const store = new S3Store({ client: client(), bucket: 'results', conflictRetries: 2 });
    s3.mock.on(PutObjectCommand).rejects(conditionalConflict());
    await expect(store.createIfAbsent('claims/z', 'x')).rejects.toMatchObject({ name: 'ConditionalRequestConflict' });
    expect(s3.mock.commandCalls(PutObjectCommand)).toHaveLength(3);
  });

  it('replaceIf sends If-Match with the etag and maps 412 to "conflict" (and 409, and a deleted object)', async () => {
    const store = new S3Store({ client: client(), bucket: 'results' });
    const { etag } = await store.put('runs/a/run.json', 'v1');
    const second = await store.replaceIf('runs/a/run.json', 'v2', etag);
    expect(second).toEqual({ etag: expect.any(String) });
    expect(await store.replaceIf('runs/a/run.json', 'v3', etag)).toBe('conflict');
    expect(s3.text('s3://results/runs/a/run.json')).toBe('v2');
    expect(s3.mock.commandCalls(PutObjectCommand).at(-1)!.args[0].input.IfMatch).toBe(etag);
    expect(await store.replaceIf('runs/gone/run.json', 'v1', etag)).toBe('conflict');
    s3.beforePut.push(() => {
      throw conditionalConflict();
    });
    expect(await store.replaceIf('runs/a/run.json', 'v4', (second as { etag: string }).etag)).toBe('conflict');
  });

  it('compare-and-swap loses no update among 20 concurrent writers', async () => {
    const store = new S3Store({ client: client(), bucket: 'results' });
    await store.put('counter', '0');
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        for (;;) {
          const cur = (await store.get('counter'))!;
          const next = String(Number(cur.body.toString()) + 1);
          if ((await store.replaceIf('counter', next, cur.etag)) !== 'conflict') return;
        }
      }),
    );
    expect(s3.text('s3://results/counter')).toBe('20');
  });

  it('lists every key under a prefix across ListObjectsV2 pages, relative to the store prefix', async () => {
    const store = new S3Store({ client: client(), bucket: 'results', prefix: 'sf' });
    s3.pageSize = 2;
    for (const k of ['runs/a/run.json', 'runs/b/run.json', 'runs/c/run.json', 'runs/c/fovs/fov_000.csv', 'other/x']) s3.put(`s3://results/sf/${k}`, 'x');
    expect(await store.list('runs/')).toEqual(['runs/a/run.json', 'runs/b/run.json', 'runs/c/fovs/fov_000.csv', 'runs/c/run.json']);
    const calls = s3.mock.commandCalls(ListObjectsV2Command).map((c) => c.args[0].input);
    expect(calls).toHaveLength(2);
    expect(calls[0]).toMatchObject({ Bucket: 'results', Prefix: 'sf/runs/' });
    expect(calls[1]).toMatchObject({ ContinuationToken: '2' });
  });

  it('lists the runs as folders (Delimiter), without paging through their per-FOV tables', async () => {
    const store = new S3Store({ client: client(), bucket: 'results', prefix: 'sf' });
    for (const k of ['runs/a/run.json', 'runs/b/run.json', 'runs/b/fovs/fov_000.csv', 'runs/b/fovs/fov_001.csv', 'other/x']) s3.put(`s3://results/sf/${k}`, 'x');
    expect(await store.listFolders('runs/')).toEqual(['a', 'b']);
    expect(s3.mock.commandCalls(ListObjectsV2Command).map((c) => c.args[0].input)).toEqual([{ Bucket: 'results', Prefix: 'sf/runs/', Delimiter: '/' }]);
  });

  it('deletes objects', async () => {
    const store = new S3Store({ client: client(), bucket: 'results' });
    await store.put('x', 'y');
    await store.delete('x');
    expect(await store.get('x')).toBeUndefined();
  });

  it('refuses keys that would escape the prefix', async () => {
    const store = new S3Store({ client: client(), bucket: 'results', prefix: 'sf' });
    await expect(store.get('../secret')).rejects.toThrow(/not a store key/);
    await expect(store.get('/abs')).rejects.toThrow(/not a store key/);
  });

  it('passes on errors other than not-found from GetObject', async () => {
    const store = new S3Store({ client: client(), bucket: 'results' });
    s3.mock.on(GetObjectCommand).rejects(s3Error('AccessDenied', 403, 'Access Denied'));
    await expect(store.get('x')).rejects.toMatchObject({ name: 'AccessDenied' });
  });

  it('downloadLink is a presigned GET with the configured expiry', async () => {
    const store = new S3Store({ client: client(), bucket: 'results', prefix: 'sf', downloadExpirySeconds: 3600 });
    const url = new URL(await store.downloadLink('runs/a/results/spots.csv'));
    expect(url.hostname).toBe('results.s3.us-east-1.amazonaws.com');
    expect(url.pathname).toBe('/sf/runs/a/results/spots.csv');
    expect(url.searchParams.get('X-Amz-Expires')).toBe('3600');
    expect(url.searchParams.get('X-Amz-Algorithm')).toBe('AWS4-HMAC-SHA256');
    expect(url.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
    expect(url.searchParams.get('response-content-disposition')).toBe('attachment; filename="spots.csv"');
    // Presigning signs locally: no request reaches S3.
    expect(s3.mock.calls()).toHaveLength(0);
  });

  it('download links default to 1 day and are capped at 7 days (604800 s)', async () => {
    const day = new URL(await new S3Store({ client: client(), bucket: 'results' }).downloadLink('k.csv'));
    expect(day.searchParams.get('X-Amz-Expires')).toBe('86400');
    const week = new URL(await new S3Store({ client: client(), bucket: 'results', downloadExpirySeconds: MAX_DOWNLOAD_EXPIRY_SECONDS }).downloadLink('k.csv'));
    expect(week.searchParams.get('X-Amz-Expires')).toBe('604800');
    expect(() => new S3Store({ client: client(), bucket: 'results', downloadExpirySeconds: 604_801 })).toThrow(/1 to 604800 \(7 days/);
    expect(() => new S3Store({ client: client(), bucket: 'results', downloadExpirySeconds: 0 })).toThrow(/1 to 604800/);
    expect(() => new S3Store({ client: client(), bucket: 'results', downloadExpirySeconds: 1.5 })).toThrow(/whole number/);
  });
});
