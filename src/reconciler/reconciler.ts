/**
 * The reconciler, on a schedule: compares every active run with Batch. It replays dead-lettered
 * notifications, finishes runs whose events were lost, flushes progress the notifier held back,
 * expires stale approvals, resumes submissions whose submitter died, and flags runs stuck in
 * RUNNABLE. It learns facts and hands them to the same lifecycle as the notifier.
 */
import type { CoreDeps } from '../core.js';
import type { Notifier } from '../notifier/notifier.js';
import type { DeadLetterReport, DeadLetters } from '../ports.js';
import { TERMINAL, type RunManifest } from '../run/manifest.js';
import { listRuns } from '../run/manifest-store.js';
import { factFromBatch } from '../lifecycle/batch-facts.js';
import { following } from '../lifecycle/observe.js';
import { RunWorker } from '../lifecycle/run-worker.js';
import { submitRound } from '../lifecycle/submit.js';

export interface ReconcileReport {
  checked: number;
  expired: string[];
  recovered: string[];
  stuck: string[];
  resumed: string[];
  replayed: number;
  /** Runs whose manifest cannot be read: skipped, each with a log line. */
  unreadable: string[];
  deadLetters?: DeadLetterReport;
}

/** Active runs, and ended ones whose results have not been posted yet. */
const needsLook = (m: RunManifest) => !TERMINAL.has(m.status) || (!m.notify.resultsPosted && (m.status === 'succeeded' || m.status === 'partially-failed'));

export class Reconciler {
  private readonly worker: RunWorker;

  constructor(
    private readonly deps: CoreDeps,
    private readonly notifier: Notifier,
    private readonly deadLetters?: DeadLetters,
  ) {
    this.worker = new RunWorker(deps);
  }

  async run(): Promise<ReconcileReport> {
    const report: ReconcileReport = { checked: 0, expired: [], recovered: [], stuck: [], resumed: [], replayed: 0, unreadable: [] };
    await this.replayDeadLetters(report);
    for (const m of (await this.readableRuns(report)).filter(needsLook)) {
      report.checked++;
      try {
        await this.check(m, report);
      } catch (error) {
        this.deps.log.error({ runId: m.runId, err: (error as Error).message }, 'reconciler could not check run');
      }
    }
    return report;
  }

  /** One corrupt run.json is that run's problem: it is skipped with a log line, the others go on. */
  private async readableRuns(report: ReconcileReport): Promise<RunManifest[]> {
    const runs = await listRuns(this.deps.store, 500, undefined, this.deps.clock.now());
    for (const r of runs) {
      if ('unreadable' in r) {
        report.unreadable.push(r.runId);
        this.deps.log.error({ runId: r.runId, key: r.unreadable.key, err: r.unreadable.why }, 'run manifest cannot be read; run skipped');
      }
    }
    return runs.flatMap((r) => ('manifest' in r ? [r.manifest] : []));
  }

  private async replayDeadLetters(report: ReconcileReport): Promise<void> {
    if (!this.deadLetters) return;
    try {
      report.deadLetters = await this.deadLetters.replay((events) => this.notifier.handleBatch(events));
      report.replayed = report.deadLetters.replayed;
    } catch (error) {
      this.deps.log.error({ err: (error as Error).message }, 'could not replay the dead letters; reconciling anyway');
    }
  }

  private async check(m: RunManifest, report: ReconcileReport): Promise<void> {
    if (m.status === 'awaiting-approval') {
      const after = await this.worker.apply(m.runId, { type: 'tick' });
      if (after.status === 'expired') report.expired.push(m.runId);
      return;
    }
    const pending = m.status === 'submitting' ? m.pendingSubmission : undefined;
    if (pending) {
      // The round being submitted owns the run; the previous round's jobs are history.
      const fact = m.submissions.some((s) => s.round === pending.round) ? undefined : await submitRound(this.deps, m, pending.round, pending.fovs, true);
      if (fact) {
        report.resumed.push(m.runId);
        await this.worker.apply(m.runId, fact);
      }
      return;
    }
    const current = following(m, this.deps.clock.now());
    if (!current) return;
    const fact = await factFromBatch(this.deps, m, current);
    const after = await this.worker.apply(m.runId, fact);
    if (fact.merges.length && m.status !== 'succeeded') report.recovered.push(m.runId);
    if (fact.stuck && !m.notify.stuckWarnedAt && after.notify.stuckWarnedAt) report.stuck.push(m.runId);
  }
}
