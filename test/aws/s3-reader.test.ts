import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Result } from '../../src/result.js';
import { CopyObjectCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { S3Reader, copySource } from '../../src/aws/s3-reader.js';
import { CREDENTIALS, REGION, fakeS3, type FakeS3 } from './helpers.js';

const client = () => new S3Client({ region: REGION, credentials: CREDENTIALS });

const refusalOf = (r: Result<void>) => (r.ok ? undefined : r.reason);

describe('S3Reader and the bucket allowlist', () => {
  let s3: FakeS3;
  let reader: S3Reader;
  beforeEach(() => {
    s3 = fakeS3();
    reader = new S3Reader({ client: client(), buckets: ['lab-starfish-results', 'lab-data'], readOnlyBuckets: ['spacetx-public-data'] });
    s3.put('s3://lab-data/iss/experiment.json', '{"a":1}');
    s3.put('s3://spacetx-public-data/iss/experiment.json', '{"public":true}');
    s3.put('s3://spacetx-public-data/iss/tiles/fov 0+r1.tiff', 'tile');
  });
  afterEach(() => s3.mock.restore());

  it('reads s3:// objects in allowed buckets with GetObject', async () => {
    expect((await reader.read('s3://lab-data/iss/experiment.json')).toString()).toBe('{"a":1}');
    expect(s3.mock.commandCalls(GetObjectCommand)[0]!.args[0].input).toEqual({ Bucket: 'lab-data', Key: 'iss/experiment.json' });
    await expect(reader.read('s3://lab-data/iss/nope.json')).rejects.toThrow('no such object');
  });

  it('reads a read-only public bucket', async () => {
    expect(reader.checkReadable('s3://spacetx-public-data/iss/experiment.json').ok).toBe(true);
    expect((await reader.read('s3://spacetx-public-data/iss/experiment.json')).toString()).toBe('{"public":true}');
  });

  it('refuses reads from any other bucket, naming the bucket and what is allowed, without calling S3', async () => {
    const message = refusalOf(reader.checkReadable('s3://someone-elses-bucket/data/experiment.json'));
    expect(message).toContain('bucket "someone-elses-bucket"');
    expect(message).toContain('s3://lab-starfish-results, s3://lab-data');
    expect(message).toContain('s3://spacetx-public-data (read-only)');
    expect(message).toContain('STARFISH_ALLOWED_BUCKETS');
    await expect(reader.read('s3://someone-elses-bucket/data/experiment.json')).rejects.toThrow(/bucket "someone-elses-bucket", which this deployment may not read/);
    expect(s3.mock.calls()).toHaveLength(0);
  });

  it('refuses file paths and malformed s3 URLs, allows https', () => {
    expect(refusalOf(reader.checkReadable('/home/me/experiment.json'))).toMatch(/file path.*s3:\/\/ or https:\/\//);
    expect(refusalOf(reader.checkReadable('s3://'))).toMatch(/not a valid s3:\/\/ URL/);
    expect(reader.checkReadable('https://example.org/experiment.json').ok).toBe(true);
  });

  it('reads https:// with fetch', async () => {
    const fetched: string[] = [];
    const r = new S3Reader({
      client: client(),
      buckets: ['lab-data'],
      fetch: (async (url: string) => {
        fetched.push(url);
        return new Response(url.endsWith('missing') ? 'nope' : 'hello', { status: url.endsWith('missing') ? 404 : 200 });
      }) as typeof fetch,
    });
    expect((await r.read('https://example.org/x.json')).toString()).toBe('hello');
    await expect(r.read('https://example.org/missing')).rejects.toThrow('HTTP 404');
    expect(fetched).toEqual(['https://example.org/x.json', 'https://example.org/missing']);
  });

  it('copies s3 → s3 server-side with CopyObject (key URL-encoded in CopySource)', async () => {
    await reader.copy('s3://spacetx-public-data/iss/tiles/fov 0+r1.tiff', 's3://lab-starfish-results/experiments/iss/tiles/fov 0+r1.tiff');
    const input = s3.mock.commandCalls(CopyObjectCommand)[0]!.args[0].input;
    expect(input).toEqual({ Bucket: 'lab-starfish-results', Key: 'experiments/iss/tiles/fov 0+r1.tiff', CopySource: 'spacetx-public-data/iss/tiles/fov%200%2Br1.tiff' });
    expect(s3.text('s3://lab-starfish-results/experiments/iss/tiles/fov 0+r1.tiff')).toBe('tile');
    expect(s3.mock.commandCalls(GetObjectCommand)).toHaveLength(0);
    expect(copySource('b', 'a/b c/d.json')).toBe('b/a/b%20c/d.json');
  });

  it('copies https → s3 by fetching and PutObject', async () => {
    const r = new S3Reader({ client: client(), buckets: ['lab-starfish-results'], fetch: (async () => new Response('remote')) as unknown as typeof fetch });
    await r.copy('https://example.org/codebook.json', 's3://lab-starfish-results/experiments/x/codebook.json');
    expect(s3.mock.commandCalls(PutObjectCommand)[0]!.args[0].input).toMatchObject({ Bucket: 'lab-starfish-results', Key: 'experiments/x/codebook.json', ContentType: 'application/json' });
    expect(s3.text('s3://lab-starfish-results/experiments/x/codebook.json')).toBe('remote');
  });

  it('refuses writes to a read-only bucket and to buckets not allowed', async () => {
    await expect(reader.copy('s3://lab-data/iss/experiment.json', 's3://spacetx-public-data/iss/copy.json')).rejects.toThrow(/bucket "spacetx-public-data" is read-only/);
    await expect(reader.copy('s3://lab-data/iss/experiment.json', 's3://elsewhere/x.json')).rejects.toThrow(/bucket "elsewhere" is not one this deployment may write to.*s3:\/\/lab-starfish-results/);
    await expect(reader.copy('s3://elsewhere/x.json', 's3://lab-data/x.json')).rejects.toThrow(/bucket "elsewhere", which this deployment may not read/);
    expect(reader.checkWritable('s3://lab-data/x').ok).toBe(true);
    expect(s3.mock.calls()).toHaveLength(0);
  });
});
