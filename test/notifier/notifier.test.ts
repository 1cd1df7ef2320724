import type { RunManifest } from '../../src/run/manifest.js';
import { describe, expect, it } from 'vitest';
import { batchEvents as ev, mergeWrote, summaryJson } from '../helpers/memory-adapters.js';
import { launchedRun } from './harness.js';
import type { BatchJobEvent } from '../../src/run/batch-event.js';

const FAILING = [3, 11];

/** A 20-FOV run where FOVs 3 and 11 fail; returns the events Batch would emit, in order. */
async function scenario() {
  const run = await launchedRun(20);
  const array = run.batch.byName(/-fov$/);
  const merge = run.batch.byName(/-merge$/);
  const events: BatchJobEvent[] = [
    ev.parent(array, 'PENDING', {}),
    ev.parent(array, 'RUNNING', { RUNNING: 10, PENDING: 10 }),
    ...Array.from({ length: 20 }, (_, i) => ev.child(array, i, 'RUNNING')),
    ...FAILING.map((i) => ev.child(array, i, 'FAILED', `process-fov: FOV ${i}: recipe raised ValueError: no spots in round 2`)),
    ...Array.from({ length: 20 }, (_, i) => i).filter((i) => !FAILING.includes(i)).map((i) => ev.child(array, i, 'SUCCEEDED')),
    ev.parent(array, 'FAILED', { SUCCEEDED: 18, FAILED: 2 }),
    ev.job(merge, 'FAILED', 'Dependent Job failed'),
  ];
  // Describe answers the truth at delivery time: the array has ended.
  run.batch.set(array, 'FAILED', { SUCCEEDED: 18, FAILED: 2 });
  run.batch.set(merge, 'FAILED', undefined, 'Dependent Job failed');
  return { run, events };
}

/** Finishes the salvage merge the notifier submitted and delivers its events. */
async function finishSalvage(run: Awaited<ReturnType<typeof scenario>>['run'], deliver: (events: BatchJobEvent[]) => Promise<void>) {
  const salvage = run.batch.byName(/-merge-partial$/);
  await mergeWrote(run.store, run.runId, summaryJson(20, FAILING));
  run.batch.set(salvage, 'SUCCEEDED');
  await deliver([ev.job(salvage, 'RUNNING'), ev.job(salvage, 'SUCCEEDED')]);
}

function shuffle<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

async function outcome(run: Awaited<ReturnType<typeof scenario>>['run']) {
  const m = await run.manifest();
  return {
    status: m.status,
    failures: m.failures.map((f) => [f.fov, f.reason]).sort(),
    results: m.results,
    finalRoot: run.chat.of('update').at(-1)?.message?.text.replace(run.runId, '<run>'),
    resultsPosts: run.chat.of('reply').filter((c) => c.message?.text.includes('Results of run')).length,
    uploads: run.chat.of('upload').length,
    digestFovs: run.chat
      .of('reply')
      .flatMap((c) => [...(c.message?.blocks.map((b) => JSON.stringify(b)).join('') ?? '').matchAll(/• FOV (\d+)/g)].map((x) => Number(x[1])))
      .sort((a, b) => a - b),
  };
}

describe('notifier', () => {
  it('turns a run with two failed FOVs into one digest, a salvage merge, and results posted once', async () => {
    const { run, events } = await scenario();
    const result = await run.notifier.handleBatch(events);
    expect(result.failedEventIds).toEqual([]);
    await finishSalvage(run, async (e) => void (await run.notifier.handleBatch(e)));
    const o = await outcome(run);
    expect(o.status).toBe('partially-failed');
    expect(o.failures).toEqual([
      [11, 'process-fov: FOV 11: recipe raised ValueError: no spots in round 2, exit code 1'],
      [3, 'process-fov: FOV 3: recipe raised ValueError: no spots in round 2, exit code 1'],
    ]);
    expect(o.digestFovs).toEqual([3, 11]);
    expect(run.chat.text('reply')).toContain('log-events/process-fov$252Fdefault$252F');
    expect(o.resultsPosts).toBe(1);
    expect(o.uploads).toBe(1);
    expect(o.finalRoot).toMatch(/Finished with failed FOVs — .* 18 succeeded · 2 failed of 20 FOVs/);
    expect(run.chat.text('reply')).toContain('missing from the results: 3,11');
  });

  it('gives the same messages and manifest when events are duplicated, shuffled and split into odd batches', async () => {
    const reference = await scenario();
    await reference.run.notifier.handleBatch(reference.events);
    await finishSalvage(reference.run, async (e) => void (await reference.run.notifier.handleBatch(e)));
    const expected = await outcome(reference.run);

    for (const seed of [1, 2, 3]) {
      const { run, events } = await scenario();
      const messy = shuffle([...events, ...events, ...events.slice(0, 10)], seed);
      for (let i = 0; i < messy.length; i += 7) await run.notifier.handleBatch(messy.slice(i, i + 7));
      await finishSalvage(run, async (e) => {
        await run.notifier.handleBatch([...e, ...e].reverse());
        await run.notifier.handleBatch(e);
      });
      const o = await outcome(run);
      expect(o).toEqual(expected);
      expect(run.batch.byName(/-merge-partial$/)).toBeDefined();
      expect([...run.batch.jobs.values()].filter((j) => /-merge-partial$/.test(j.jobName))).toHaveLength(1);
    }
  });

  it('loses nothing when Slack fails: the batch is redelivered and each message goes out once', async () => {
    const { run, events } = await scenario();
    run.chat.failNext = { reply: 1 };
    const first = await run.notifier.handleBatch(events);
    expect(first.failedEventIds.length).toBe(events.length);
    expect((await run.manifest()).failures.every((f) => !f.reported)).toBe(true);
    const second = await run.notifier.handleBatch(events.filter((e) => first.failedEventIds.includes(e.id)));
    expect(second.failedEventIds).toEqual([]);
    run.chat.failNext = { upload: 1 };
    const salvage = run.batch.byName(/-merge-partial$/);
    await mergeWrote(run.store, run.runId, summaryJson(20, FAILING));
    run.batch.set(salvage, 'SUCCEEDED');
    const done = [ev.job(salvage, 'SUCCEEDED')];
    expect((await run.notifier.handleBatch(done)).failedEventIds).toHaveLength(1);
    expect((await run.notifier.handleBatch(done)).failedEventIds).toEqual([]);
    const o = await outcome(run);
    expect(o.digestFovs).toEqual([3, 11]);
    expect(o.uploads).toBe(1);
    expect(o.status).toBe('partially-failed');
  });

  it('ignores events of jobs that are not ours, and malformed ones, without failing the batch', async () => {
    const { run } = await scenario();
    const foreign = ev.job({ jobId: 'x', jobName: 'nightly-backup' }, 'FAILED');
    const result = await run.notifier.handleBatch([foreign, { hello: 'world' }, null, ev.job({ jobId: 'y', jobName: 'starfish-999999-zzzz-merge' }, 'SUCCEEDED')]);
    expect(result).toMatchObject({ failedEventIds: [], ignored: 3, runs: 1 });
    expect(run.chat.of('reply')).toEqual([]);
  });

  it('sends at most one root update per interval, and always the final state', async () => {
    const run = await launchedRun(100);
    const array = run.batch.byName(/-fov$/);
    const updatesAfterLaunch = run.chat.of('update').length;
    for (let done = 10; done <= 50; done += 10) {
      run.batch.set(array, 'RUNNING', { SUCCEEDED: done, RUNNING: 100 - done });
      await run.notifier.handleBatch([ev.child(array, done, 'SUCCEEDED')]);
      run.advance(5_000);
    }
    expect(run.chat.of('update').length - updatesAfterLaunch).toBe(1);
    run.advance(60_000);
    await run.reconciler.run(); // flushes what was held back
    expect(run.chat.of('update').at(-1)!.message!.text).toMatch(/50 succeeded of 100 FOVs/);
  });
});

describe('a failure event delivered twice in one batch', () => {
  it('records the FOV once: the digest names it once and counts one failure', async () => {
    const run = await launchedRun(20);
    const array = run.batch.byName(/-fov$/);
    const failed = ev.child(array, 3, 'FAILED', 'process-fov: FOV 3: recipe raised ValueError');
    await run.notifier.handleBatch([failed, failed]);
    expect((await run.manifest()).failures.map((f) => f.fov)).toEqual([3]);
    expect((await outcome(run)).digestFovs).toEqual([3]);
  });
});

describe('reading what failed jobs wrote', () => {
  /** Counts reads of the FOVs' error reasons, and how many were in flight at once. */
  function countReads(run: Awaited<ReturnType<typeof launchedRun>>) {
    const seen = { reads: 0, inFlight: 0, most: 0 };
    const get = run.store.get.bind(run.store);
    run.store.get = async (key, options) => {
      if (!key.endsWith('.error.json')) return get(key, options);
      seen.reads++;
      seen.most = Math.max(seen.most, ++seen.inFlight);
      await new Promise((r) => setTimeout(r, 1));
      seen.inFlight--;
      return get(key, options);
    };
    return seen;
  }

  it('reads the reasons of 300 failed FOVs whose events were lost a few dozen at a time, not one by one nor all at once', async () => {
    const run = await launchedRun(400);
    const array = run.batch.byName(/-fov$/);
    const failing = Array.from({ length: 300 }, (_, i) => i);
    run.batch.failed.set(array.jobId, new Map(failing.map((i) => [i, `process-fov: FOV ${i}: recipe raised ValueError`])));
    run.batch.set(array, 'FAILED', { SUCCEEDED: 100, FAILED: 300 });
    const seen = countReads(run);
    await run.reconciler.run();
    expect((await run.manifest()).failures).toHaveLength(300);
    expect(seen.reads).toBe(300);
    expect(seen.most).toBeGreaterThan(1);
    expect(seen.most).toBeLessThanOrEqual(32);
  });

  it('does not read again for a failed child the manifest already has, or one named twice in a batch', async () => {
    const run = await launchedRun(20);
    const array = run.batch.byName(/-fov$/);
    const failed = FAILING.map((i) => ev.child(array, i, 'FAILED', `process-fov: FOV ${i}: recipe raised ValueError`));
    const seen = countReads(run);
    await run.notifier.handleBatch([...failed, ...failed]);
    expect(seen.reads).toBe(FAILING.length);
    await run.notifier.handleBatch(failed);
    expect(seen.reads).toBe(FAILING.length);
    expect((await run.manifest()).failures.map((f) => f.fov)).toEqual(FAILING);
  });
});

describe('reconciler', () => {
  it('finishes a run whose merge events were lost, and posts results once', async () => {
    const { run, events } = await scenario();
    const withoutMerge = events.filter((e) => !e.detail.jobName.endsWith('-merge'));
    await run.notifier.handleBatch(withoutMerge);
    expect((await run.manifest()).status).toBe('merging');

    await run.reconciler.run(); // sees the failed merge in DescribeJobs → salvage merge
    const salvage = run.batch.byName(/-merge-partial$/);
    await mergeWrote(run.store, run.runId, summaryJson(20, FAILING));
    run.batch.set(salvage, 'SUCCEEDED');
    const report = await run.reconciler.run();
    expect(report.recovered).toContain(run.runId);
    await run.reconciler.run();
    const o = await outcome(run);
    expect(o.status).toBe('partially-failed');
    expect(o.resultsPosts).toBe(1);
  });

  it('recovers failed FOVs whose events were all lost, with their reasons and log links', async () => {
    const { run, events } = await scenario();
    const array = run.batch.byName(/-fov$/);
    run.batch.failed.set(array.jobId, new Map(FAILING.map((i) => [i, `process-fov: FOV ${i}: recipe raised ValueError`])));
    // While the array still runs, the notifier cannot know of failures whose events were lost.
    run.batch.set(array, 'RUNNING', { SUCCEEDED: 16, RUNNING: 4 });
    await run.notifier.handleBatch(events.filter((e) => e.detail.status !== 'FAILED' && !e.detail.jobName.endsWith('-merge')));
    expect((await run.manifest()).failures).toEqual([]);

    run.batch.set(array, 'FAILED', { SUCCEEDED: 18, FAILED: 2 });
    await run.reconciler.run();
    const m = await run.manifest();
    expect(m.failures.map((f) => f.fov).sort((a, b) => a - b)).toEqual(FAILING);
    expect(m.failures.every((f) => f.logLink?.includes('log-events/process-fov$252Fdefault$252F'))).toBe(true);
    expect((await outcome(run)).digestFovs).toEqual(FAILING);
    await run.reconciler.run();
    expect((await outcome(run)).digestFovs).toEqual(FAILING);
  });

  it('asks Batch which FOVs failed when an ended array counts failures whose events were lost', async () => {
    const { run, events } = await scenario();
    const array = run.batch.byName(/-fov$/);
    run.batch.failed.set(array.jobId, new Map(FAILING.map((i) => [i, `process-fov: FOV ${i}: recipe raised ValueError`])));
    await run.notifier.handleBatch(events.filter((e) => !(e.detail.status === 'FAILED' && e.detail.arrayProperties?.index !== undefined)));
    expect((await run.manifest()).failures.map((f) => f.fov).sort((a, b) => a - b)).toEqual(FAILING);
    expect((await outcome(run)).digestFovs).toEqual(FAILING);
  });

  it('expires an approval nobody gave', async () => {
    const run = await launchedRun(3, {}, { policy: { approval: { fovThreshold: 1, approvers: ['PI'], expiresAfterMinutes: 60 } } });
    expect((await run.manifest()).status).toBe('awaiting-approval');
    run.advance(30 * 60_000);
    expect((await run.reconciler.run()).expired).toEqual([]);
    run.advance(31 * 60_000);
    expect((await run.reconciler.run()).expired).toEqual([run.runId]);
    const m = await run.manifest();
    expect(m).toMatchObject({ status: 'expired', approval: { decision: 'expired' } });
    expect(run.chat.of('update').at(-1)!.message!.text).toMatch(/Approval expired/);
    await run.launcher.handle({ type: 'RunApproved', userId: 'PI', channel: 'C1', runId: run.runId });
    expect(m.submissions).toEqual([]);
    expect((await run.manifest()).status).toBe('expired');
  });

  it('flags a run stuck in RUNNABLE, once', async () => {
    const run = await launchedRun(3);
    const array = run.batch.byName(/-fov$/);
    run.batch.set(array, 'RUNNABLE', { RUNNABLE: 3 });
    run.advance(45 * 60_000);
    const report = await run.reconciler.run();
    expect(report.stuck).toEqual([run.runId]);
    expect(run.chat.text('reply')).toMatch(/waited in RUNNABLE for 45 min.*no capacity.*image cannot be pulled/s);
    await run.reconciler.run();
    expect(run.chat.of('reply')).toHaveLength(1);
  });
});

describe('races and crashes (second review)', () => {
  it('a retry being submitted is not ended by late events or the reconciler', async () => {
    const { run, events } = await scenario();
    await run.notifier.handleBatch(events);
    await finishSalvage(run, async (e) => void (await run.notifier.handleBatch(e)));
    const { updateManifest } = await import('../../src/run/manifest-store.js');
    // The retry's launcher died after the decision: round 1 pending, nothing submitted.
    await updateManifest(run.store, run.runId, (m) => ({ ...m, status: 'submitting', pendingSubmission: { round: 1, fovs: '3,11' }, notify: { ...m.notify, resultsPosted: false } }));
    await run.store.createIfAbsent(`runs/${run.runId}/claims/submit-r1`, JSON.stringify({ at: run.now(), jobs: [] }));
    const posts = run.chat.calls.length;
    await run.notifier.handleBatch(events);
    await run.reconciler.run();
    expect((await run.manifest()).status).toBe('submitting');
    expect(run.chat.calls.length).toBe(posts);
    run.advance(11 * 60_000);
    expect((await run.reconciler.run()).resumed).toEqual([run.runId]);
    const m = await run.manifest();
    expect(m.status).toBe('running');
    expect(m.submissions.map((s) => s.round)).toEqual([0, 1]);
  });

  it('a salvage merge that fails to submit is submitted by the redelivered batch', async () => {
    const { run, events } = await scenario();
    const submitMerge = run.batch.submitMerge.bind(run.batch);
    let refusals = 1;
    run.batch.submitMerge = async (...args) => {
      if (refusals-- > 0) throw new Error('TooManyRequestsException');
      return submitMerge(...args);
    };
    const first = await run.notifier.handleBatch(events);
    expect(first.failedEventIds.length).toBeGreaterThan(0);
    expect(() => run.batch.byName(/-merge-partial$/)).toThrow();
    await run.notifier.handleBatch(events.filter((e) => first.failedEventIds.includes(e.id)));
    expect(run.batch.byName(/-merge-partial$/)).toBeDefined();
    expect((await run.manifest()).submissions[0]!.salvageMerge).toBeDefined();
  });

  it('a salvage merge submitted while the run was being cancelled is terminated', async () => {
    const { run, events } = await scenario();
    const submitMerge = run.batch.submitMerge.bind(run.batch);
    run.batch.submitMerge = async (...args) => {
      // The cancel lands between the notifier's read and its submission.
      await run.launcher.handle({ type: 'RunCancelled', userId: 'U1', channel: 'C1', runId: run.runId });
      return submitMerge(...args);
    };
    await run.notifier.handleBatch(events);
    const salvage = run.batch.byName(/-merge-partial$/);
    expect(run.batch.cancelled).toContain(salvage.jobId);
    expect((await run.manifest()).status).toBe('cancelled');
  });

  it('a resumed submission terminates what the dead submitter had already got into Batch', async () => {
    const run = await launchedRun(4);
    const { updateManifest } = await import('../../src/run/manifest-store.js');
    await updateManifest(run.store, run.runId, (m) => ({ ...m, status: 'submitting', submissions: [], pendingSubmission: { round: 0, fovs: '0-3' } }));
    await run.store.put(`runs/${run.runId}/claims/submit-r0`, JSON.stringify({ at: run.now(), jobs: ['orphan-array'] }));
    run.advance(11 * 60_000);
    await run.reconciler.run();
    expect(run.batch.cancelled).toEqual(['orphan-array']);
    expect((await run.manifest()).status).toBe('running');
  });

  it('progress never steps backwards when two notifiers read Batch at different moments', async () => {
    const run = await launchedRun(4);
    const array = run.batch.byName(/-fov$/);
    run.batch.set(array, 'RUNNING', { SUCCEEDED: 3, RUNNING: 1 });
    await run.notifier.handleBatch([ev.child(array, 0, 'SUCCEEDED')]);
    run.batch.set(array, 'RUNNING', { SUCCEEDED: 1, RUNNING: 3 }); // a stale read
    await run.notifier.handleBatch([ev.child(array, 1, 'SUCCEEDED')]);
    expect((await run.manifest()).progress).toMatchObject({ succeeded: 3 });
  });

  it('results claimed by an invocation that died are posted once the claim is stale', async () => {
    const { run, events } = await scenario();
    await run.notifier.handleBatch(events);
    const salvage = run.batch.byName(/-merge-partial$/);
    await mergeWrote(run.store, run.runId, summaryJson(20, FAILING));
    run.batch.set(salvage, 'SUCCEEDED');
    const { updateManifest } = await import('../../src/run/manifest-store.js');
    // What a crash right after the claim leaves behind: claimed, never confirmed.
    await updateManifest(run.store, run.runId, (m) => ({ ...m, status: 'partially-failed', notify: { ...m.notify, resultsPosted: true, deliveringSince: run.now() } }));
    await run.notifier.handleBatch([ev.job(salvage, 'SUCCEEDED')]);
    expect((await outcome(run)).resultsPosts).toBe(0);
    run.advance(21 * 60_000);
    await run.notifier.handleBatch([ev.job(salvage, 'SUCCEEDED')]);
    expect((await outcome(run)).resultsPosts).toBe(1);
    expect((await run.manifest()).notify.deliveringSince).toBeUndefined();
  });
});

describe('the picture a run posts', () => {
  /** A run of `fovs` FOVs that all succeed, whose merge wrote everything but spots.png. */
  async function finishedWithoutPanels(fovs: number, recipe?: (m: RunManifest) => unknown) {
    const { runKeys } = await import('../../src/run/layout.js');
    const run = await launchedRun(fovs);
    const array = run.batch.byName(/-fov$/);
    const merge = run.batch.byName(/-merge$/);
    const keys = runKeys(run.runId);
    const summary = JSON.parse(summaryJson(fovs, [])) as Record<string, unknown>;
    await mergeWrote(run.store, run.runId, JSON.stringify(recipe ? { ...summary, recipe: recipe(await run.manifest()) } : summary));
    await run.store.delete(keys.spotsPng);
    await run.store.put(keys.optionalResults['overview.png'], Buffer.from('overview'));
    run.batch.set(array, 'SUCCEEDED', { SUCCEEDED: fovs });
    run.batch.set(merge, 'SUCCEEDED');
    await run.notifier.handleBatch([ev.parent(array, 'SUCCEEDED', { SUCCEEDED: fovs }), ev.job(merge, 'SUCCEEDED')]);
    return run;
  }

  it('a run of more than 16 FOVs has no spots.png (merge-results draws the overview alone) and succeeds with the overview as its picture', async () => {
    const run = await finishedWithoutPanels(20);
    expect((await run.manifest()).status).toBe('succeeded');
    expect(run.chat.of('reply').filter((c) => c.message?.text.includes('Results of run'))).toHaveLength(1);
    expect(run.chat.of('upload').map((c) => c.filename)).toEqual([`${run.runId}-overview.png`]);
    // No link to a file the merge did not write.
    const results = run.chat.of('reply').find((c) => c.message?.text.includes('Results of run'))!;
    expect(JSON.stringify(results.message!.blocks)).not.toContain('spots.png');
  });

  it("the results name the recipe that made them: its sha256 and its declared parameters, escaped", async () => {
    const recipe = (sha256: string) => ({ url: 's3://lab/recipes/iss.py', sha256, parameters: { min_sigma: 1.5, '<!channel>': 'x', decoder: 'PerRoundMaxChannel' } });
    const run = await finishedWithoutPanels(20, (m) => recipe(m.inputs.recipeSha256!));
    const results = JSON.stringify(run.chat.of('reply').find((c) => c.message?.text.includes('Results of run'))!.message!.blocks);
    const launched = (await run.manifest()).inputs.recipeSha256!;
    expect(results).toContain(`*Recipe* sha256 \`${launched.slice(0, 12)}…\``);
    expect(results).toContain('min_sigma = 1.5');
    expect(results).toContain('decoder = PerRoundMaxChannel');
    expect(results).not.toContain('<!channel>');
  });

  it('a run of 16 FOVs or fewer is not complete without its per-FOV panels', async () => {
    const run = await finishedWithoutPanels(16);
    const m = await run.manifest();
    expect(m.status).toBe('failed');
    expect(m.statusReason).toMatch(/the merge finished but spots\.png is missing from the results/);
    expect(run.chat.of('reply').some((c) => c.message?.text.includes('Results of run'))).toBe(false);
  });
});
