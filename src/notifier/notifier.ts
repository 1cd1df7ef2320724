/**
 * The notifier: Batch job state changes in, one live message per run out. Events are grouped
 * by run; progress comes from the array parents' status summaries (events repeat and arrive out
 * of order); Slack calls are coalesced so that they grow with a run's duration and failures,
 * never with its FOV count. Every step is idempotent: a redelivered batch changes nothing.
 */
import type { CoreDeps } from '../core.js';
import { batchJobEventSchema, failureReasonOf, jobName, logStreamOf, parseJobName, type BatchJobEvent } from '../run/batch-event.js';
import { loadManifest, updateManifest } from '../run/manifest-store.js';
import { TERMINAL, runPrefix, type FovFailure, type Progress, type RunManifest, type RunStatus, type Submission } from '../run/manifest.js';
import { fovOfChild } from '../run/plan.js';
import { resultKeys, resultsSummarySchema, type ResultsSummary } from '../run/results.js';
import { failedRunMessage, failureDigest, reasonWithoutFov, resultsMessage, rootMessage } from '../messages/blocks.js';
import type { JobDescription } from '../ports.js';

export interface BatchOutcome {
  /** Events that could not be processed and must be redelivered (SQS batchItemFailures). */
  failedEventIds: string[];
  runs: number;
  ignored: number;
}

/** A results delivery claimed this long ago and never confirmed died with its invocation. */
export const DELIVERY_STALE_MS = 20 * 60_000;

const deliveryStale = (m: RunManifest, now: number) => m.notify.deliveringSince !== undefined && now - m.notify.deliveringSince > DELIVERY_STALE_MS;

/** Runs whose jobs no longer matter to anyone. */
const QUIET: ReadonlySet<RunStatus> = new Set(['cancelled', 'rejected', 'expired', 'planned']);

const fovFile = (runId: string, fov: number, ext: string) => `${runPrefix(runId)}/fovs/fov_${String(fov).padStart(3, '0')}.${ext}`;

export class Notifier {
  constructor(private readonly deps: CoreDeps) {}

  /** One batch of raw events (an SQS batch on AWS, a queue flush locally). */
  async handleBatch(raw: unknown[]): Promise<BatchOutcome> {
    const byRun = new Map<string, BatchJobEvent[]>();
    let ignored = 0;
    for (const item of raw) {
      const parsed = batchJobEventSchema.safeParse(item);
      const identity = parsed.success ? parseJobName(parsed.data.detail.jobName) : undefined;
      if (!parsed.success || !identity) {
        ignored++;
        continue;
      }
      byRun.set(identity.runId, [...(byRun.get(identity.runId) ?? []), parsed.data]);
    }
    const failedEventIds: string[] = [];
    await Promise.all(
      [...byRun.entries()].map(async ([runId, events]) => {
        try {
          await this.refresh(runId, events);
        } catch (error) {
          this.deps.log.error({ runId, err: (error as Error).message, events: events.length }, 'notifier could not process run events; they will be redelivered');
          failedEventIds.push(...events.map((e) => e.id));
        }
      }),
    );
    return { failedEventIds, runs: byRun.size, ignored };
  }

  /** Brings a run's manifest and messages up to date: with new events, or none (reconciler). */
  async refresh(runId: string, events: BatchJobEvent[] = []): Promise<void> {
    const loaded = await loadManifest(this.deps.store, runId);
    if (!loaded) {
      this.deps.log.warn({ runId }, 'events for a run with no manifest; ignored');
      return;
    }
    const m = loaded.manifest;
    const current = m.submissions.at(-1);
    // A round being submitted owns the run: late events of the previous round must not end it.
    if (!current || QUIET.has(m.status) || m.pendingSubmission) return;
    if (TERMINAL.has(m.status) && m.notify.resultsPosted && !m.notify.picturePending && !deliveryStale(m, this.deps.clock.now())) return;

    const failures = await this.failuresFrom(m, events);
    const merges = mergeOutcomes(current, events, (stream) => this.deps.executor.logLink(stream));
    const descriptions = TERMINAL.has(m.status) ? [] : await this.deps.executor.describe(current.arrays.map((a) => a.jobId));
    const progress = progressOf(current, descriptions, m.progress);
    const arraysDone = descriptions.length > 0 && descriptions.every((d) => d.status === 'SUCCEEDED' || d.status === 'FAILED');

    let summary: ResultsSummary | undefined;
    const finalMerge = current.salvageMerge || merges.salvage ? merges.salvage : merges.merge;
    if (finalMerge?.status === 'SUCCEEDED') summary = await this.readSummary(runId);

    // Batch fails a job whose dependency failed: finish the merge over the FOVs that succeeded.
    if (!current.salvageMerge && merges.merge?.status === 'FAILED' && (progress.failed > 0 || failures.length > 0 || m.failures.some((f) => f.round === current.round))) {
      await this.submitSalvageMerge(m, current);
      return this.refresh(runId, events.filter((e) => e.detail.jobId !== current.merge?.jobId));
    }

    const now = this.deps.clock.now();
    const { settings } = this.deps;
    const claims = { progress: false, digest: [] as FovFailure[], results: false, picture: false };
    let previous: RunManifest['notify'] = m.notify;
    const { after, changed } = await updateManifest(this.deps.store, runId, (cur) => {
      if (QUIET.has(cur.status) || cur.pendingSubmission) return undefined;
      previous = cur.notify;
      const next = structuredClone(cur);
      // A salvage merge whose submitter died before recording it is known by its events.
      const sub = next.submissions.find((s) => s.round === current.round);
      if (sub && !sub.salvageMerge && merges.salvage) sub.salvageMerge = { jobId: merges.salvage.jobId, jobName: merges.salvage.jobName };
      if (deliveryStale(next, now)) {
        // The last delivery was claimed and never confirmed (its invocation died): send again.
        next.notify.resultsPosted = false;
        next.notify.deliveringSince = undefined;
      }
      const known = new Set(next.failures.map((f) => `${f.round}:${f.fov}`));
      for (const f of failures) if (!known.has(`${f.round}:${f.fov}`)) next.failures.push(f);
      // Two notifiers may read Batch at different moments: never step progress backwards.
      const done = (p: Progress) => p.succeeded + p.failed;
      next.progress = TERMINAL.has(cur.status) || (cur.progress.total === progress.total && done(cur.progress) > done(progress)) ? cur.progress : progress;
      next.status = statusOf(cur.status, progress, arraysDone, finalMerge?.status, summary);
      if (finalMerge?.status === 'FAILED') {
        // When no FOV succeeded the merge had nothing to merge: the FOVs are the story.
        const roundFailures = next.failures.filter((f) => f.round === current.round);
        const first = roundFailures[0];
        next.statusReason =
          next.progress.total > 0 && next.progress.succeeded === 0 && first
            ? `all ${next.progress.total} FOVs failed, e.g. FOV ${first.fov}: ${reasonWithoutFov(first)}`
            : `the merge job failed: ${finalMerge.reason}`;
      }
      if (summary) {
        next.results = {
          spotsTotal: summary.spots_total,
          fovsProcessed: summary.fovs_processed,
          fovsMissing: summary.fovs_missing,
          topGenes: Object.entries(summary.counts_per_gene).sort((a, b) => b[1] - a[1]).slice(0, 20),
        };
      }
      // Claims: what this delivery will send, written before sending so that concurrent
      // notifiers do not send it twice; given back below if sending fails.
      const terminal = TERMINAL.has(next.status);
      const unreported = next.failures.filter((f) => !f.reported);
      const digestDue = unreported.length > 0 && (terminal || next.notify.lastDigestAt === undefined || now - next.notify.lastDigestAt >= settings.digestIntervalMs);
      claims.digest = digestDue ? unreported : [];
      if (digestDue) {
        for (const f of next.failures) f.reported = true;
        next.notify.lastDigestAt = now;
      }
      claims.results = terminal && !next.notify.resultsPosted && (summary !== undefined || (next.status === 'failed' && finalMerge?.status === 'FAILED'));
      if (claims.results) {
        next.notify.resultsPosted = true;
        if (summary) next.notify.picturePending = true;
      }
      claims.picture = next.notify.picturePending === true;
      if (claims.picture) next.notify.picturePending = false;
      if (claims.results || claims.picture) next.notify.deliveringSince = now;
      const key = `${next.status}|${JSON.stringify(next.progress)}`;
      claims.progress = key !== next.notify.lastProgressKey && (terminal || next.status !== cur.status || next.notify.lastProgressAt === undefined || now - next.notify.lastProgressAt >= settings.progressIntervalMs);
      if (claims.progress) {
        next.notify.lastProgressKey = key;
        next.notify.lastProgressAt = now;
      }
      return JSON.stringify(next) !== JSON.stringify(cur) ? next : undefined;
    });
    if (!changed) return;
    const sent = { progress: false, digest: false, results: false, picture: false };
    try {
      await this.deliver(after, claims, sent, summary, finalMerge);
    } catch (error) {
      await this.giveBack(runId, claims, sent, previous);
      throw error;
    }
    if (claims.results || claims.picture) {
      await updateManifest(this.deps.store, runId, (cur) => (cur.notify.deliveringSince === now ? { ...cur, notify: { ...cur.notify, deliveringSince: undefined } } : undefined));
    }
  }

  /** Returns the claims that were not delivered, so that the redelivered batch sends them. */
  private async giveBack(
    runId: string,
    claims: { progress: boolean; digest: FovFailure[]; results: boolean; picture: boolean },
    sent: { progress: boolean; digest: boolean; results: boolean; picture: boolean },
    previous: RunManifest['notify'],
  ): Promise<void> {
    await updateManifest(this.deps.store, runId, (cur) => {
      const next = structuredClone(cur);
      if (claims.progress && !sent.progress) {
        next.notify.lastProgressKey = previous.lastProgressKey;
        next.notify.lastProgressAt = previous.lastProgressAt;
      }
      if (claims.digest.length && !sent.digest) {
        const claimed = new Set(claims.digest.map((f) => `${f.round}:${f.fov}`));
        for (const f of next.failures) if (claimed.has(`${f.round}:${f.fov}`)) f.reported = false;
        next.notify.lastDigestAt = previous.lastDigestAt;
      }
      if (claims.results && !sent.results) {
        next.notify.resultsPosted = false;
        next.notify.picturePending = false;
      } else if (claims.picture && !sent.picture) {
        next.notify.picturePending = true;
      }
      next.notify.deliveringSince = undefined;
      return next;
    });
  }

  private async deliver(
    m: RunManifest,
    claims: { progress: boolean; digest: FovFailure[]; results: boolean; picture: boolean },
    sent: { progress: boolean; digest: boolean; results: boolean; picture: boolean },
    summary: ResultsSummary | undefined,
    finalMerge: MergeOutcome | undefined,
  ): Promise<void> {
    const { chat, store } = this.deps;
    if (!m.message) return;
    const keys = resultKeys(m.runId);
    if (claims.progress) await chat.update(m.message, rootMessage(m));
    sent.progress = true;
    if (claims.digest.length) {
      const round = claims.digest[0]!.round;
      await chat.reply(m.message, failureDigest(m.runId, claims.digest, m.failures.filter((f) => f.round === round).length));
    }
    sent.digest = true;
    if (claims.results && summary) {
      const link = async (key: string) => ({ url: store.locate(key), download: await store.downloadLink(key) });
      await chat.reply(m.message, resultsMessage(m, summary, { spotsCsv: await link(keys.spotsCsv), summaryJson: await link(keys.summaryJson), spotsPng: await link(keys.spotsPng) }));
    } else if (claims.results && m.status === 'failed') {
      const allFovsFailed = m.statusReason?.startsWith('all ') ?? false;
      await chat.reply(m.message, failedRunMessage(m.runId, m.statusReason ?? `the merge job failed: ${finalMerge?.reason ?? 'see its log'}`, allFovsFailed ? undefined : finalMerge?.logLink));
    }
    sent.results = true;
    if (claims.picture) {
      const png = await store.get(keys.spotsPng);
      if (png) await chat.upload(m.message, { filename: `${m.runId}-spots.png`, title: `Decoded spots, run ${m.runId}`, bytes: png.body });
    }
    sent.picture = true;
  }

  private async failuresFrom(m: RunManifest, events: BatchJobEvent[]): Promise<FovFailure[]> {
    const out: FovFailure[] = [];
    for (const e of events) {
      if (e.detail.status !== 'FAILED') continue;
      const id = parseJobName(e.detail.jobName);
      if (!id || id.role !== 'fov') continue;
      const isParent = e.detail.arrayProperties?.statusSummary !== undefined || (e.detail.arrayProperties?.size ?? 0) > 1;
      if (isParent) continue;
      const submission = m.submissions.find((s) => s.round === id.round);
      const array = submission?.arrays.find((a) => a.jobName === e.detail.jobName) ?? submission?.arrays[id.part];
      if (!submission || !array) continue;
      const fov = fovOfChild(array.unit, e.detail.arrayProperties?.index ?? 0);
      if (fov === undefined) continue;
      const stream = logStreamOf(e);
      out.push({
        fov,
        round: id.round,
        jobId: e.detail.jobId,
        reason: (await this.reasonFromOutput(m.runId, fov)) ?? failureReasonOf(e),
        ...(stream ? { logLink: this.deps.executor.logLink(stream) } : {}),
        reported: false,
      });
    }
    return out;
  }

  /** process-fov writes its one-line reason next to the output; Batch only knows the exit code. */
  private async reasonFromOutput(runId: string, fov: number): Promise<string | undefined> {
    const object = await this.deps.store.get(fovFile(runId, fov, 'error.json')).catch(() => undefined);
    if (!object) return undefined;
    try {
      const reason = (JSON.parse(object.body.toString('utf8')) as { reason?: unknown }).reason;
      return typeof reason === 'string' ? reason : undefined;
    } catch {
      return undefined;
    }
  }

  private async readSummary(runId: string): Promise<ResultsSummary | undefined> {
    const object = await this.deps.store.get(resultKeys(runId).summaryJson);
    if (!object) throw new Error(`run ${runId}: the merge succeeded but results/summary.json is missing`);
    return resultsSummarySchema.parse(JSON.parse(object.body.toString('utf8')));
  }

  private async submitSalvageMerge(m: RunManifest, current: Submission): Promise<void> {
    const name = jobName(m.runId, 'merge', current.round, undefined, true);
    // Conditional create: of several notifiers seeing the failed merge, one submits.
    const claimKey = `${runPrefix(m.runId)}/claims/${name}`;
    const claim = await this.deps.store.createIfAbsent(claimKey, String(this.deps.clock.now()));
    if (claim === 'exists') return;
    let job;
    try {
      job = await this.deps.executor.submitMerge(
        { runId: m.runId, requester: m.requester.userId, queue: m.queue },
        { name, environment: { STARFISH_RUN_ID: m.runId, STARFISH_OUTPUT: m.inputs.output, STARFISH_EXPECTED_FOVS: m.plan.fovs } },
        [],
      );
    } catch (error) {
      // Nothing was submitted: release the claim so that the redelivered batch tries again.
      await this.deps.store.delete(claimKey);
      throw error;
    }
    const { after } = await updateManifest(this.deps.store, m.runId, (cur) => {
      const next = structuredClone(cur);
      const sub = next.submissions.find((s) => s.round === current.round);
      if (!sub || sub.salvageMerge) return undefined;
      sub.salvageMerge = job;
      if (next.status !== 'cancelled') next.status = 'merging';
      return next;
    });
    // Cancelled while this merge was being submitted: the cancel could not see it.
    if (after.status === 'cancelled') await this.deps.executor.cancel([job.jobId], `starfish: run ${m.runId} was cancelled`);
  }
}

interface MergeOutcome {
  status: 'SUCCEEDED' | 'FAILED';
  reason: string;
  logLink?: string;
  jobId: string;
  jobName: string;
}

function mergeOutcomes(current: Submission, events: BatchJobEvent[], logLink: (stream: string) => string): { merge?: MergeOutcome; salvage?: MergeOutcome } {
  const out: { merge?: MergeOutcome; salvage?: MergeOutcome } = {};
  for (const e of events) {
    const { status, jobId, jobName: name } = e.detail;
    if (status !== 'SUCCEEDED' && status !== 'FAILED') continue;
    // By name (run, round, salvage), so that a merge is known even before its id is recorded.
    const id = parseJobName(name);
    if (!id || id.role !== 'merge' || id.round !== current.round) continue;
    const outcome: MergeOutcome = { status, reason: failureReasonOf(e), jobId, jobName: name };
    const stream = logStreamOf(e);
    if (stream) outcome.logLink = logLink(stream);
    if (id.salvage) out.salvage = outcome;
    else out.merge = outcome;
  }
  return out;
}

/** Progress from the array parents' summaries; a plain job counts as an array of one. */
export function progressOf(current: Submission, descriptions: JobDescription[], previous: Progress): Progress {
  if (!descriptions.length) return previous;
  const p: Progress = { total: 0, succeeded: 0, failed: 0, running: 0, waiting: 0 };
  for (const array of current.arrays) {
    p.total += array.unit.size;
    const d = descriptions.find((x) => x.jobId === array.jobId);
    if (!d) {
      p.waiting += array.unit.size;
      continue;
    }
    const s = d.statusSummary ?? { [d.status]: 1 };
    const succeeded = s.SUCCEEDED ?? 0;
    const failed = s.FAILED ?? 0;
    const running = (s.RUNNING ?? 0) + (s.STARTING ?? 0);
    p.succeeded += succeeded;
    p.failed += failed;
    p.running += running;
    p.waiting += Math.max(0, array.unit.size - succeeded - failed - running);
  }
  return p;
}

function statusOf(
  current: RunStatus,
  progress: Progress,
  arraysDone: boolean,
  merge: 'SUCCEEDED' | 'FAILED' | undefined,
  summary: ResultsSummary | undefined,
): RunStatus {
  if (merge === 'SUCCEEDED' && summary) return summary.fovs_missing.length ? 'partially-failed' : 'succeeded';
  if (merge === 'FAILED') return 'failed';
  if (TERMINAL.has(current)) return current;
  if (arraysDone) return 'merging';
  if (progress.running || progress.succeeded || progress.failed) return 'running';
  return current === 'submitting' ? 'submitting' : 'running';
}
