/**
 * Packed children end to end on the local executor with the real containers: one Python process
 * runs a chunk of FOVs; a FOV that fails fails alone, is named in the digest, and a retry reruns
 * that FOV only.
 */
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runKeys } from '../../src/run/layout.js';
import { failingRecipe, generatedExperiment, localHarness, NUMPY_RECIPE, removeDir, tempDir } from '../helpers/local.js';

const shared = generatedExperiment(4);

/** Packing on, from a default estimate long enough that each of the 2 local slots gets 2 FOVs. */
const packingPolicy = {
  approval: { approvers: ['tester'], allowSelfApproval: true },
  queues: { default: 'local', allowed: ['local'] },
  defaultRecipe: NUMPY_RECIPE,
  cost: { packFovs: true, defaultSecondsPerFov: 30, queues: { local: { maxVcpus: 2 } } },
};

describe('packed children', () => {
  it('a packed child with one failing FOV writes the others; the digest names that FOV; retry reruns it alone', async () => {
    const home = await tempDir('home');
    const marker = path.join(home, 'break-fov-2');
    await writeFile(marker, '');
    const recipe = await failingRecipe(home, [2], marker);
    const h = localHarness(home, { policy: packingPolicy });
    await h.command(`run ${shared.experiment} recipe=${recipe}`);
    await h.system.settle();

    const run = (await h.latestRun())!;
    expect(run.plan).toMatchObject({ perChild: 2, units: [{ size: 2, fovs: '0-3', perChild: 2 }] });
    expect(run.status).toBe('partially-failed');
    // FOV 3 shared FOV 2's child and was processed all the same.
    expect(run.failures.map((f) => f.fov)).toEqual([2]);
    expect(run.progress).toMatchObject({ total: 4, succeeded: 3, failed: 1 });
    const fovs = path.join(home, runKeys(run.runId).fovOutputs);
    for (const f of [0, 1, 3]) expect(existsSync(path.join(fovs, `fov_00${f}.csv`))).toBe(true);
    expect(existsSync(path.join(fovs, 'fov_002.csv'))).toBe(false);
    const t = h.transcript();
    expect(t).toMatch(/1 FOV failed/);
    expect(t).toMatch(/• FOV 2 log \(\S+\) — recipe raised ValueError: simulated failure/);
    expect(t).toMatch(/3 succeeded · 1 failed of 4 FOVs/);

    await rm(marker);
    await h.command(`retry ${run.runId}`);
    await h.system.settle();
    const after = (await h.latestRun())!;
    expect(after.submissions.at(-1)!.fovs).toBe('2');
    expect(after.status).toBe('succeeded');
    expect(after.results).toMatchObject({ fovsProcessed: 4, fovsMissing: [] });
    // What is billed counts every round's containers: the first round's 2 children and the retry's 1.
    expect(after.results?.containers?.containers).toBe(3);
    await removeDir(home);
  }, 90_000);

  it('by default packs a recipe once its time per FOV has been measured: its first run is one FOV per child, the next is packed', async () => {
    const home = await tempDir('home');
    const policy = { ...packingPolicy, cost: { queues: { local: { maxVcpus: 2 } } } };
    const h = localHarness(home, { policy });
    await h.command(`run ${shared.experiment} recipe=${NUMPY_RECIPE}`);
    await h.system.settle();
    const first = (await h.latestRun())!;
    expect(first.status).toBe('succeeded');
    expect(first.plan.perChild).toBeUndefined();
    expect(first.results?.compute?.fovs).toBe(4);

    await h.command(`run ${shared.experiment} recipe=${NUMPY_RECIPE}`);
    await h.system.settle();
    const second = (await h.latestRun())!;
    expect(second.runId).not.toBe(first.runId);
    expect(second.estimate).toMatchObject({ source: 'history' });
    expect(second.plan).toMatchObject({ perChild: 2, units: [{ size: 2, perChild: 2 }] });
    expect(second.status).toBe('succeeded');
    await removeDir(home);
  }, 90_000);
});
