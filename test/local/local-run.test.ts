import { describe, expect, it } from 'vitest';
import { runKeys } from '../../src/run/layout.js';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { failingRecipe, generatedExperiment, localHarness, NUMPY_RECIPE, removeDir, tempDir } from '../helpers/local.js';

const shared = generatedExperiment(4);

describe('a complete local run', () => {
  it('runs every FOV, merges, and posts progress and results in the channel', async () => {
    const home = await tempDir('home');
    const h = localHarness(home);
    const answer = await h.command(`run ${shared.experiment} recipe=${NUMPY_RECIPE} name=e2e`);
    expect(answer.refused).toBe(false);
    await h.system.settle();

    const run = (await h.latestRun())!;
    expect(run.status).toBe('succeeded');
    expect(run.plan).toMatchObject({ fovCount: 4, fovs: '0-3', units: [{ size: 4, fovs: '0-3' }] });
    expect(run.progress).toMatchObject({ total: 4, succeeded: 4, failed: 0, running: 0, waiting: 0 });
    // The ETA's rate counts from the first FOV that ended.
    expect(Date.parse(run.progress.firstEndedAt!)).toBeGreaterThanOrEqual(Date.parse(run.createdAt));
    const results = path.join(home, runKeys(run.runId).results);
    for (const f of ['spots.csv', 'summary.json', 'spots.png']) expect(existsSync(path.join(results, f))).toBe(true);
    const summary = JSON.parse(readFileSync(path.join(results, 'summary.json'), 'utf8'));
    expect(summary).toMatchObject({ fovs_expected: 4, fovs_processed: 4, fovs_missing: [] });
    expect(run.results?.spotsTotal).toBe(summary.spots_total);
    // What the jobs measured reaches the manifest (the next estimate of this recipe) and the results message.
    expect(summary.compute).toMatchObject({ fovs: 4 });
    expect(run.results?.compute).toMatchObject({ fovs: 4, wallSeconds: summary.compute.wall_seconds });
    // And how long the 4 containers ran, as the executor recorded each start and stop: at least the FOVs' own time.
    expect(run.results?.containers?.containers).toBe(4);
    expect(run.results!.containers!.seconds).toBeGreaterThanOrEqual(summary.compute.wall_seconds);
    // Reproducibility: the recipe as it was at launch.
    expect(readFileSync(path.join(home, runKeys(run.runId).recipeSnapshot), 'utf8')).toBe(readFileSync(NUMPY_RECIPE, 'utf8'));

    const t = h.transcript();
    expect(t).toContain(`starfish run ${run.runId} · e2e`);
    expect(t).toMatch(/4 succeeded of 4 FOVs/);
    expect(t).toContain(`Results of run ${run.runId}: ${summary.spots_total} spots from 4/4 FOVs`);
    expect(t.match(/Results of run/g)).toHaveLength(1);
    expect(t).toMatch(/Compute .* of FOV work over 4 FOVs, .* of CPU \(measured by the jobs\)/);
    // The whole experiment at its stage positions, then the FOV panels.
    expect(h.chat.uploads).toEqual([expect.objectContaining({ filename: `${run.runId}-overview.png` }), expect.objectContaining({ filename: `${run.runId}-spots.png` })]);
    for (const f of ['counts_matrix.csv', 'fov_quality.csv', 'overview.png']) expect(existsSync(path.join(results, f))).toBe(true);
    expect(t).toContain('counts_matrix.csv —');
    expect(summary.recipe).toMatchObject({ sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    // The recipe's declared settings, read from its text; each FOV's registration shift, as the recipe measured it.
    expect(summary.recipe.parameters).toMatchObject({ min_quality: 0.5, detect_sigmas: 3 });
    const quality = readFileSync(path.join(results, 'fov_quality.csv'), 'utf8').trim().split('\n').map((l) => l.split(','));
    expect(quality[0]).toEqual(['fov', 'status', 'spots', 'mean_quality', 'wall_seconds', 'peak_rss_mib', 'registration_shift_px', 'reason']);
    for (const row of quality.slice(1)) expect(Number(row[6])).toBeGreaterThan(0);
    // Every spot in pixels and at its stage position.
    expect(readFileSync(path.join(results, 'spots.csv'), 'utf8').split('\n')[0]).toBe('fov,x,y,z,target,quality,xc,yc,zc');

    // One answer per command: retrying a run that succeeded says why not, and nothing else.
    const before = h.transcript().length;
    const retry = await h.command(`retry ${run.runId}`);
    expect(retry.message).toBeUndefined();
    await h.system.settle();
    const answers = h.transcript().slice(before);
    expect(answers).toContain(`Run ${run.runId} is succeeded; retry reruns the failed FOVs of a run that has finished with failures.`);
    expect(answers).not.toMatch(/Retrying/);
    expect(answers.match(/only visible to you/g)).toHaveLength(1);
    await removeDir(home);
  });

  it('reports a failing FOV with its reason and log, merges the others, and marks the run partially failed', async () => {
    const home = await tempDir('home');
    const marker = path.join(home, 'break-fov-2');
    await writeFile(marker, '');
    const recipe = await failingRecipe(home, [2], marker);
    const h = localHarness(home);
    await h.command(`run ${shared.experiment} recipe=${recipe}`);
    await h.system.settle();

    const run = (await h.latestRun())!;
    expect(run.status).toBe('partially-failed');
    expect(run.failures).toEqual([expect.objectContaining({ fov: 2, round: 0, reported: true })]);
    const failure = run.failures[0]!;
    expect(failure.reason).toMatch(/simulated failure: no spots found in round 2/);
    expect(existsSync(failure.logLink!)).toBe(true);
    expect(readFileSync(failure.logLink!, 'utf8')).toMatch(/Traceback/);
    expect(run.results).toMatchObject({ fovsProcessed: 3, fovsMissing: [2] });
    expect(run.submissions[0]!.salvageMerge).toBeDefined();

    const t = h.transcript();
    expect(t).toMatch(/1 FOV failed/);
    expect(t).toMatch(/• FOV 2 log \(\S+\) — recipe raised ValueError: simulated failure: no spots found in round 2/);
    expect(t).toContain(failure.logLink!);
    expect(t).toMatch(/3\/4 FOVs/);
    // The recipe raised (exit 1): retry is offered only for a fix of the data, a new run for a fix of the recipe.
    expect(t).toContain(`FOV 2: the recipe or the data failed (the reason says which), so a plain retry fails the same way. Fixed the recipe? /starfish run ${shared.experiment} fovs=2 recipe=… Fixed the data in place? /starfish retry ${run.runId}`);
    expect(run.failures[0]!.kind).toBe('recipe');

    // Fix the cause, retry: only FOV 2 runs again, and the run completes.
    await rm(marker);
    const retry = await h.command(`retry ${run.runId}`);
    expect(retry.refused).toBe(false);
    await h.system.settle();
    const after = (await h.latestRun())!;
    expect(after.status).toBe('succeeded');
    expect(after.submissions).toHaveLength(2);
    expect(after.submissions[1]).toMatchObject({ round: 1, fovs: '2', arrays: [{ unit: { size: 1, fovs: '2' } }] });
    expect(after.results).toMatchObject({ fovsProcessed: 4, fovsMissing: [] });
    expect(h.transcript().match(/Results of run/g)).toHaveLength(2);
    await removeDir(home);
  });
});

describe('a run where every FOV fails', () => {
  it('says so, with the first reason, rather than blaming the merge', async () => {
    const home = await tempDir('home');
    const recipe = await failingRecipe(home, [0, 1, 2, 3]);
    const h = localHarness(home);
    await h.command(`run ${shared.experiment} recipe=${recipe}`);
    await h.system.settle();
    const run = (await h.latestRun())!;
    expect(run.status).toBe('failed');
    expect(run.statusReason).toMatch(/^all 4 FOVs failed, e\.g\. FOV \d: recipe raised ValueError: simulated failure/);
    expect(h.transcript()).toMatch(/Run \S+ failed: all 4 FOVs failed/);
    await removeDir(home);
  });
});

describe('bad input never launches anything', () => {
  // [what is wrong, the command (given the home directory), the answer expected in the channel]
  const cases: Array<[string, (home: string) => Promise<string>, RegExp]> = [
    ['a missing experiment', async () => `run ${path.join(shared.data, 'nope.json')}`, /Could not read the experiment.json at .*nope\.json: no such file/],
    ['FOVs the experiment does not have', async () => `run ${shared.experiment} fovs=2-9`, /fovs=2-9 names FOVs the experiment does not have \(4-9\); it has 0-3/],
    [
      'a recipe Python cannot parse (naming the line)',
      async (home) => `run ${shared.experiment} recipe=${await recipeFile(home, 'typo.py', 'import numpy\n\ndef process_fov(fov_index, experiment_url)\n    return []\n')}`,
      /cannot run: Python reports a syntax error: .* at line 3\. Nothing was launched/,
    ],
    ['a recipe with no process_fov', async (home) => `run ${shared.experiment} recipe=${await recipeFile(home, 'bad.py', 'def main():\n    pass\n')}`, /defines no process_fov function \(process_fov\(fov_index: int, experiment_url: str\) or process_fov\(fov: FieldOfView, codebook: Codebook\)\)/],
  ];

  it.each(cases)('answers %s in the channel and writes no run', async (_what, command, answer) => {
    const home = await tempDir('home');
    const h = localHarness(home);
    await h.command(await command(home));
    await h.system.settle();
    expect(await h.latestRun()).toBeUndefined();
    expect(h.transcript()).toMatch(answer);
    await removeDir(home);
  });
});

async function recipeFile(dir: string, name: string, source: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, source);
  return file;
}

describe('dry run', () => {
  it('plans without submitting, and keeps a relative path as the absolute one it meant', async () => {
    const home = await tempDir('home');
    const h = localHarness(home);
    const relative = path.relative(process.cwd(), shared.experiment);
    await h.command(`run ${relative} fovs=0-1 dry-run`);
    await h.system.settle();
    const run = (await h.latestRun())!;
    expect(run.status).toBe('planned');
    expect(run.request.experiment).toBe(shared.experiment);
    expect(run.submissions).toEqual([]);
    expect(run.plan).toMatchObject({ fovCount: 2, experimentFovCount: 4, fovs: '0-1' });
    expect(h.transcript()).toMatch(/Planned \(dry run, nothing submitted\)/);
    expect(h.transcript()).toContain('Without dry-run this run would start at once: the policy needs no approval for it.');
    await removeDir(home);
  });

  it('says what approval the real run would need, and asks nobody for it', async () => {
    const home = await tempDir('home');
    const policy = { approval: { approvers: ['approver'], fovThreshold: 1 }, queues: { default: 'local', allowed: ['local'] }, defaultRecipe: NUMPY_RECIPE };
    const h = localHarness(home, { policy });
    await h.command(`run ${shared.experiment} fovs=0-1 dry-run`);
    await h.system.settle();
    const run = (await h.latestRun())!;
    expect(run.status).toBe('planned');
    expect(run.approval.required).toBe(false);
    expect(h.transcript()).toMatch(/Without dry-run this run would need approval: 2 FOVs is above the 1-FOV threshold/);
    expect(h.transcript()).not.toMatch(/Approve/);
    await removeDir(home);
  });
});
