/** The Bus port in one process: validated events delivered to the launcher asynchronously. */
import type { Bus } from '../ports.js';
import { runEventSchema, type RunEvent } from '../run/run-events.js';
import type { Logger } from '../core.js';

export class MemoryBus implements Bus {
  private readonly inFlight = new Set<Promise<void>>();
  private handler: ((event: RunEvent) => Promise<void>) | undefined;

  constructor(private readonly log: Logger) {}

  subscribe(handler: (event: RunEvent) => Promise<void>): void {
    this.handler = handler;
  }

  async publish(event: RunEvent): Promise<void> {
    const valid = runEventSchema.parse(event);
    const handler = this.handler;
    if (!handler) throw new Error('no launcher is listening on the bus');
    // Delivered on a later tick, as EventBridge would: the publisher never waits on the work.
    const p: Promise<void> = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => handler(valid))
      .catch((error: unknown) => this.log.error({ event: valid.type, err: (error as Error).message }, 'run event failed'))
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  async drain(): Promise<void> {
    while (this.inFlight.size) await Promise.allSettled([...this.inFlight]);
  }
}
