/**
 * The part of the lifecycle that follows Batch: what the jobs of the current round did, turned
 * into the run's status, progress, failures and the chat effects they call for. Progress comes
 * from the array parents' summaries and never steps backwards; Slack effects are rate-limited
 * per run so that they grow with a run's duration and failures, never with its FOV count.
 */
import { TERMINAL, type Progress, type RunManifest, type RunStatus, type Submission } from '../run/manifest.js';
import type { ResultsSummary } from '../run/results.js';
import type { Result } from '../result.js';
import type { JobDescription } from '../ports.js';
import { reasonWithoutFov } from '../messages/blocks.js';
import { escapeMrkdwn } from '../messages/message.js';
import { DELIVERIES, type DecideContext, type Decision, type Effect, type Fact, type MergeOutcome } from './types.js';
import { unitFovCount } from '../run/plan.js';
import { recordedCompute } from '../run/cost.js';

type BatchFact = Extract<Fact, { type: 'batch' }>;

/** A results delivery claimed this long ago and never confirmed died with its invocation. */
const DELIVERY_STALE_MS = 20 * 60_000;

/** Runs whose jobs no longer matter to anyone. */
const QUIET: ReadonlySet<RunStatus> = new Set(['cancelled', 'rejected', 'expired', 'planned']);

const deliveryStale = (m: RunManifest, now: number) => m.notify.deliveringSince !== undefined && now - m.notify.deliveringSince > DELIVERY_STALE_MS;
const doneOf = (p: Progress) => p.succeeded + p.failed;

/** Whether Batch facts can still change anything for this run. */
export function following(m: RunManifest, now: number): Submission | undefined {
  const current = m.submissions.at(-1);
  // A round being submitted owns the run: late events of the previous round must not end it.
  if (!current || QUIET.has(m.status) || m.pendingSubmission) return undefined;
  if (TERMINAL.has(m.status) && m.notify.resultsPosted && !m.notify.picturePending && !deliveryStale(m, now)) return undefined;
  return current;
}

interface Round {
  current: Submission;
  progress: Progress;
  arraysDone: boolean;
  /** The merge whose end ends the round: the salvage merge once there is one. */
  finalMerge: MergeOutcome | undefined;
  salvageDue: boolean;
  salvageSeen: MergeOutcome | undefined;
}

function roundOf(m: RunManifest, current: Submission, f: BatchFact): Round {
  const merge = f.merges.find((x) => !x.salvage);
  const salvageSeen = f.merges.find((x) => x.salvage);
  const failedFovs = new Set([...m.failures, ...f.failures].filter((x) => x.round === current.round).map((x) => x.fov)).size;
  const progress = progressOf(current, f.arrays, m.progress, failedFovs);
  const anyFailed = progress.failed > 0 || f.failures.length > 0 || m.failures.some((x) => x.round === current.round);
  // Batch fails a job whose dependency failed: the merge is redone over the FOVs that succeeded.
  const salvageDue = !current.salvageMerge && !salvageSeen && merge?.status === 'FAILED' && anyFailed;
  const ended = current.salvageMerge || salvageSeen ? salvageSeen : salvageDue ? undefined : merge;
  // A merge that exited 0 without writing every result file has not succeeded.
  const finalMerge = ended?.incomplete?.length ? { ...ended, status: 'FAILED' as const } : ended;
  const arraysDone = f.arrays.length > 0 && f.arrays.every((d) => d.status === 'SUCCEEDED' || d.status === 'FAILED');
  return { current, progress, arraysDone, finalMerge, salvageDue, salvageSeen };
}

export function observeBatch(m: RunManifest, f: BatchFact, ctx: DecideContext): Decision {
  const current = following(m, ctx.now);
  if (!current) return { next: undefined, effects: [] };
  const r = roundOf(m, current, f);
  const read = r.finalMerge?.status === 'SUCCEEDED' ? f.summary : undefined;
  const next = structuredClone(m);
  const summary = applyObservations(next, m, f, r, read, ctx.now);
  const effects: Effect[] = r.salvageDue ? [{ type: 'submit-salvage', round: r.current.round }] : [];
  effects.push(...claimDeliveries(next, m, r, summary, ctx), ...claimStuckWarning(next, f, ctx.now));
  const changed = JSON.stringify(next) !== JSON.stringify(m);
  return { next: changed ? next : undefined, effects: changed || r.salvageDue ? effects : [] };
}

/** Status, progress, failures and results, from what Batch said; returns the summary as shown, when the round ended with one. */
function applyObservations(next: RunManifest, m: RunManifest, f: BatchFact, r: Round, summary: Result<ResultsSummary> | undefined, now: number): Shown | undefined {
  const sub = next.submissions.find((s) => s.round === r.current.round);
  // A salvage merge whose submitter died before recording it is known by its name.
  if (sub && !sub.salvageMerge && r.salvageSeen) sub.salvageMerge = { jobId: r.salvageSeen.jobId, jobName: r.salvageSeen.jobName };
  if (deliveryStale(next, now)) {
    // The last delivery was claimed and never confirmed (its invocation died): send again.
    next.notify.resultsPosted = false;
    next.notify.deliveringSince = undefined;
  }
  // Once per FOV and round, whether known before or named twice in this fact (an event delivered twice in one batch).
  const known = new Set(next.failures.map((x) => `${x.round}:${x.fov}`));
  for (const x of f.failures) {
    const key = `${x.round}:${x.fov}`;
    if (known.has(key)) continue;
    known.add(key);
    next.failures.push({ ...x, reported: false });
  }
  next.progress = nextProgress(m, r.progress, now);
  next.status = statusOf(m.status, r, summary !== undefined);
  if (r.finalMerge?.status === 'FAILED') next.statusReason = failedReason(next, r.current.round, r.finalMerge).reason;
  if (!summary) return undefined;
  const shown = shownSummary(next, r.current.round, summary);
  next.results = { ...resultsOf(shown.summary), ...(f.containers ? { containers: f.containers } : {}) };
  return shown;
}

/**
 * Two notifiers may read Batch at different moments: progress never steps backwards. The ETA
 * counts its rate from the round's first ended FOV (src/messages/blocks.ts).
 */
function nextProgress(m: RunManifest, observed: Progress, now: number): Progress {
  const keep = TERMINAL.has(m.status) || (m.progress.total === observed.total && doneOf(m.progress) > doneOf(observed));
  const progress = keep ? m.progress : observed;
  const firstEndedAt = m.progress.firstEndedAt ?? (doneOf(progress) > 0 ? new Date(now).toISOString() : undefined);
  return firstEndedAt && progress.firstEndedAt !== firstEndedAt ? { ...progress, firstEndedAt } : progress;
}

/** Why a run whose final merge failed has failed; no log link when the FOVs are the story. */
function failedReason(m: RunManifest, round: number, merge: MergeOutcome): { reason: string; logLink?: string | undefined } {
  if (merge.incomplete?.length) {
    const files = merge.incomplete.join(', ');
    return { reason: `the merge finished but ${files} ${merge.incomplete.length === 1 ? 'is' : 'are'} missing from the results (a full disk?); free space, then /starfish retry ${m.runId}`, logLink: merge.logLink };
  }
  const first = m.failures.find((x) => x.round === round);
  // When no FOV succeeded the merge had nothing to merge.
  if (m.progress.total > 0 && m.progress.succeeded === 0 && first) {
    return { reason: `all ${m.progress.total} FOVs failed, e.g. FOV ${first.fov}: ${reasonWithoutFov(first)}` };
  }
  return { reason: `the merge job failed: ${merge.reason}`, logLink: merge.logLink };
}

const MAX_GENES_SHOWN = 200;
const MAX_GENE_CHARS = 64;

/**
 * The summary as shown: which FOVs are missing is what Batch says (failures of the round), never
 * what the merge job wrote; spot counts come from the job's summary (validated), gene names
 * capped, at most the top genes. An unusable summary shows no spots and says why.
 */
function shownSummary(m: RunManifest, round: number, read: Result<ResultsSummary>): { summary: ResultsSummary; problem?: string } {
  const missing = [...new Set(m.failures.filter((x) => x.round === round).map((x) => x.fov))].sort((a, b) => a - b);
  const expected = m.plan.fovCount;
  const counts = read.ok ? read.value.counts_per_gene : {};
  const genes = Object.entries(counts)
    .sort((a, b) => b[1] - a[1])
    .slice(0, MAX_GENES_SHOWN)
    .map(([gene, count]): [string, number] => [shortGene(gene), count]);
  if (new Set(genes.map(([g]) => g)).size < genes.length) genes.forEach((g, i) => (g[0] = `${g[0].slice(0, MAX_GENE_CHARS - 6)}#${i + 1}`));
  const summary: ResultsSummary = {
    fovs_expected: expected,
    fovs_processed: Math.max(0, expected - missing.length),
    fovs_missing: missing,
    failures: {},
    spots_total: read.ok ? read.value.spots_total : 0,
    spots_per_fov: {},
    counts_per_gene: Object.fromEntries(genes),
    // The FOVs' measured time (validated, capped): shown and costed, never decided on.
    ...(read.ok && read.value.compute ? { compute: read.value.compute } : {}),
    // Which recipe made it (its sha256 and declared PARAMETERS, validated): shown, never decided on.
    ...(read.ok && read.value.recipe ? { recipe: read.value.recipe } : {}),
  };
  return read.ok ? { summary } : { summary, problem: read.reason };
}

/** A gene name at most MAX_GENE_CHARS long; its start and end are kept, as names differ at either. */
function shortGene(gene: string): string {
  if (gene.length <= MAX_GENE_CHARS) return gene;
  const tail = 16;
  return `${gene.slice(0, MAX_GENE_CHARS - tail - 1)}…${gene.slice(-tail)}`;
}

function resultsOf(summary: ResultsSummary): NonNullable<RunManifest['results']> {
  const compute = recordedCompute(summary);
  return {
    spotsTotal: summary.spots_total,
    fovsProcessed: summary.fovs_processed,
    fovsMissing: summary.fovs_missing,
    topGenes: Object.entries(summary.counts_per_gene).slice(0, 20),
    ...(compute ? { compute } : {}),
  };
}

/** Claims in `next` what must be sent now; returns the effects that send it. */
function claimDeliveries(next: RunManifest, m: RunManifest, r: Round, summary: Shown | undefined, ctx: DecideContext): Effect[] {
  const terminal = TERMINAL.has(next.status);
  const effects: Effect[] = [];
  const progress = claimProgress(next, m, terminal, ctx);
  if (progress) effects.push(progress);
  const digest = claimDigest(next, terminal, ctx);
  if (digest) effects.push(digest);
  const ending = terminal && !next.notify.resultsPosted ? endingOf(next, r, summary) : undefined;
  if (ending) {
    next.notify.resultsPosted = true;
    if (summary) next.notify.picturePending = true;
    effects.push(ending);
  }
  if (next.notify.picturePending) {
    next.notify.picturePending = false;
    effects.push({ type: 'picture' });
  }
  if (effects.some((e) => DELIVERIES.has(e.type))) next.notify.deliveringSince = ctx.now;
  return effects;
}

type Shown = ReturnType<typeof shownSummary>;

function endingOf(m: RunManifest, r: Round, summary: Shown | undefined): Effect | undefined {
  if (summary) return { type: 'results', summary: summary.summary, problem: summary.problem };
  if (m.status !== 'failed' || r.finalMerge?.status !== 'FAILED') return undefined;
  return { type: 'failed-run', ...failedReason(m, r.current.round, r.finalMerge) };
}

function claimProgress(next: RunManifest, m: RunManifest, terminal: boolean, ctx: DecideContext): Effect | undefined {
  const key = `${next.status}|${JSON.stringify(next.progress)}`;
  if (key === next.notify.lastProgressKey) return undefined;
  const last = next.notify.lastProgressAt;
  const due = terminal || next.status !== m.status || last === undefined || ctx.now - last >= ctx.settings.progressIntervalMs;
  if (!due) return undefined;
  const restore = { key: next.notify.lastProgressKey, at: last };
  next.notify.lastProgressKey = key;
  next.notify.lastProgressAt = ctx.now;
  return { type: 'update-root', restore };
}

function claimDigest(next: RunManifest, terminal: boolean, ctx: DecideContext): Effect | undefined {
  const unreported = next.failures.filter((x) => !x.reported);
  const last = next.notify.lastDigestAt;
  if (!unreported.length || !(terminal || last === undefined || ctx.now - last >= ctx.settings.digestIntervalMs)) return undefined;
  for (const x of next.failures) x.reported = true;
  next.notify.lastDigestAt = ctx.now;
  const round = unreported[0]!.round;
  return { type: 'digest', failures: unreported, roundFailed: next.failures.filter((x) => x.round === round).length, restoreAt: last };
}

function claimStuckWarning(next: RunManifest, f: BatchFact, now: number): Effect[] {
  if (!f.stuck || next.notify.stuckWarnedAt || !next.message || TERMINAL.has(next.status)) return [];
  next.notify.stuckWarnedAt = now;
  const why = f.stuck.reason ? ` (${escapeMrkdwn(f.stuck.reason)})` : '';
  return [
    {
      type: 'stuck-warning',
      text: `:hourglass: Run ${next.runId} has waited in RUNNABLE for ${f.stuck.minutes} min${why}. Likely causes: the compute environment has no capacity (max vCPUs reached, or no Spot capacity for its instance types), or the container image cannot be pulled (check the image URI and the execution role's ECR access). \`/starfish cancel ${next.runId}\` stops it.`,
    },
  ];
}

/**
 * Progress in FOVs from the array parents' summaries (which count children); a plain job counts
 * as an array of one. A packed child that failed may have failed on one of its FOVs only: the
 * FOVs known to have failed (`failedFovs`) are the failed ones, the rest of its chunk succeeded.
 */
function progressOf(current: Submission, descriptions: JobDescription[], previous: Progress, failedFovs: number): Progress {
  if (!descriptions.length) return previous;
  let total = 0;
  let ended = 0;
  let running = 0;
  let failedChildren = 0;
  let inFailedChildren = 0;
  for (const array of current.arrays) {
    const perChild = array.unit.perChild ?? 1;
    const fovs = unitFovCount(array.unit);
    const d = descriptions.find((x) => x.jobId === array.jobId);
    const s = d ? (d.statusSummary ?? { [d.status]: 1 }) : {};
    const [succeededC, failedC, runningC] = [s.SUCCEEDED ?? 0, s.FAILED ?? 0, (s.RUNNING ?? 0) + (s.STARTING ?? 0)];
    total += fovs;
    ended += Math.min(fovs, (succeededC + failedC) * perChild);
    running += Math.min(fovs, runningC * perChild);
    failedChildren += failedC;
    inFailedChildren += failedC * perChild;
  }
  const failed = Math.max(failedChildren, Math.min(failedFovs, inFailedChildren, ended));
  const runningFovs = Math.min(running, total - ended);
  return { total, succeeded: ended - failed, failed, running: runningFovs, waiting: Math.max(0, total - ended - runningFovs) };
}

/** Batch decides: the salvage merge runs only after FOVs failed, so its success is a partial one. */
function statusOf(current: RunStatus, r: Round, summaryRead: boolean): RunStatus {
  const merge = r.finalMerge?.status;
  if (merge === 'SUCCEEDED' && summaryRead) return r.finalMerge?.salvage ? 'partially-failed' : 'succeeded';
  if (merge === 'FAILED') return 'failed';
  if (TERMINAL.has(current)) return current;
  // Never backwards: a stale or partial read of the arrays does not undo "merging".
  if (r.arraysDone || current === 'merging') return 'merging';
  const p = r.progress;
  if (p.running || p.succeeded || p.failed) return 'running';
  return current === 'submitting' ? 'submitting' : 'running';
}

/** Gives back the claim of an effect that could not be performed, so that a later pass sends it. */
export function giveBack(m: RunManifest, effect: Effect): RunManifest {
  const notify = { ...m.notify, deliveringSince: undefined };
  switch (effect.type) {
    case 'update-root':
      if (effect.restore) Object.assign(notify, { lastProgressKey: effect.restore.key, lastProgressAt: effect.restore.at });
      break;
    case 'digest': {
      const claimed = new Set(effect.failures.map((x) => `${x.round}:${x.fov}`));
      const failures = m.failures.map((x) => (claimed.has(`${x.round}:${x.fov}`) ? { ...x, reported: false } : x));
      return { ...m, failures, notify: { ...notify, lastDigestAt: effect.restoreAt } };
    }
    case 'results':
    case 'failed-run':
      Object.assign(notify, { resultsPosted: false, picturePending: false });
      break;
    case 'picture':
      notify.picturePending = true;
      break;
    case 'stuck-warning':
      notify.stuckWarnedAt = undefined;
      break;
    default:
      break;
  }
  return { ...m, notify };
}
