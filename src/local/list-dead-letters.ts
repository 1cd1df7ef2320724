/** The DeadLetters port over the local event queue's dead-letter list. */
import type { DeadLetterReport, DeadLetters } from '../ports.js';

export class ListDeadLetters<T extends { id: string }> implements DeadLetters {
  constructor(private readonly list: T[]) {}

  async replay(handle: Parameters<DeadLetters['replay']>[0]): Promise<DeadLetterReport> {
    const events = this.list.splice(0);
    if (!events.length) return { received: 0, replayed: 0, failed: 0, left: 0 };
    const failed = new Set((await handle(events)).failedEventIds);
    // What the notifier still cannot process stays for the next pass.
    this.list.push(...events.filter((e) => failed.has(e.id)));
    return { received: events.length, replayed: events.length - failed.size, failed: failed.size, left: 0 };
  }
}
