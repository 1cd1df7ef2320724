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
    const out = await this.options.client.send(
      new PutEventsCommand({
        Entries: [
          {
            EventBusName: this.options.busName,
            Source: this.options.source ?? EVENT_SOURCE,
            DetailType: valid.type,
            Detail: JSON.stringify(valid),
          },
        ],
      }),
    );
    if (out.FailedEntryCount) {
      const entry = out.Entries?.find((e) => e.ErrorCode || e.ErrorMessage) ?? out.Entries?.[0];
      throw new Error(`EventBridge did not accept the ${valid.type} event: ${entry?.ErrorCode ?? 'unknown error'}${entry?.ErrorMessage ? `: ${entry.ErrorMessage}` : ''}`);
    }
  }
}
