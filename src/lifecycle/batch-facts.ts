/**
 * What Batch says about a run's current round, gathered as one fact: from state-change events
 * (the notifier) or from DescribeJobs when events were lost (the reconciler). Both read the FOV
 * failure reasons and the results summary the same way, from the run's outputs.
 */
import pLimit from 'p-limit';
import type { CoreDeps } from '../core.js';
import { failureKindOf, failureReasonOf, logStreamOf, parseJobName, type BatchJobEvent } from '../run/batch-event.js';
import { failureKind } from '../run/failure-kind.js';
import { runKeys } from '../run/layout.js';
import { TERMINAL, type RunManifest, type Submission } from '../run/manifest.js';
import { fovsOfChild } from '../run/plan.js';
import { PANEL_FOVS, resultsSummarySchema, type ResultsSummary } from '../run/results.js';
import type { ContainerTimes, JobDescription, Store } from '../ports.js';
import type { Fact, MergeOutcome, ObservedFailure } from './types.js';
import { ok, refuse, type Result } from '../result.js';
import { untrustedPlain } from '../messages/message.js';

type Deps = Pick<CoreDeps, 'executor' | 'clock' | 'settings'> & { store: Pick<Store, 'get'> };

/** Job-written objects (error reasons, spot tables) read at once for one fact: sockets of a Lambda, open files of a process. */
const READ_CONCURRENCY = 32;

/** The same deps, their reads a few dozen at a time: a fact may read one object per failed FOV, thousands of them. */
function pacedReads(deps: Deps): Deps {
  const reading = pLimit(READ_CONCURRENCY);
  const { store } = deps;
  return { ...deps, store: { get: (key, options) => reading(() => store.get(key, options)) } };
}

type BatchFact = Extract<Fact, { type: 'batch' }>;

const ended = (status: string): status is 'SUCCEEDED' | 'FAILED' => status === 'SUCCEEDED' || status === 'FAILED';

/** From a batch of state-change events of one run. */
export async function factFromEvents(given: Deps, m: RunManifest, current: Submission, events: BatchJobEvent[]): Promise<BatchFact> {
  const deps = pacedReads(given);
  // A child already recorded as failed, or named again in this batch (events arrive at least once), is not read again.
  const seen = new Set(m.failures.map((f) => f.jobId));
  const fresh = events.filter((e) => e.detail.status === 'FAILED' && !seen.has(e.detail.jobId) && seen.add(e.detail.jobId));
  const failures = (await Promise.all(fresh.map((e) => withReasons(deps, m.runId, childFailures(deps, m, e))))).flat();
  const merges = events.flatMap((e) => mergeOutcome(deps, current, e.detail, logStreamOf(e), failureReasonOf(e)));
  const arrays = TERMINAL.has(m.status) ? [] : await deps.executor.describe(current.arrays.map((a) => a.jobId));
  // An ended array that counts more failures than are known lost some child events: ask Batch
  // which, so that every failed FOV is reported even when the run ends before a reconcile.
  const known = [...m.failures, ...failures.map((f) => ({ ...f, reported: false }))];
  const lost = await lostFailures(deps, { ...m, failures: known }, current, arrays);
  return withSummary(deps, m, current, { type: 'batch', round: current.round, arrays, failures: [...failures, ...lost], merges });
}

/** From DescribeJobs of every job of the round: the reconciler's view when events were lost. */
export async function factFromBatch(given: Deps, m: RunManifest, current: Submission): Promise<BatchFact> {
  const deps = pacedReads(given);
  const ids = [...current.arrays.map((a) => a.jobId), ...[current.merge, current.salvageMerge].flatMap((j) => (j ? [j.jobId] : []))];
  const described = await deps.executor.describe(ids);
  const arrays = described.filter((d) => current.arrays.some((a) => a.jobId === d.jobId));
  const merges = described.flatMap((d) => mergeOutcome(deps, current, d, undefined, d.statusReason ?? 'no reason given by AWS Batch'));
  const failures = await lostFailures(deps, m, current, arrays);
  const now = deps.clock.now();
  const stuck = described.find((d) => d.status === 'RUNNABLE' && d.since !== undefined && now - d.since > deps.settings.stuckAfterMs);
  const fact: BatchFact = { type: 'batch', round: current.round, arrays: TERMINAL.has(m.status) ? [] : arrays, failures, merges };
  if (stuck) fact.stuck = { minutes: Math.round((now - stuck.since!) / 60_000), ...(stuck.statusReason ? { reason: stuck.statusReason } : {}) };
  return withSummary(deps, m, current, fact);
}

/** A failed array child (or plain FOV job) of a known round, mapped to the FOVs of it that failed. */
async function childFailures(deps: Deps, m: RunManifest, e: BatchJobEvent): Promise<ObservedFailure[]> {
  const d = e.detail;
  const id = d.status === 'FAILED' ? parseJobName(d.jobName) : undefined;
  const isParent = d.arrayProperties?.statusSummary !== undefined || (d.arrayProperties?.size ?? 0) > 1;
  if (!id || id.role !== 'fov' || isParent) return [];
  const fovs = await failedOfChunk(deps, m.runId, fovsOfEvent(m, id, d.jobName, d.arrayProperties?.index ?? 0));
  const stream = logStreamOf(e);
  return fovs.map((fov) => ({ fov, round: id.round, jobId: d.jobId, reason: failureReasonOf(e), kind: failureKindOf(e), ...(stream ? { logLink: deps.executor.logLink(stream) } : {}) }));
}

/** The FOVs a child processed: by the array's recorded name, else by its part of the round. */
function fovsOfEvent(m: RunManifest, id: { round: number; part: number }, name: string, index: number): number[] {
  const submission = m.submissions.find((s) => s.round === id.round);
  const array = submission?.arrays.find((a) => a.jobName === name) ?? submission?.arrays[id.part];
  return array ? fovsOfChild(array.unit, index) : [];
}

/**
 * The FOVs of a failed child that failed. A child of one FOV failed on it; a packed child goes on
 * after a failing FOV, so its FOVs without a spot table are the failed ones. The table is what
 * the job wrote: it can only hide a failure of its own run's FOV, which a fake table could anyway.
 */
async function failedOfChunk(deps: Deps, runId: string, fovs: number[]): Promise<number[]> {
  if (fovs.length <= 1) return fovs;
  const keys = runKeys(runId);
  const tables = await Promise.all(fovs.map((fov) => deps.store.get(keys.fovTable(fov), { maxBytes: 1 }).catch(() => undefined)));
  const failed = fovs.filter((_, i) => !tables[i]);
  // A child that failed with every table written (it died after the last one): all of it is rerun.
  return failed.length ? failed : fovs;
}

/** The end of a merge of the current round, known by its name even before its id is recorded. */
function mergeOutcome(deps: Deps, current: Submission, d: { jobName: string; jobId: string; status: string }, stream: string | undefined, reason: string): MergeOutcome[] {
  const id = parseJobName(d.jobName);
  if (!ended(d.status) || !id || id.role !== 'merge' || id.round !== current.round) return [];
  return [{ salvage: id.salvage, status: d.status, reason, jobId: d.jobId, jobName: d.jobName, ...(stream ? { logLink: deps.executor.logLink(stream) } : {}) }];
}

/** Failed FOVs Batch knows about but the manifest does not (their events were lost). */
async function lostFailures(deps: Deps, m: RunManifest, current: Submission, arrays: JobDescription[]): Promise<ObservedFailure[]> {
  const out: ObservedFailure[] = [];
  for (const array of current.arrays) {
    const d = arrays.find((x) => x.jobId === array.jobId);
    if (!d || !ended(d.status)) continue;
    const failed = d.statusSummary ? (d.statusSummary.FAILED ?? 0) : d.status === 'FAILED' ? 1 : 0;
    // Failed children, not FOVs: a packed child that failed names several.
    const known = new Set(m.failures.filter((f) => f.round === current.round && (f.jobId === array.jobId || f.jobId.startsWith(`${array.jobId}:`))).map((f) => f.jobId)).size;
    if (failed <= known) continue;
    out.push(...(await failuresOfArray(deps, m, current.round, array, d)));
  }
  return out;
}

/** The failed FOVs of one ended array that the manifest does not know, from Batch's failed children. */
async function failuresOfArray(deps: Deps, m: RunManifest, round: number, array: Submission['arrays'][number], d: JobDescription): Promise<ObservedFailure[]> {
  const plain = array.unit.size === 1;
  const children = plain ? [{ index: 0, reason: d.statusReason ?? 'failed', kind: failureKind({ statusReason: d.statusReason }), logStreamName: undefined }] : await deps.executor.failedChildren(array.jobId);
  const known = new Set(m.failures.filter((f) => f.round === round).map((f) => f.jobId));
  const lost = children.map((c) => ({ ...c, jobId: plain ? array.jobId : `${array.jobId}:${c.index}` })).filter((c) => !known.has(c.jobId));
  const perChild = lost.map(async (c) => {
    const fovs = await failedOfChunk(deps, m.runId, fovsOfChild(array.unit, c.index));
    const logLink = c.logStreamName ? { logLink: deps.executor.logLink(c.logStreamName) } : {};
    return withReasons(deps, m.runId, fovs.map((fov): ObservedFailure => ({ fov, round, jobId: c.jobId, reason: c.reason, kind: c.kind, ...logLink })));
  });
  return (await Promise.all(perChild)).flat();
}

/** Each failure with the reason its job wrote next to the output, where there is one. */
async function withReasons(deps: Deps, runId: string, failures: ObservedFailure[] | Promise<ObservedFailure[]>): Promise<ObservedFailure[]> {
  return Promise.all((await failures).map(async (f) => ({ ...f, reason: (await reasonFromOutput(deps, runId, f.fov)) ?? f.reason })));
}

/** A job writes these objects: read no more than this of them. */
const MAX_REASON_BYTES = 4096;
const MAX_SUMMARY_BYTES = 16 * 2 ** 20;
const MAX_REASON_CHARS = 500;

/**
 * process-fov writes its one-line reason next to the output; Batch only knows the exit code. The
 * job wrote it, so it is only ever shown (capped here, escaped where it is posted), never decided on.
 */
async function reasonFromOutput(deps: Deps, runId: string, fov: number): Promise<string | undefined> {
  const object = await deps.store.get(runKeys(runId).fovErrorReason(fov), { maxBytes: MAX_REASON_BYTES }).catch(() => undefined);
  if (!object || object.tooLarge) return undefined;
  try {
    const reason = (JSON.parse(object.body.toString('utf8')) as { reason?: unknown }).reason;
    return typeof reason === 'string' && reason.trim() ? untrustedPlain(reason, MAX_REASON_CHARS) : undefined;
  } catch {
    return undefined;
  }
}

/** Adds results/summary.json when the merge that ends the round succeeded, and which result files are missing. */
async function withSummary(deps: Deps, m: RunManifest, current: Submission, fact: BatchFact): Promise<BatchFact> {
  const salvage = fact.merges.find((x) => x.salvage);
  const final = current.salvageMerge || salvage ? salvage : fact.merges.find((x) => !x.salvage);
  if (final?.status !== 'SUCCEEDED') return fact;
  const missing = await missingResults(deps, m);
  const merges = missing.length ? fact.merges.map((x) => (x === final ? { ...x, incomplete: missing } : x)) : fact.merges;
  // Read once a round: a redelivered merge event finds them with the round's results already
  // delivered (a retry sets resultsPosted back); ListJobs of every array is not cheap.
  const known = m.notify.resultsPosted ? m.results?.containers : undefined;
  const containers = known ?? (await containerTimesOf(deps, m));
  return { ...fact, merges, summary: await readSummary(deps, m.runId), ...(containers ? { containers } : {}) };
}

/**
 * How long every FOV container of the run ran, every round, from the executor's record of each
 * start and stop: what compute is billed on. Unknown (not a failure) when the executor cannot say.
 */
async function containerTimesOf(deps: Deps, m: RunManifest): Promise<ContainerTimes | undefined> {
  try {
    const times = await Promise.all(m.submissions.flatMap((s) => s.arrays).map((a) => deps.executor.containerTimes(a.jobId)));
    return times.reduce((all, t) => ({ containers: all.containers + t.containers, seconds: all.seconds + t.seconds }), { containers: 0, seconds: 0 });
  } catch {
    return undefined;
  }
}

/**
 * A run succeeds only with every result file there: an exit code of 0 is not enough. spots.png is
 * one of them for a run small enough to get it; the run's own plan says which, not the job.
 */
async function missingResults(deps: Deps, m: RunManifest): Promise<string[]> {
  const keys = runKeys(m.runId);
  const files: Array<[string, string]> = [
    ['spots.csv', keys.spotsCsv],
    ['summary.json', keys.summaryJson],
    ...(m.plan.fovCount <= PANEL_FOVS ? [['spots.png', keys.spotsPng] as [string, string]] : []),
  ];
  const present = await Promise.all(files.map(async ([, key]) => (await deps.store.get(key, { maxBytes: 1 })) !== undefined));
  return files.filter((_, i) => !present[i]).map(([name]) => name);
}

/**
 * The merge job wrote summary.json: it is read with a size cap and validated, and a summary that
 * fails either is reported as such; the run's state comes from Batch either way.
 */
async function readSummary(deps: Deps, runId: string): Promise<Result<ResultsSummary>> {
  const object = await deps.store.get(runKeys(runId).summaryJson, { maxBytes: MAX_SUMMARY_BYTES });
  if (!object) return refuse('results/summary.json is missing');
  if (object.tooLarge) return refuse(`results/summary.json is larger than ${MAX_SUMMARY_BYTES / 2 ** 20} MiB`);
  let json: unknown;
  try {
    json = JSON.parse(object.body.toString('utf8'));
  } catch {
    return refuse('results/summary.json is not valid JSON');
  }
  const parsed = resultsSummarySchema.safeParse(json);
  if (parsed.success) return ok(parsed.data);
  const issue = parsed.error.issues[0];
  return refuse(`results/summary.json does not have the shape merge-results writes (${untrustedPlain(`${issue?.path.join('.')}: ${issue?.message}`, 200)})`);
}
