/**
 * What `/starfish run` reads to plan, through the real S3 reader (the SDK mocked at the command
 * level): as few documents as tell the FOVs apart, every reference checked against the URL
 * policy without being read.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { S3Reader } from '../../src/aws/s3-reader.js';
import { readExperiment } from '../../src/run/experiment.js';
import { CREDENTIALS, REGION, fakeS3, type FakeS3 } from '../aws/helpers.js';
import { CODEBOOK_JSON } from '../helpers/spacetx.js';

const collection = (contents: Record<string, string>) => JSON.stringify({ version: '0.1.0', contents, extras: null });
const TILESET = JSON.stringify({ version: '0.1.0', dimensions: ['r', 'c', 'z', 'y', 'x'], shape: { r: 1, c: 1, z: 1 }, tiles: [] });
const experiment = (primary: string) => JSON.stringify({ version: '5.0.0', images: { primary }, codebook: 'codebook.json', extras: {} });

describe('planning reads', () => {
  let s3: FakeS3;
  let reader: S3Reader;
  beforeEach(() => {
    s3 = fakeS3();
    reader = new S3Reader({ client: new S3Client({ region: REGION, credentials: CREDENTIALS }), buckets: ['lab-data'] });
    for (const folder of ['iss', 'v4']) s3.put(`s3://lab-data/${folder}/codebook.json`, CODEBOOK_JSON);
  });
  afterEach(() => s3.mock.restore());

  const keysRead = () => s3.mock.commandCalls(GetObjectCommand).map((c) => c.args[0].input.Key);
  const refusal = (url: string) => readExperiment(reader, url).then(
    () => '',
    (error: Error) => error.message,
  );

  it('plans FOVs from experiment.json, the codebook, the primary collection and its first FOV, not every FOV file', async () => {
    s3.put('s3://lab-data/iss/experiment.json', experiment('primary.json'));
    s3.put('s3://lab-data/iss/primary.json', collection(Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`fov_${String(i).padStart(3, '0')}`, `fov_${i}.json`]))));
    s3.put('s3://lab-data/iss/fov_0.json', TILESET);
    expect((await readExperiment(reader, 's3://lab-data/iss/experiment.json')).fovs).toEqual(Array.from({ length: 50 }, (_, i) => i));
    // The codebook is read and checked now: a bad one would fail every FOV job.
    expect(keysRead()).toEqual(['iss/experiment.json', 'iss/codebook.json', 'iss/primary.json', 'iss/fov_0.json']);
  });

  it('follows nested collections and names FOVs by their keys in the innermost one', async () => {
    s3.put('s3://lab-data/iss/experiment.json', experiment('primary.json'));
    s3.put('s3://lab-data/iss/primary.json', collection({ fov_900: 'slide 1.json', fov_901: 'slide%202.json' }));
    s3.put('s3://lab-data/iss/slide 1.json', collection({ fov_000: 'fov_000.json', fov_001: 'fov_001.json' }));
    s3.put('s3://lab-data/iss/slide 2.json', collection({ fov_007: 'fov_007.json' }));
    s3.put('s3://lab-data/iss/fov_000.json', TILESET);
    s3.put('s3://lab-data/iss/fov_007.json', TILESET);
    expect((await readExperiment(reader, 's3://lab-data/iss/experiment.json')).fovs).toEqual([0, 1, 7]);
    expect(keysRead()).not.toContain('iss/fov_001.json');
  });

  it('plans a 4.0.0 experiment from primary_images', async () => {
    s3.put('s3://lab-data/v4/experiment.json', JSON.stringify({ version: '4.0.0', primary_images: 'primary.json', auxiliary_images: {}, codebook: 'codebook.json', extras: null }));
    s3.put('s3://lab-data/v4/primary.json', collection({ fov_0003: 'a.json', fov_0004: 'b.json' }));
    expect((await readExperiment(reader, 's3://lab-data/v4/experiment.json')).fovs).toEqual([3, 4]);
  });

  it('refuses a FOV reference this deployment may not read, before reading it, naming the file and the field', async () => {
    s3.put('s3://lab-data/iss/experiment.json', experiment('primary.json'));
    s3.put('s3://lab-data/iss/primary.json', collection({ fov_000: 'fov_000.json', fov_001: 's3://other-bucket/fov_001.json' }));
    expect(await refusal('s3://lab-data/iss/experiment.json')).toMatch(
      /s3:\/\/lab-data\/iss\/primary\.json: "contents\.fov_001" is "s3:\/\/other-bucket\/fov_001\.json", which this deployment may not read: .*bucket "other-bucket", which this deployment may not read/,
    );
    expect(keysRead()).toEqual(['iss/experiment.json', 'iss/codebook.json', 'iss/primary.json']);
  });

  it('escapes what the experiment says before it reaches Slack', async () => {
    s3.put('s3://lab-data/iss/experiment.json', experiment('primary.json'));
    s3.put('s3://lab-data/iss/primary.json', collection({ '<!channel>': 'x.json' }));
    expect(await refusal('s3://lab-data/iss/experiment.json')).toMatch(/FOV "&lt;!channel&gt;" in the primary images of .* is not named fov_<number>/);
  });

  it('checks the other image types and the codebook against the URL policy before reading anything else', async () => {
    s3.put('s3://lab-data/iss/experiment.json', JSON.stringify({ version: '5.0.0', images: { primary: 'primary.json', nuclei: 'file:///data/nuclei.json' }, codebook: 'codebook.json', extras: {} }));
    s3.put('s3://lab-data/iss/primary.json', collection({ fov_000: 'fov_000.json' }));
    expect(await refusal('s3://lab-data/iss/experiment.json')).toMatch(/experiment\.json: "images\.nuclei" is "file:\/\/\/data\/nuclei\.json", which this deployment may not read/);
    s3.put('s3://lab-data/iss/experiment.json', JSON.stringify({ version: '5.0.0', images: { primary: 'primary.json' }, codebook: 's3://elsewhere/codebook.json', extras: {} }));
    expect(await refusal('s3://lab-data/iss/experiment.json')).toMatch(/experiment\.json: "codebook" is "s3:\/\/elsewhere\/codebook\.json", which this deployment may not read: .*bucket "elsewhere"/);
    expect(keysRead()).not.toContain('iss/primary.json');
  });
});
