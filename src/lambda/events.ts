/**
 * The events Lambda: everything that is not a Slack request.
 *
 * - an EventBridge run event (source starfish.chatops, published by the Slack Lambda) → launcher
 * - a Batch "Job State Change" event delivered directly by an EventBridge rule → notifier
 * - an SQS batch (the rule's queue; each body is an EventBridge event): all Batch events of the
 *   batch go to ONE notifier call, so a run's events are coalesced; run events go to the
 *   launcher; the answer lists the failed messages (ReportBatchItemFailures), so that only those
 *   are redelivered
 * - the schedule (source aws.events, "Scheduled Event") → replay the dead-letter queue, then
 *   reconcile active runs with Batch
 *
 * The Chat is Slack (src/slack/slack-chat.ts); its bot token comes from Secrets Manager once per
 * container. Logs are JSON; no secret and no message body is logged.
 */
import type { Context, EventBridgeEvent, ScheduledEvent, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { z } from 'zod';
import type { Logger } from '../core.js';
import type { Launcher } from '../launcher/launcher.js';
import type { Notifier } from '../notifier/notifier.js';
import type { Reconciler, ReconcileReport } from '../reconciler/reconciler.js';
import { runEventSchema } from '../run/run-events.js';
import { EVENT_SOURCE } from '../aws/eventbridge-bus.js';

export interface EventsSystem {
  launcher: Pick<Launcher, 'handle'>;
  notifier: Pick<Notifier, 'handleBatch'>;
  reconciler: Pick<Reconciler, 'run'>;
  log: Logger;
}

/** What invokes this function: the rule's queue, the rules directly, or the schedule. */
type EventsLambdaEvent = SQSEvent | EventBridgeEvent<string, unknown> | ScheduledEvent;

type EventsResult = SQSBatchResponse | { reconcile: ReconcileReport } | void;

// The types above are what AWS promises; these schemas are what this function relies on,
// checked at run time: a direct invocation, a queue message or a test can carry anything.
const sqsEventSchema = z.object({ Records: z.array(z.object({ messageId: z.string(), body: z.string() })) });
/** Loose: a Batch event goes on whole to the notifier, which validates its detail itself. */
const envelopeSchema = z.looseObject({ id: z.string().optional(), source: z.string().optional(), 'detail-type': z.string().optional(), detail: z.unknown().optional() });

type SqsRecord = z.infer<typeof sqsEventSchema>['Records'][number];
type EventBridgeEnvelope = z.infer<typeof envelopeSchema>;

/** The event's routing fields; an empty envelope (routed nowhere) when it is not an object of that shape. */
const envelopeOf = (value: unknown): EventBridgeEnvelope => envelopeSchema.safeParse(value).data ?? {};

type Kind = 'run' | 'batch' | 'schedule' | 'unknown';

function kindOf(e: EventBridgeEnvelope): Kind {
  if (e.source === EVENT_SOURCE) return 'run';
  if (e.source === 'aws.batch' && e['detail-type'] === 'Batch Job State Change') return 'batch';
  if (e.source === 'aws.events' && e['detail-type'] === 'Scheduled Event') return 'schedule';
  return 'unknown';
}

export function createEventsHandler(getSystem: () => Promise<EventsSystem>) {
  /** Runs one run event; false when it is not valid (dropped: a retry would not fix it). */
  async function runEvent(system: EventsSystem, envelope: EventBridgeEnvelope): Promise<void> {
    const parsed = runEventSchema.safeParse(envelope.detail);
    if (!parsed.success) {
      system.log.error(
        { eventId: envelope.id, detailType: envelope['detail-type'], issue: parsed.error.issues[0]?.message, path: parsed.error.issues[0]?.path.join('.') },
        'run event does not match the schema; dropped',
      );
      return;
    }
    const started = Date.now();
    await system.launcher.handle(parsed.data);
    system.log.info({ eventId: envelope.id, type: parsed.data.type, ms: Date.now() - started }, 'run event handled');
  }

  async function sqsBatch(system: EventsSystem, records: SqsRecord[]): Promise<SQSBatchResponse> {
    const failures = new Set<string>();
    const batch: Array<{ messageId: string; event: EventBridgeEnvelope & { id: string } }> = [];
    const runs: Array<{ messageId: string; event: EventBridgeEnvelope }> = [];
    let dropped = 0;
    for (const r of records) {
      let body: unknown;
      try {
        body = JSON.parse(r.body);
      } catch {
        dropped++;
        system.log.error({ messageId: r.messageId }, 'queue message is not JSON; dropped');
        continue;
      }
      const envelope = envelopeOf(body);
      const kind = kindOf(envelope);
      if (kind === 'batch' && envelope.id !== undefined) batch.push({ messageId: r.messageId, event: { ...envelope, id: envelope.id } });
      else if (kind === 'run') runs.push({ messageId: r.messageId, event: envelope });
      else {
        dropped++;
        system.log.warn({ messageId: r.messageId, source: envelope.source, detailType: envelope['detail-type'] }, 'queue message is not an event this Lambda handles; dropped');
      }
    }
    if (batch.length) {
      try {
        const outcome = await system.notifier.handleBatch(batch.map((b) => b.event));
        const failed = new Set(outcome.failedEventIds);
        // The same event can arrive in several messages (at-least-once): fail each of them.
        for (const b of batch) if (failed.has(b.event.id)) failures.add(b.messageId);
      } catch (error) {
        system.log.error({ err: (error as Error).message, events: batch.length }, 'notifier failed on the whole batch; it will be redelivered');
        for (const b of batch) failures.add(b.messageId);
      }
    }
    for (const r of runs) {
      try {
        await runEvent(system, r.event);
      } catch (error) {
        system.log.error({ messageId: r.messageId, eventId: r.event.id, err: (error as Error).message }, 'run event failed; it will be redelivered');
        failures.add(r.messageId);
      }
    }
    system.log.info({ records: records.length, batchEvents: batch.length, runEvents: runs.length, dropped, failed: failures.size }, 'queue batch handled');
    return { batchItemFailures: [...failures].map((itemIdentifier) => ({ itemIdentifier })) };
  }

  /** Takes anything (validated above); the deployed `handler` below declares what AWS sends. */
  return async function handler(event: unknown): Promise<EventsResult> {
    const system = await getSystem();
    const sqs = sqsEventSchema.safeParse(event);
    if (sqs.success) return sqsBatch(system, sqs.data.Records);
    const envelope = envelopeOf(event);
    switch (kindOf(envelope)) {
      case 'run':
        return runEvent(system, envelope);
      case 'batch': {
        const outcome = await system.notifier.handleBatch([envelope]);
        // Thrown, so that Lambda's asynchronous retries (and its failure destination) take it.
        if (outcome.failedEventIds.length) throw new Error(`the notifier could not process event ${String(envelope.id)}; it will be retried`);
        return;
      }
      case 'schedule': {
        // The reconciler replays the dead-letter queue first (the DeadLetters port), then reconciles.
        const reconcile = await system.reconciler.run();
        system.log.info({ reconcile }, 'reconciled');
        return { reconcile };
      }
      case 'unknown':
        system.log.warn({ source: envelope.source, detailType: envelope['detail-type'] }, 'event not handled by this Lambda; ignored');
        return;
    }
  };
}

let system: Promise<EventsSystem> | undefined;

/** The production system: Slack chat with the bot token from Secrets Manager, AWS adapters. */
async function buildSystem(): Promise<EventsSystem> {
  const [{ createAwsSystem }, { readAwsConfig }, { slackSecret }, { SlackChat, approverGroupResolver }] = await Promise.all([
    import('../aws/system.js'),
    import('../aws/config.js'),
    import('../aws/secrets.js'),
    import('../slack/slack-chat.js'),
  ]);
  const config = readAwsConfig(process.env);
  // Secrets Manager in a deployment; SLACK_BOT_TOKEN for a stack without the secret (as slack.ts).
  let botToken = process.env.SLACK_BOT_TOKEN;
  if (config.slackSecretArn) botToken = (await slackSecret(config.slackSecretArn)).botToken;
  if (!botToken) throw new Error('events Lambda: set STARFISH_SLACK_SECRET_ARN (a Secrets Manager secret {"signingSecret": "…", "botToken": "xoxb-…"}) or SLACK_BOT_TOKEN');
  const chat = new SlackChat({ token: botToken, ...(process.env.SLACK_API_URL ? { slackApiUrl: process.env.SLACK_API_URL } : {}) });
  const group = config.policy.approval.approverGroup;
  return createAwsSystem(chat, process.env, group ? { approverGroupMembers: approverGroupResolver(chat.client, group) } : {});
}

export const handler: (event: EventsLambdaEvent, context?: Context) => Promise<EventsResult> = createEventsHandler(() => {
  system ??= buildSystem().catch((error: unknown) => {
    system = undefined;
    throw error;
  });
  return system;
});
