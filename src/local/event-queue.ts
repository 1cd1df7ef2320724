/**
 * The local stand-in for EventBridge → SQS → Lambda: events are batched (by count or by a time
 * window), handed to a consumer one batch at a time, and the ones it reports as failed are
 * redelivered with a delay, up to a limit, after which they land in a dead-letter list.
 */
import type { Logger } from '../core.js';

export interface QueueConsumer<T> {
  (batch: T[]): Promise<{ failedEventIds: string[] }>;
}

export interface EventQueueOptions {
  maxBatch?: number;
  windowMs?: number;
  maxReceives?: number;
  redeliveryDelayMs?: number;
}

export class EventQueue<T extends { id: string }> {
  private pending: T[] = [];
  private receives = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private delayed = 0;
  readonly deadLetters: T[] = [];
  batches = 0;

  constructor(
    private readonly consumer: QueueConsumer<T>,
    private readonly log: Logger,
    private readonly options: EventQueueOptions = {},
  ) {}

  push = async (events: T[]): Promise<void> => {
    this.pending.push(...events);
    if (this.pending.length >= (this.options.maxBatch ?? 100)) this.kick(0);
    else this.kick(this.options.windowMs ?? 250);
  };

  private kick(delay: number): void {
    if (this.timer && delay > 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, delay);
  }

  private async flush(): Promise<void> {
    if (this.inFlight) {
      await this.inFlight;
      if (this.pending.length) this.kick(0);
      return;
    }
    const batch = this.pending.splice(0, this.options.maxBatch ?? 100);
    if (!batch.length) return;
    this.inFlight = this.deliver(batch).finally(() => (this.inFlight = undefined));
    await this.inFlight;
    if (this.pending.length) this.kick(0);
  }

  private async deliver(batch: T[]): Promise<void> {
    this.batches++;
    let failed: Set<string>;
    try {
      failed = new Set((await this.consumer(batch)).failedEventIds);
    } catch (error) {
      this.log.error({ err: (error as Error).message, events: batch.length }, 'event batch failed; redelivering');
      failed = new Set(batch.map((e) => e.id));
    }
    const retry: T[] = [];
    for (const event of batch) {
      if (!failed.has(event.id)) continue;
      const n = (this.receives.get(event.id) ?? 1) + 1;
      this.receives.set(event.id, n);
      if (n > (this.options.maxReceives ?? 5)) this.deadLetters.push(event);
      else retry.push(event);
    }
    if (retry.length) {
      this.delayed++;
      setTimeout(() => {
        this.delayed--;
        void this.push(retry);
      }, this.options.redeliveryDelayMs ?? 500);
    }
  }

  /** Resolves once nothing is pending, delayed or being delivered. */
  async drain(): Promise<void> {
    for (;;) {
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
      if (this.inFlight) await this.inFlight;
      else if (this.pending.length) await this.flush();
      else if (this.delayed) await new Promise((r) => setTimeout(r, 50));
      else return;
    }
  }
}
