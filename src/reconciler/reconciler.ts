/**
 * The reconciler, on a schedule: compares every active run with Batch. It finishes runs whose
 * events were lost, flushes progress the notifier held back, expires stale approvals, replays
 * dead-lettered notifications, and flags runs stuck in RUNNABLE with the likely cause.
 */
import type { CoreDeps } from '../core.js';
import type { Notifier } from '../notifier/notifier.js';
import type { Launcher } from '../launcher/launcher.js';
import type { BatchJobEvent } from '../run/batch-event.js';
import type { JobDescription } from '../ports.js';
import { TERMINAL, type RunManifest } from '../run/manifest.js';
import { listManifests, updateManifest } from '../run/manifest-store.js';
import { noticeMessage } from '../messages/blocks.js';

export interface ReconcileReport {
  checked: number;
  expired: string[];
  recovered: string[];
  stuck: string[];
  resumed: string[];
  replayed: number;
}

/** A state-change event rebuilt from DescribeJobs, for an end whose event never arrived. */
function eventFrom(d: JobDescription, now: number): BatchJobEvent {
  return {
    'detail-type': 'Batch Job State Change',
    source: 'aws.batch',
    id: `reconciler-${d.jobId}-${d.status}`,
    time: new Date(now).toISOString(),
    detail: {
      jobName: d.jobName,
      jobId: d.jobId,
      status: d.status,
      ...(d.statusReason ? { statusReason: d.statusReason } : {}),
      ...(d.statusSummary ? { arrayProperties: { statusSummary: d.statusSummary, ...(d.size ? { size: d.size } : {}) } } : {}),
    },
  };
}

export class Reconciler {
  constructor(
    private readonly deps: CoreDeps,
    private readonly notifier: Notifier,
    private readonly launcher: Launcher,
    private readonly deadLetters: () => Promise<unknown[]> = async () => [],
  ) {}

  async run(): Promise<ReconcileReport> {
    const report: ReconcileReport = { checked: 0, expired: [], recovered: [], stuck: [], resumed: [], replayed: 0 };
    const dead = await this.deadLetters();
    if (dead.length) {
      const outcome = await this.notifier.handleBatch(dead);
      report.replayed = dead.length - outcome.failedEventIds.length;
    }
    const runs = (await listManifests(this.deps.store, 500)).filter((m) => !TERMINAL.has(m.status) || (!m.notify.resultsPosted && (m.status === 'succeeded' || m.status === 'partially-failed')));
    for (const m of runs) {
      report.checked++;
      try {
        if (m.status === 'awaiting-approval') {
          if (await this.launcher.expireIfDue(m)) report.expired.push(m.runId);
          continue;
        }
        if (m.pendingSubmission) {
          // The round being submitted owns the run; the previous round's jobs are history.
          if (await this.launcher.resumeSubmission(m)) report.resumed.push(m.runId);
          continue;
        }
        await this.check(m, report);
      } catch (error) {
        this.deps.log.error({ runId: m.runId, err: (error as Error).message }, 'reconciler could not check run');
      }
    }
    return report;
  }

  /**
   * Failed FOVs Batch knows about but the manifest does not (their events were lost), rebuilt
   * as child FAILED events with their reasons and log streams.
   */
  private async lostFailures(m: RunManifest, described: JobDescription[], now: number): Promise<BatchJobEvent[]> {
    const current = m.submissions.at(-1)!;
    const events: BatchJobEvent[] = [];
    for (const array of current.arrays) {
      const d = described.find((x) => x.jobId === array.jobId);
      if (!d || (d.status !== 'SUCCEEDED' && d.status !== 'FAILED')) continue;
      const failed = d.statusSummary ? (d.statusSummary.FAILED ?? 0) : d.status === 'FAILED' ? 1 : 0;
      const known = m.failures.filter((f) => f.round === current.round && (f.jobId === array.jobId || f.jobId.startsWith(`${array.jobId}:`))).length;
      if (failed <= known) continue;
      const children = array.unit.size > 1 ? await this.deps.executor.failedChildren(array.jobId) : [{ index: 0, reason: d.statusReason ?? 'failed' }];
      for (const c of children) {
        events.push({
          'detail-type': 'Batch Job State Change',
          source: 'aws.batch',
          id: `reconciler-${array.jobId}-${c.index}-FAILED`,
          time: new Date(now).toISOString(),
          detail: {
            jobName: array.jobName,
            jobId: array.unit.size > 1 ? `${array.jobId}:${c.index}` : array.jobId,
            status: 'FAILED',
            statusReason: c.reason,
            ...(array.unit.size > 1 ? { arrayProperties: { index: c.index } } : {}),
            attempts: [{ container: { reason: c.reason, ...(c.logStreamName ? { logStreamName: c.logStreamName } : {}) } }],
          },
        });
      }
    }
    return events;
  }

  private async check(m: RunManifest, report: ReconcileReport): Promise<void> {
    const current = m.submissions.at(-1);
    if (!current) return;
    const now = this.deps.clock.now();
    const ids = [...current.arrays.map((a) => a.jobId), ...(current.merge ? [current.merge.jobId] : []), ...(current.salvageMerge ? [current.salvageMerge.jobId] : [])];
    const described = await this.deps.executor.describe(ids);
    const mergeIds = new Set([current.merge?.jobId, current.salvageMerge?.jobId]);
    const ended = described.filter((d) => mergeIds.has(d.jobId) && (d.status === 'SUCCEEDED' || d.status === 'FAILED'));
    const before = m.status;
    const lostFailures = await this.lostFailures(m, described, now);
    await this.notifier.refresh(m.runId, [...lostFailures, ...ended.map((d) => eventFrom(d, now))]);
    if (ended.length && before !== 'succeeded') report.recovered.push(m.runId);

    const stuck = described.find((d) => d.status === 'RUNNABLE' && d.since !== undefined && now - d.since > this.deps.settings.stuckAfterMs);
    if (stuck && !m.notify.stuckWarnedAt && m.message) {
      const minutes = Math.round((now - stuck.since!) / 60_000);
      const { changed } = await updateManifest(this.deps.store, m.runId, (cur) => (cur.notify.stuckWarnedAt ? undefined : { ...cur, notify: { ...cur.notify, stuckWarnedAt: now } }));
      if (changed) {
        report.stuck.push(m.runId);
        await this.deps.chat.reply(
          m.message,
          noticeMessage(
            `:hourglass: Run ${m.runId} has waited in RUNNABLE for ${minutes} min${stuck.statusReason ? ` (${stuck.statusReason})` : ''}. Likely causes: the compute environment has no capacity (max vCPUs reached, or no Spot capacity for its instance types), or the container image cannot be pulled (check the image URI and the execution role's ECR access). \`/starfish cancel ${m.runId}\` stops it.`,
          ),
        );
      }
    }
  }
}
