/**
 * The notifier: Batch job state changes in, one live message per run out. Events are grouped
 * by run and turned into one fact per run; the lifecycle decides what it means and what to send.
 * Every step is idempotent: a redelivered batch changes nothing.
 */
import type { CoreDeps } from '../core.js';
import { batchJobEventSchema, parseJobName, type BatchJobEvent } from '../run/batch-event.js';
import { loadManifest } from '../run/manifest-store.js';
import { factFromEvents } from '../lifecycle/batch-facts.js';
import { following } from '../lifecycle/observe.js';
import { RunWorker } from '../lifecycle/run-worker.js';

export interface BatchOutcome {
  /** Events that could not be processed and must be redelivered (SQS batchItemFailures). */
  failedEventIds: string[];
  runs: number;
  ignored: number;
}

export class Notifier {
  private readonly worker: RunWorker;

  constructor(private readonly deps: CoreDeps) {
    this.worker = new RunWorker(deps);
  }

  /** One batch of raw events (an SQS batch on AWS, a queue flush locally). */
  async handleBatch(raw: unknown[]): Promise<BatchOutcome> {
    const { byRun, ignored } = groupByRun(raw);
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

  /** Brings a run's manifest and messages up to date with what these events say. */
  private async refresh(runId: string, events: BatchJobEvent[]): Promise<void> {
    const loaded = await loadManifest(this.deps.store, runId);
    if (!loaded) {
      this.deps.log.warn({ runId }, 'events for a run with no manifest; ignored');
      return;
    }
    const current = following(loaded.manifest, this.deps.clock.now());
    if (!current) return;
    await this.worker.apply(runId, await factFromEvents(this.deps, loaded.manifest, current, events));
  }
}

/** Valid events of our jobs by run id (the job name carries it); anything else is counted and dropped. */
function groupByRun(raw: unknown[]): { byRun: Map<string, BatchJobEvent[]>; ignored: number } {
  const byRun = new Map<string, BatchJobEvent[]>();
  let ignored = 0;
  for (const item of raw) {
    const parsed = batchJobEventSchema.safeParse(item);
    const identity = parsed.success ? parseJobName(parsed.data.detail.jobName) : undefined;
    if (!parsed.success || !identity) ignored++;
    else byRun.set(identity.runId, [...(byRun.get(identity.runId) ?? []), parsed.data]);
  }
  return { byRun, ignored };
}
