/**
 * A recipe is arbitrary code, so whatever a job writes under outputs/ is untrusted. These flows
 * plant what a hostile (or broken) job could write and check that the control plane takes no
 * decision from it: the run's state, the FOVs reported missing and what `retry` reruns come from
 * Batch; what is shown from a job's files is size-capped and validated.
 */
import { describe, expect, it } from 'vitest';
import { batchEvents as ev, mergeWrote, summaryJson, type RecordingChat } from '../helpers/memory-adapters.js';
import { launchedRun } from '../notifier/harness.js';
import { runKeys } from '../../src/run/layout.js';

const FAILING = [3, 11];

/** A 20-FOV run where Batch says FOVs 3 and 11 failed; the salvage merge then succeeds. */
async function partlyFailedRun(summary: string | Buffer, png?: Buffer) {
  const run = await launchedRun(20);
  const array = run.batch.byName(/-fov$/);
  const merge = run.batch.byName(/-merge$/);
  run.batch.set(array, 'FAILED', { SUCCEEDED: 18, FAILED: 2 });
  run.batch.set(merge, 'FAILED', undefined, 'Dependent Job failed');
  await run.notifier.handleBatch([
    ...FAILING.map((i) => ev.child(array, i, 'FAILED', `process-fov: FOV ${i}: recipe raised ValueError`)),
    ev.parent(array, 'FAILED', { SUCCEEDED: 18, FAILED: 2 }),
    ev.job(merge, 'FAILED', 'Dependent Job failed'),
  ]);
  const salvage = run.batch.byName(/-merge-partial$/);
  await mergeWrote(run.store, run.runId, summary, png);
  run.batch.set(salvage, 'SUCCEEDED');
  const outcome = await run.notifier.handleBatch([ev.job(salvage, 'SUCCEEDED')]);
  return { run, outcome };
}

const replies = (run: { chat: RecordingChat }) => run.chat.of('reply').map((c) => c.message?.text ?? '');

describe('a hostile job cannot steer the control plane', () => {
  it('a summary claiming no FOV is missing does not make a partly failed run succeed', async () => {
    const { run } = await partlyFailedRun(summaryJson(20, []));
    const m = await run.manifest();
    expect(m.status).toBe('partially-failed');
    expect(m.results?.fovsMissing).toEqual(FAILING);
    expect(m.results?.fovsProcessed).toBe(18);
  });

  it('a summary claiming every FOV is missing does not make retry rerun (and pay for) all of them', async () => {
    const { run } = await partlyFailedRun(summaryJson(20, Array.from({ length: 20 }, (_, i) => i)));
    await run.launcher.handle({ type: 'RunRetryRequested', userId: 'U1', channel: 'C1', runId: run.runId });
    const m = await run.manifest();
    expect(m.submissions.at(-1)?.fovs).toBe('3,11');
    expect(run.batch.byName(/-r1-fov$/).size).toBe(2);
  });

  it('an oversized summary.json is not read whole; the run still ends, once, saying why nothing is shown', async () => {
    const huge = Buffer.alloc(17 * 2 ** 20, ' ');
    const { run, outcome } = await partlyFailedRun(huge);
    expect(outcome.failedEventIds).toEqual([]);
    expect((await run.manifest()).status).toBe('partially-failed');
    const texts = replies(run);
    expect(texts.filter((t) => t.includes('Results of run'))).toHaveLength(1);
    expect(texts.some((t) => /summary cannot be shown: results\/summary\.json is larger than 16 MiB/.test(t))).toBe(true);
  });

  it('an oversized spots.png is not read whole nor uploaded; the run ends once, saying where the picture is', async () => {
    const { run, outcome } = await partlyFailedRun(summaryJson(20, FAILING), Buffer.alloc(65 * 2 ** 20));
    expect(outcome.failedEventIds).toEqual([]);
    expect((await run.manifest()).status).toBe('partially-failed');
    expect(run.chat.of('upload')).toEqual([]);
    expect(replies(run).filter((t) => t.includes('Results of run'))).toHaveLength(1);
    expect(replies(run).some((t) => /spots\.png of run .* is larger than 64 MiB, so it is not shown here/.test(t))).toBe(true);
  });

  it("a summary claiming a billion FOVs measured does not make the recipe's time per FOV (and its next estimates) nearly free", async () => {
    const summary = { ...(JSON.parse(summaryJson(20, FAILING)) as object), compute: { fovs: 1_000_000_000, wall_seconds: 20, cpu_seconds: 20 } };
    const { run } = await partlyFailedRun(JSON.stringify(summary));
    expect((await run.manifest()).results?.compute).toEqual({ fovs: 20, wallSeconds: 20, cpuSeconds: 20 });
  });

  it('a summary of the wrong shape is reported, not trusted and not retried forever', async () => {
    const { run, outcome } = await partlyFailedRun(JSON.stringify({ spots_total: -5, counts_per_gene: { ACTB: 'many' } }));
    expect(outcome.failedEventIds).toEqual([]);
    const m = await run.manifest();
    expect(m.status).toBe('partially-failed');
    expect(m.results?.spotsTotal).toBe(0);
    expect(replies(run).some((t) => t.includes('does not have the shape merge-results writes'))).toBe(true);
  });

  it('gene names are capped and only the top genes kept, however many a summary lists', async () => {
    const genes = Object.fromEntries(Array.from({ length: 5_000 }, (_, i) => [`${'G'.repeat(500)}${i}`, 5_000 - i]));
    const { run } = await partlyFailedRun(summaryJson(20, FAILING, genes));
    const m = await run.manifest();
    expect(m.results?.topGenes).toHaveLength(20);
    for (const [gene] of m.results!.topGenes) expect(gene.length).toBeLessThanOrEqual(64);
  });

  it("a failure reason is one capped line: control characters and a 4 KB+ file are not passed on", async () => {
    const run = await launchedRun(4);
    const array = run.batch.byName(/-fov$/);
    await run.store.put(runKeys(run.runId).fovErrorReason(1), JSON.stringify({ fov: 1, reason: `bad\u001b[31m red\u0007\nline two ${'x'.repeat(900)}` }));
    await run.store.put(runKeys(run.runId).fovErrorReason(2), JSON.stringify({ fov: 2, reason: 'y'.repeat(10_000) }));
    run.batch.set(array, 'RUNNING', { FAILED: 2, RUNNING: 2 });
    await run.notifier.handleBatch([ev.child(array, 1, 'FAILED', 'Essential container in task exited'), ev.child(array, 2, 'FAILED', 'Essential container in task exited')]);
    const failures = (await run.manifest()).failures;
    const one = failures.find((f) => f.fov === 1)!.reason;
    // Terminal escapes and control characters removed, one line, cut with the shared clip.
    expect(one).toMatch(/^bad red line two x+ …\(more\)$/);
    expect(one.length).toBeLessThanOrEqual(500);
    // Too large to be a one-line reason: Batch's own reason is used instead.
    expect(failures.find((f) => f.fov === 2)!.reason).toMatch(/^Essential container in task exited/);
  });
});
