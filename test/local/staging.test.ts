import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { generateExperiment, generatedExperiment, localHarness, removeDir, tempDir } from '../helpers/local.js';

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
    await rm(tile);
    const h = localHarness(home);
    await h.command(`stage ${copy}`);
    await h.system.settle();
    expect(h.transcript()).toMatch(/copied \d+\/\d+ files; 1 failed, e\.g\. .*\.tiff: /);
    expect(existsSync(path.join(home, 'experiments'))).toBe(true);
    await removeDir(home);
    await removeDir(broken);
  });
});
