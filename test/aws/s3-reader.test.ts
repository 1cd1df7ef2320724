import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Result } from '../../src/result.js';
import { CopyObjectCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { S3Reader, copySource } from '../../src/aws/s3-reader.js';
import { CREDENTIALS, REGION, fakeS3, type FakeS3 } from './helpers.js';
import { TEST_CA, TEST_HOST, startTestServer, type TestServer } from '../fixtures/tls/server.js';

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

  it('reads at most maxBytes of an input (a Range request) and refuses a larger one, saying so', async () => {
    s3.put('s3://lab-data/iss/huge.json', 'x'.repeat(1_000));
    await expect(reader.read('s3://lab-data/iss/huge.json', { maxBytes: 100 })).rejects.toThrow(/larger than 100 bytes, more than this kind of input may be/);
    expect(s3.mock.commandCalls(GetObjectCommand).at(-1)!.args[0].input).toEqual({ Bucket: 'lab-data', Key: 'iss/huge.json', Range: 'bytes=0-100' });
    expect((await reader.read('s3://lab-data/iss/huge.json', { maxBytes: 1_000 })).length).toBe(1_000);
  });

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

  it('refuses file paths, file:// and http:// URLs and malformed s3 URLs; allows public https', () => {
    expect(refusalOf(reader.checkReadable('/home/me/experiment.json'))).toMatch(/file path.*s3:\/\/ or https:\/\//);
    expect(refusalOf(reader.checkReadable('file:///home/me/experiment.json'))).toMatch(/a file:\/\/ URL names a file on one machine, which this deployment cannot read/);
    expect(refusalOf(reader.checkReadable('http://example.org/experiment.json'))).toMatch(/http:\/\/ is not read.*Use https:\/\//);
    expect(refusalOf(reader.checkReadable('s3://'))).toMatch(/not a valid s3:\/\/ URL/);
    expect(reader.checkReadable('https://example.org/experiment.json').ok).toBe(true);
  });

  it('refuses https URLs the URL policy refuses, naming what the address is, without calling S3', async () => {
    expect(refusalOf(reader.checkReadable('https://169.254.169.254/latest/meta-data/'))).toMatch(/169\.254\.169\.254 is a link-local address/);
    await expect(reader.read('https://2130706433/experiment.json')).rejects.toThrow(/127\.0\.0\.1 is a loopback address/);
    const limited = new S3Reader({ client: client(), buckets: ['lab-data'], https: { allowedHosts: ['data.lab.org'] } });
    expect(refusalOf(limited.checkReadable('https://example.org/experiment.json'))).toMatch(/reads https inputs only from data\.lab\.org/);
    expect(s3.mock.calls()).toHaveLength(0);
  });

  describe('over https (a local TLS server, its name resolved by the test)', () => {
    let server: TestServer;
    beforeEach(async () => {
      server = await startTestServer((req, res) => (req.url === '/missing' ? res.writeHead(404).end('nope') : res.end(`body of ${req.url}`)));
    });
    afterEach(() => server.close());
    const https = { resolve: async () => [{ address: '127.0.0.1', family: 4 }], ca: TEST_CA, testOnlyAddresses: ['127.0.0.1'] };

    it('reads https:// under the URL policy', async () => {
      const r = new S3Reader({ client: client(), buckets: ['lab-data'], https });
      expect((await r.read(`https://${TEST_HOST}:${server.port}/x.json`)).toString()).toBe('body of /x.json');
      await expect(r.read(`https://${TEST_HOST}:${server.port}/missing`)).rejects.toThrow('HTTP 404');
      expect(server.seen.map((seen) => seen.url)).toEqual(['/x.json', '/missing']);
    });

    it('copies https → s3 by reading and PutObject', async () => {
      const r = new S3Reader({ client: client(), buckets: ['lab-starfish-results'], https });
      await r.copy(`https://${TEST_HOST}:${server.port}/codebook.json`, 's3://lab-starfish-results/experiments/x/codebook.json');
      expect(s3.mock.commandCalls(PutObjectCommand)[0]!.args[0].input).toMatchObject({ Bucket: 'lab-starfish-results', Key: 'experiments/x/codebook.json', ContentType: 'application/json' });
      expect(s3.text('s3://lab-starfish-results/experiments/x/codebook.json')).toBe('body of /codebook.json');
    });
  });

  it('copies s3 → s3 server-side with CopyObject (key URL-encoded in CopySource)', async () => {
    await reader.copy('s3://spacetx-public-data/iss/tiles/fov 0+r1.tiff', 's3://lab-starfish-results/experiments/iss/tiles/fov 0+r1.tiff');
    const input = s3.mock.commandCalls(CopyObjectCommand)[0]!.args[0].input;
    expect(input).toEqual({ Bucket: 'lab-starfish-results', Key: 'experiments/iss/tiles/fov 0+r1.tiff', CopySource: 'spacetx-public-data/iss/tiles/fov%200%2Br1.tiff' });
    expect(s3.text('s3://lab-starfish-results/experiments/iss/tiles/fov 0+r1.tiff')).toBe('tile');
    expect(s3.mock.commandCalls(GetObjectCommand)).toHaveLength(0);
    expect(copySource('b', 'a/b c/d.json')).toBe('b/a/b%20c/d.json');
  });

  it('refuses writes to a read-only bucket and to buckets not allowed', async () => {
    await expect(reader.copy('s3://lab-data/iss/experiment.json', 's3://spacetx-public-data/iss/copy.json')).rejects.toThrow(/bucket "spacetx-public-data" is read-only/);
    await expect(reader.copy('s3://lab-data/iss/experiment.json', 's3://elsewhere/x.json')).rejects.toThrow(/bucket "elsewhere" is not one this deployment may write to.*s3:\/\/lab-starfish-results/);
    await expect(reader.copy('s3://elsewhere/x.json', 's3://lab-data/x.json')).rejects.toThrow(/bucket "elsewhere", which this deployment may not read/);
    expect(reader.checkWritable('s3://lab-data/x').ok).toBe(true);
    expect(s3.mock.calls()).toHaveLength(0);
  });
});
