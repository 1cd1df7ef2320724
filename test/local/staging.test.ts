import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { generateExperiment, generatedExperiment, localHarness, removeDir, tempDir } from '../helpers/local.js';
import { LocalReader } from '../../src/local/file-reader.js';
import { walkExperiment } from '../../src/spacetx/walk.js';

const shared = generatedExperiment(2);

const filesUnder = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(path.join(dir, e.name)) : [path.join(dir, e.name)]));

describe('stage', () => {
  it('copies every file of the experiment into the store, and a run reads the staged copy', async () => {
    const home = await tempDir('home');
    const h = localHarness(home);
    const answer = await h.command(`stage ${shared.experiment} as=iss-copy`);
    expect(answer.refused).toBe(false);
    await h.system.settle();

    const staged = path.join(home, 'experiments/iss-copy');
    const source = filesUnder(shared.data).filter((f) => !f.endsWith('ground_truth.csv')).map((f) => path.relative(shared.data, f)).sort();
    const copied = filesUnder(staged).map((f) => path.relative(staged, f)).filter((f) => f !== '.staged.json').sort();
    // experiment.json, the codebook, every image manifest, FOV tile JSON and tile: all but the
    // generator's ground truth, which no SpaceTx file refers to.
    expect(copied).toEqual(source);
    expect(copied.filter((f) => f.endsWith('.tiff'))).toHaveLength(36);
    expect(h.transcript()).toMatch(new RegExp(`Staged ${copied.length} files as iss-copy\\. Run it with /starfish run ${staged.replace(/[/.]/g, '\\$&')}/experiment\\.json`));

    await h.command(`run ${path.join(staged, 'experiment.json')} fovs=1`);
    await h.system.settle();
    expect((await h.latestRun())!.status).toBe('succeeded');

    // The name is taken now: staging over it could pull files from under a running job.
    await h.command(`stage ${shared.experiment} as=iss-copy`);
    await h.system.settle();
    expect(h.transcript()).toMatch(/An experiment is already staged as iss-copy; runs may be reading it\. Choose another name, e\.g\. as=iss-copy-2/);
    await removeDir(home);
  });

  it('takes a relative path, as run does', async () => {
    const home = await tempDir('home');
    const h = localHarness(home);
    await h.command(`stage ${path.relative(process.cwd(), shared.experiment)} as=rel`);
    await h.system.settle();
    expect(existsSync(path.join(home, 'experiments/rel/experiment.json'))).toBe(true);
    expect(h.transcript()).toMatch(/Staged \d+ files as rel\./);
    await removeDir(home);
  });

  it('says which files could not be copied', async () => {
    const home = await tempDir('home');
    const broken = await tempDir('broken');
    const copy = generateExperiment(broken, 1);
    const tile = filesUnder(broken).find((f) => f.endsWith('.tiff'))!;
    const bytes = await readFile(tile);
    await rm(tile);
    const h = localHarness(home);
    await h.command(`stage ${copy} as=partial`);
    await h.system.settle();
    expect(h.transcript()).toMatch(/copied \d+\/\d+ files; 1 failed, e\.g\. .*\.tiff: .*The partial copy was removed; stage again as=partial once the files are there/);
    // Nothing of the incomplete copy is left, and the name is free again.
    expect(filesUnder(path.join(home, 'experiments'))).toEqual([]);
    await writeFile(tile, bytes);
    await h.command(`stage ${copy} as=partial`);
    await h.system.settle();
    expect(h.transcript()).toMatch(/Staged \d+ files as partial\./);
    await removeDir(home);
    await removeDir(broken);
  });

  it('copies a sibling folder, absolute paths and a file:// URL into the staged folder with their real names, rewrites the JSON that names them, and a run reads the copy', async () => {
    const home = await tempDir('home');
    const data = await tempDir('moved');
    // The generated experiment in a sibling folder whose name has a space; experiment.json
    // elsewhere names it by ../, by an absolute path and by a file:// URL, and one tile by its
    // absolute path.
    const other = path.join(data, 'other data');
    await rename(path.dirname(generateExperiment(path.join(data, 'gen'), 1)), other);
    await mkdir(path.join(data, 'exp'));
    await writeFile(
      path.join(data, 'exp/experiment.json'),
      JSON.stringify({
        version: '5.0.0',
        images: { primary: '../other data/primary_image.json', nuclei: path.join(other, 'nuclei.json'), dots: `file://${other.split('/').map(encodeURIComponent).join('/')}/dots.json` },
        codebook: '../other%20data/codebook.json',
        extras: {},
      }),
    );
    const fovFile = path.join(other, 'primary-fov_000.json');
    const fov = JSON.parse(await readFile(fovFile, 'utf8')) as { tiles: Array<{ file: string }> };
    fov.tiles[0]!.file = path.join(other, fov.tiles[0]!.file);
    await writeFile(fovFile, JSON.stringify(fov));

    const h = localHarness(home);
    await h.command(`stage ${path.join(data, 'exp/experiment.json')} as=moved`);
    await h.system.settle();
    const staged = path.join(home, 'experiments/moved');
    expect(h.transcript()).toMatch(/Staged 26 files as moved\./);
    expect(filesUnder(staged).map((f) => path.relative(staged, f)).filter((f) => !f.startsWith('other data/')).sort()).toEqual(['.staged.json', 'experiment.json']);
    expect(existsSync(path.join(staged, 'other data/primary-fov_000-r0-c0-z0.tiff'))).toBe(true);

    const experiment = JSON.parse(readFileSync(path.join(staged, 'experiment.json'), 'utf8'));
    expect(experiment).toEqual({
      version: '5.0.0',
      images: { primary: 'other data/primary_image.json', nuclei: 'other data/nuclei.json', dots: 'other data/dots.json' },
      codebook: 'other data/codebook.json',
      extras: {},
    });
    expect(JSON.parse(readFileSync(path.join(staged, 'other data/primary-fov_000.json'), 'utf8')).tiles[0].file).toBe('primary-fov_000-r0-c0-z0.tiff');
    // A document whose references already lead to the copy is copied byte for byte.
    expect(readFileSync(path.join(staged, 'other data/nuclei.json'))).toEqual(readFileSync(path.join(other, 'nuclei.json')));

    const reader = new LocalReader();
    const copy = await walkExperiment(reader, path.join(staged, 'experiment.json'));
    expect(copy.problems).toEqual([]);
    expect(copy.files.map((f) => f.at).filter((at) => !at.startsWith(staged + path.sep))).toEqual([]);

    await h.command(`run ${path.join(staged, 'experiment.json')} fovs=0`);
    await h.system.settle();
    expect((await h.latestRun())!.status).toBe('succeeded');
    await removeDir(home);
    await removeDir(data);
  });

  it('refuses before copying anything what starfish would not load, naming the file and the field', async () => {
    const home = await tempDir('home');
    const broken = await tempDir('broken');
    const experiment = generateExperiment(broken, 1);
    const doc = JSON.parse(await readFile(experiment, 'utf8'));
    delete doc.extras;
    await writeFile(experiment, JSON.stringify({ ...doc, version: '6.0.0' }));
    const h = localHarness(home);
    await h.command(`stage ${experiment} as=broken`);
    await h.system.settle();
    expect(h.transcript()).toMatch(/experiment\.json: "version" is 6\.0\.0, which starfish does not support; starfish reads experiment versions 4\.0\.0 to 5\.0\.0\. Example: \{"version": "5\.0\.0".* Nothing was staged\./);
    expect(existsSync(path.join(home, 'experiments/broken'))).toBe(false);

    await writeFile(experiment, JSON.stringify({ ...doc, images: { ...doc.images, nuclei: 'http://data.example.invalid/nuclei.json' } }));
    await h.command(`stage ${experiment} as=broken`);
    await h.system.settle();
    expect(h.transcript()).toMatch(
      /experiment\.json has no "extras"\. Example: .*"extras": \{\}\} • .*experiment\.json: "images\.nuclei" is "http:\/\/data\.example\.invalid\/nuclei\.json", which this deployment may not read: .*http:\/\/ is not read.* Nothing was staged\./,
    );
    expect(existsSync(path.join(home, 'experiments/broken'))).toBe(false);
    await removeDir(home);
    await removeDir(broken);
  });

  it('refuses two different files that would land on one staged path, naming both', async () => {
    const home = await tempDir('home');
    const data = await tempDir('clash');
    await rename(path.dirname(generateExperiment(path.join(data, 'gen'), 1)), path.join(data, 'exp'));
    // ../shared/t.tiff would be staged as shared/t.tiff, where the experiment has a file of its own.
    await mkdir(path.join(data, 'exp/shared'));
    await mkdir(path.join(data, 'shared'));
    const fovFile = path.join(data, 'exp/primary-fov_000.json');
    const fov = JSON.parse(await readFile(fovFile, 'utf8')) as { tiles: Array<{ file: string; sha256?: string }> };
    await rename(path.join(data, 'exp', fov.tiles[0]!.file), path.join(data, 'shared/t.tiff'));
    await rename(path.join(data, 'exp', fov.tiles[1]!.file), path.join(data, 'exp/shared/t.tiff'));
    fov.tiles[0]!.file = '../shared/t.tiff';
    fov.tiles[1]!.file = 'shared/t.tiff';
    await writeFile(fovFile, JSON.stringify(fov));
    const h = localHarness(home);
    await h.command(`stage ${path.join(data, 'exp/experiment.json')} as=clash`);
    await h.system.settle();
    expect(h.transcript()).toMatch(/clash-\w+\/shared\/t\.tiff and .*\/exp\/shared\/t\.tiff would both be staged as shared\/t\.tiff .*Rename or move one of them.* Nothing was staged\./);
    expect(existsSync(path.join(home, 'experiments/clash'))).toBe(false);
    await removeDir(home);
    await removeDir(data);
  });
});
