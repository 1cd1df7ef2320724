/**
 * `/starfish stage` through the S3 adapters (the real S3Reader and S3Store, the SDK mocked at the
 * command level): the keys written have the real names (a space, not "%20"), JSON whose
 * references change is written rewritten, everything else is copied server-side, and the staged
 * copy loads from inside its prefix.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CopyObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { S3Reader } from '../../src/aws/s3-reader.js';
import { S3Store } from '../../src/aws/s3-store.js';
import { stageExperiment } from '../../src/launcher/staging.js';
import { readExperiment } from '../../src/run/experiment.js';
import { walkExperiment } from '../../src/spacetx/walk.js';
import { silentLogger } from '../../src/core.js';
import { CREDENTIALS, REGION, RecordingChat, fakeS3, type FakeS3 } from './helpers.js';
import { loadCases } from '../spacetx/cases.js';
import { TEST_CA, TEST_HOST, startTestServer } from '../fixtures/tls/server.js';

const STAGED = 's3://results/starfish/experiments';

const tileset = (files: string[]) => ({
  version: '0.1.0',
  dimensions: ['r', 'c', 'z', 'y', 'x'],
  shape: { r: files.length, c: 1, z: 1 },
  default_tile_shape: { y: 4, x: 4 },
  default_tile_format: 'TIFF',
  extras: {},
  tiles: files.map((file, r) => ({ file, coordinates: { xc: [0, 0.1], yc: [0, 0.1], zc: [0, 0.01] }, indices: { r, c: 0, z: 0 } })),
});
const CODEBOOK = { version: '0.0.0', mappings: [{ codeword: [{ r: 0, c: 0, v: 1 }], target: 'ACTB' }] };

describe('stage on S3', () => {
  let s3: FakeS3;
  let reader: S3Reader;
  let store: S3Store;
  let chat: RecordingChat;
  beforeEach(() => {
    s3 = fakeS3();
    const client = new S3Client({ region: REGION, credentials: CREDENTIALS });
    reader = new S3Reader({ client, buckets: ['results', 'lab-data'], readOnlyBuckets: ['public-data'] });
    store = new S3Store({ client, bucket: 'results', prefix: 'starfish' });
    chat = new RecordingChat();
  });
  afterEach(() => s3.mock.restore());

  const stage = (source: string, name: string) => stageExperiment({ reader, store, chat, log: silentLogger }, { type: 'StageRequested', userId: 'U1', channel: 'C1', source, name });
  const json = (url: string) => JSON.parse(s3.text(url)!) as Record<string, unknown>;
  const keysUnder = (prefix: string) => [...s3.objects.keys()].filter((k) => k.startsWith(prefix)).sort();

  it('writes keys with the real names, rewrites references into other buckets and folders, and the copy loads from inside its prefix', async () => {
    // A 4.0.0 experiment (staged as experiment.json, which /starfish run can take) in a folder with a space; its nuclei and codebook elsewhere in the
    // bucket (absolute s3:// URLs) and in a public bucket; FOV lists in a subfolder whose tiles
    // are named with a space (written as %20, which slicedimage decodes in a file name).
    const base = 's3://lab-data/iss run 1';
    s3.put(`${base}/experiment v4.json`, JSON.stringify({ version: '4.0.0', primary_images: 'fovs/primary.json', auxiliary_images: { nuclei: 's3://lab-data/shared/nuclei.json' }, codebook: 's3://public-data/codebooks/iss.json', extras: null }));
    s3.put(`${base}/fovs/primary.json`, JSON.stringify({ version: '0.1.0', contents: { fov_000: 'fov_000.json', fov_001: 'fov_001.json' } }));
    for (const fov of ['fov_000', 'fov_001']) {
      s3.put(`${base}/fovs/${fov}.json`, JSON.stringify(tileset([`${fov}%20r0.tiff`, `s3://lab-data/iss run 1/tiles/${fov} r1.tiff`])));
      s3.put(`${base}/fovs/${fov} r0.tiff`, `${fov} r0`);
      s3.put(`${base}/tiles/${fov} r1.tiff`, `${fov} r1`);
    }
    s3.put('s3://lab-data/shared/nuclei.json', JSON.stringify({ version: '0.1.0', contents: { fov_000: 'nuclei-fov_000.json' } }));
    s3.put('s3://lab-data/shared/nuclei-fov_000.json', JSON.stringify(tileset(['nuclei-fov_000.tiff'])));
    s3.put('s3://lab-data/shared/nuclei-fov_000.tiff', 'nuclei');
    s3.put('s3://public-data/codebooks/iss.json', JSON.stringify(CODEBOOK));

    await stage(`${base}/experiment v4.json`, 'iss');
    expect(chat.calls.at(-1)!.text).toMatch(/Staged 12 files as iss\. Run it with \/starfish run s3:\/\/results\/starfish\/experiments\/iss\/experiment\.json/);

    expect(keysUnder('results/starfish/experiments/iss/')).toEqual(
      [
        '.staged.json',
        'experiment.json',
        'fovs/fov_000 r0.tiff',
        'fovs/fov_000.json',
        'fovs/fov_001 r0.tiff',
        'fovs/fov_001.json',
        'fovs/primary.json',
        'public-data/codebooks/iss.json',
        'shared/nuclei-fov_000.json',
        'shared/nuclei-fov_000.tiff',
        'shared/nuclei.json',
        'tiles/fov_000 r1.tiff',
        'tiles/fov_001 r1.tiff',
      ].map((k) => `results/starfish/experiments/iss/${k}`),
    );
    expect([...s3.objects.keys()].some((k) => k.includes('%20'))).toBe(false);

    // References that changed are rewritten; on S3 ".." is part of a key, so a reference out of
    // a subfolder is written as the copy's s3:// URL.
    expect(json(`${STAGED}/iss/experiment.json`)).toMatchObject({ primary_images: 'fovs/primary.json', auxiliary_images: { nuclei: 'shared/nuclei.json' }, codebook: 'public-data/codebooks/iss.json' });
    expect((json(`${STAGED}/iss/fovs/fov_000.json`).tiles as Array<{ file: string }>).map((t) => t.file)).toEqual(['fov_000%20r0.tiff', 's3://results/starfish/experiments/iss/tiles/fov_000 r1.tiff']);
    // Documents whose references stay as they are, and tiles, are copied server-side, unchanged.
    expect(s3.text(`${STAGED}/iss/fovs/primary.json`)).toBe(s3.text(`${base}/fovs/primary.json`));
    const written = s3.mock.commandCalls(PutObjectCommand).map((c) => c.args[0].input.Key).sort();
    expect(written).toEqual(['experiment.json', 'fovs/fov_000.json', 'fovs/fov_001.json', '.staged.json'].map((k) => `starfish/experiments/iss/${k}`).sort());
    expect(s3.mock.commandCalls(CopyObjectCommand).find((c) => c.args[0].input.Key === 'starfish/experiments/iss/fovs/fov_000 r0.tiff')!.args[0].input.CopySource).toBe('lab-data/iss%20run%201/fovs/fov_000%20r0.tiff');

    // The copy loads: the same FOVs, and every file it names is inside the staged prefix.
    expect((await readExperiment(reader, `${STAGED}/iss/experiment.json`)).fovs).toEqual([0, 1]);
    const staged = await walkExperiment(reader, `${STAGED}/iss/experiment.json`);
    expect(staged.problems).toEqual([]);
    expect(staged.files.map((f) => f.at).filter((at) => !at.startsWith(`${STAGED}/iss/`))).toEqual([]);
    expect(staged.files).toHaveLength(12);
  });

  it('refuses before copying anything when starfish would not load the experiment, naming each problem', async () => {
    s3.put('s3://lab-data/bad/experiment.json', JSON.stringify({ version: '5.0.0', images: { primary: 'primary.json' }, codebook: 'codebook.json', extras: {} }));
    s3.put('s3://lab-data/bad/primary.json', JSON.stringify({ version: '0.1.0', contents: { fov_000: 'fov_000.json', fov_001: '../elsewhere/fov_001.json' } }));
    s3.put('s3://lab-data/bad/fov_000.json', JSON.stringify(tileset(['fov_000.tiff'])));
    s3.put('s3://lab-data/elsewhere/fov_001.json', JSON.stringify(tileset(['fov_001.tiff'])));
    s3.put('s3://lab-data/bad/codebook.json', JSON.stringify({ ...CODEBOOK, mappings: [{ codeword: [{ r: 0, c: 0 }], target: 'ACTB' }] }));

    await stage('s3://lab-data/bad/experiment.json', 'bad');
    const answer = chat.of('ephemeral').at(-1)!.text;
    expect(answer).toMatch(/starfish would not load this experiment, so a copy would not either/);
    expect(answer).toMatch(/s3:\/\/lab-data\/bad\/codebook\.json has no "mappings\[0\]\.codeword\[0\]\.v"/);
    expect(answer).toMatch(/Could not read the image collection or FOV tile list at s3:\/\/lab-data\/bad\/\.\.\/elsewhere\/fov_001\.json: no such object \(S3 keys are literal: "\.\." in a reference is part of the key/);
    expect(answer).toMatch(/Nothing was staged\.$/);
    expect(keysUnder('results/')).toEqual([]);
    expect(s3.mock.commandCalls(CopyObjectCommand)).toHaveLength(0);
  });

  // Every case of the shared table that starfish loads, its files in a bucket: {{ROOT}} is the
  // case's folder, so absolute paths stay in the bucket (slicedimage joins them to it).
  const S3_REFUSES: Record<string, RegExp> = {
    'file-url-reference': /"images\.primary" is "file:.*which this deployment may not read: .*the AWS deployment cannot read\. Use an s3:\/\/ or https:\/\/ URL/,
    'file-url-codebook': /"codebook" is "file:.*which this deployment may not read/,
    'sibling-folder-reference': /S3 keys are literal/,
  };
  const loadable = loadCases().filter((c) => c.starfish.loads && !['empty-manifest', 'v5-without-primary', 'nested-duplicate-fov-name', 'fov-names-duplicate-number', 'fov-names-not-numbered', 'starfish-example-fov-manifest'].includes(c.name));
  it.each(loadable.map((c) => [c.name, c] as const))('stages the loadable case %s from S3, or says why not', async (name, c) => {
    const root = `/cases/${name}`;
    for (const [rel, value] of Object.entries(c.files)) {
      const bytes = typeof value === 'object' && value !== null && 'bytes' in value && Object.keys(value).length === 1 ? String((value as { bytes: string }).bytes) : JSON.stringify(value);
      s3.put(`s3://lab-data${root}/${rel}`, bytes.replaceAll('{{ROOT}}', root));
    }
    const source = `s3://lab-data${root}/${c.experiment}`;
    await stage(source, name);
    if (S3_REFUSES[name]) {
      expect(chat.of('ephemeral').at(-1)!.text).toMatch(S3_REFUSES[name]!);
      expect(keysUnder('results/')).toEqual([]);
      return;
    }
    expect(chat.calls.at(-1)!.text).toMatch(new RegExp(`Staged \\d+ files as ${name}`));
    const copy = `${STAGED}/${name}/${c.experiment.split('/').pop()}`;
    expect((await readExperiment(reader, copy)).fovs).toEqual((await readExperiment(reader, source)).fovs);
    const staged = await walkExperiment(reader, copy);
    expect(staged.problems).toEqual([]);
    expect(staged.files.map((f) => f.at).filter((at) => !at.startsWith(`${STAGED}/${name}/`))).toEqual([]);
    expect(keysUnder(`results/starfish/experiments/${name}/`).filter((k) => k.includes('%'))).toEqual([]);
  });

  it('stages an experiment served over https into the bucket: requests with encoded names, keys with the real ones', async () => {
    const c = loadCases().find((x) => x.name === 'names-with-spaces')!;
    const files = new Map(Object.entries(c.files).map(([rel, v]) => [`/iss/${rel}`, typeof v === 'object' && v !== null && 'bytes' in v ? String((v as { bytes: string }).bytes) : JSON.stringify(v)]));
    const server = await startTestServer((req, res) => {
      const body = files.get(decodeURIComponent(req.url ?? ''));
      if (body === undefined) res.writeHead(404).end('nope');
      else res.end(body);
    });
    try {
      const https = { resolve: async () => [{ address: '127.0.0.1', family: 4 as const }], ca: TEST_CA, testOnlyAddresses: ['127.0.0.1'] };
      reader = new S3Reader({ client: new S3Client({ region: REGION, credentials: CREDENTIALS }), buckets: ['results'], https });
      const source = `https://${TEST_HOST}:${server.port}/iss/${c.experiment.replace(/ /g, '%20')}`;
      await stage(source, 'web');
      expect(chat.calls.at(-1)!.text).toMatch(/Staged 13 files as web\./);
      expect(server.seen.map((r) => r.url)).toContain('/iss/my%20experiment/primary_images-fov_000%20c0-r0-z0.tiff');
      expect(keysUnder('results/starfish/experiments/web/')).toContain('results/starfish/experiments/web/primary_images-fov_000 c0-r0-z0.tiff');
      const staged = await walkExperiment(reader, `${STAGED}/web/experiment.json`);
      expect(staged.problems).toEqual([]);
      expect(staged.files.map((f) => f.at).filter((at) => !at.startsWith(`${STAGED}/web/`))).toEqual([]);
      expect((await readExperiment(reader, `${STAGED}/web/experiment.json`)).fovs).toEqual([0, 1]);
    } finally {
      await server.close();
    }
  });
});
