/**
 * The Bus port on EventBridge: each run event is one PutEvents entry on the app's bus, with
 * Source "starfish.chatops", DetailType the event type and Detail the event itself. A rule on
 * the bus delivers them to the events Lambda (src/lambda/events.ts), which hands them to the
 * launcher. PutEvents reports refused entries in its answer, not as an error: they are checked.
 */
import { PutEventsCommand, type EventBridgeClient } from '@aws-sdk/client-eventbridge';
import type { Bus } from '../ports.js';
import { runEventSchema, type RunEvent } from '../run/run-events.js';

export const EVENT_SOURCE = 'starfish.chatops';

/**
 * "The total entry size must be less than 256KB", Source, DetailType and Detail counted in UTF-8
 * bytes (EventBridge User Guide, "Calculating Amazon EventBridge PutEvents event entry size").
 */
const MAX_ENTRY_BYTES = 256 * 1024;

function checkEntrySize(entry: { Source: string; DetailType: string; Detail: string }): void {
  const size = [entry.Source, entry.DetailType, entry.Detail].reduce((n, s) => n + Buffer.byteLength(s, 'utf8'), 0);
  if (size >= MAX_ENTRY_BYTES) {
    throw new Error(
      `the ${entry.DetailType} request is ${size.toLocaleString('en-US')} bytes, and EventBridge takes less than ${MAX_ENTRY_BYTES.toLocaleString('en-US')} (256 KB) in one event; locations are at most 2,048 characters, e.g. s3://lab-data/iss/experiment.json`,
    );
  }
}

export interface EventBridgeBusOptions {
  client: EventBridgeClient;
  /** Name or ARN of the event bus. */
  busName: string;
  source?: string;
}

export class EventBridgeBus implements Bus {
  constructor(private readonly options: EventBridgeBusOptions) {}

  async publish(event: RunEvent): Promise<void> {
    const valid = runEventSchema.parse(event);
    const entry = { Source: this.options.source ?? EVENT_SOURCE, DetailType: valid.type, Detail: JSON.stringify(valid) };
    // Refused here, where the request is built, rather than by EventBridge.
    checkEntrySize(entry);
    const out = await this.options.client.send(new PutEventsCommand({ Entries: [{ EventBusName: this.options.busName, ...entry }] }));
    if (out.FailedEntryCount) {
      const entry = out.Entries?.find((e) => e.ErrorCode || e.ErrorMessage) ?? out.Entries?.[0];
      throw new Error(`EventBridge did not accept the ${valid.type} event: ${entry?.ErrorCode ?? 'unknown error'}${entry?.ErrorMessage ? `: ${entry.ErrorMessage}` : ''}`);
    }
  }
}
