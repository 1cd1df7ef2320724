/**
 * The dead-letter queue of the Batch event queue, replayed on the reconciler's schedule. A
 * message is deleted only once the notifier has processed its event (or it can never be: not
 * JSON); one the notifier still fails stays for the next schedule. Run events that ended up
 * here are left for a person: replaying a RunRequested could launch a run twice.
 */
import type { Message, SQSClient } from '@aws-sdk/client-sqs';
import type { Logger } from '../core.js';
import type { DeadLetterReport, DeadLetters } from '../ports.js';

export interface SqsDeadLettersOptions {
  client: SQSClient | (() => Promise<SQSClient>);
  queueUrl: string;
  log: Logger;
  /** At most this many messages per schedule (ReceiveMessage returns up to 10 at a time). */
  maxMessages?: number;
  /** Seconds a received message stays hidden while it is replayed. */
  visibilityTimeout?: number;
}

export class SqsDeadLetters implements DeadLetters {
  constructor(private readonly options: SqsDeadLettersOptions) {}

  private async client(): Promise<SQSClient> {
    const c = this.options.client;
    return typeof c === 'function' ? c() : c;
  }

  async replay(handleBatch: Parameters<DeadLetters['replay']>[0]): Promise<DeadLetterReport> {
    const { ReceiveMessageCommand, DeleteMessageBatchCommand } = await import('@aws-sdk/client-sqs');
    const client = await this.client();
    const { queueUrl, log } = this.options;
    const max = this.options.maxMessages ?? 200;
    const report: DeadLetterReport = { received: 0, replayed: 0, failed: 0, left: 0 };
    while (report.received < max) {
      const out = await client.send(
        new ReceiveMessageCommand({
          QueueUrl: queueUrl,
          MaxNumberOfMessages: Math.min(10, max - report.received),
          WaitTimeSeconds: 0,
          VisibilityTimeout: this.options.visibilityTimeout ?? 120,
        }),
      );
      const messages = (out.Messages ?? []).filter((m): m is Message & { ReceiptHandle: string } => Boolean(m.ReceiptHandle));
      if (!messages.length) break;
      report.received += messages.length;
      const { batchEvents, done } = this.sort(messages, report);
      done.push(...(await this.replayEvents(batchEvents, handleBatch, report)));
      if (done.length) {
        const deleted = await client.send(new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries: done }));
        if (deleted.Failed?.length) log.warn({ failed: deleted.Failed.length }, 'some replayed dead letters could not be deleted; they will be replayed again (harmless)');
      }
    }
    return report;
  }

  /** Batch events to replay; what is not JSON is done (deleted); anything else is left for a person. */
  private sort(messages: Array<Message & { ReceiptHandle: string }>, report: DeadLetterReport) {
    const { log } = this.options;
    const batchEvents: DeadEvent[] = [];
    const done: Entry[] = [];
    for (const [i, m] of messages.entries()) {
      const body = parseBody(m.Body);
      if (body === undefined) {
        log.error({ messageId: m.MessageId }, 'dead letter is not JSON; deleting it');
        done.push({ Id: String(i), ReceiptHandle: m.ReceiptHandle });
      } else if (body.source === 'aws.batch' && typeof body.id === 'string') {
        batchEvents.push({ receipt: m.ReceiptHandle, event: body as { id: string } });
      } else {
        report.left++;
        log.warn({ messageId: m.MessageId, source: body.source }, 'dead letter is not a Batch event; left in the queue for a person to inspect');
      }
    }
    return { batchEvents, done };
  }

  /** Hands the events to the notifier; returns the entries of those it processed. */
  private async replayEvents(batchEvents: DeadEvent[], handleBatch: Parameters<DeadLetters['replay']>[0], report: DeadLetterReport): Promise<Entry[]> {
    if (!batchEvents.length) return [];
    let failed: Set<string>;
    try {
      failed = new Set((await handleBatch(batchEvents.map((b) => b.event))).failedEventIds);
    } catch (error) {
      this.options.log.error({ err: (error as Error).message, events: batchEvents.length }, 'replaying dead letters failed; they stay queued');
      failed = new Set(batchEvents.map((b) => b.event.id));
    }
    const done: Entry[] = [];
    for (const [i, b] of batchEvents.entries()) {
      if (failed.has(b.event.id)) report.failed++;
      else {
        report.replayed++;
        done.push({ Id: `e${i}`, ReceiptHandle: b.receipt });
      }
    }
    return done;
  }
}

interface DeadEvent {
  receipt: string;
  event: { id: string };
}

interface Entry {
  Id: string;
  ReceiptHandle: string;
}

function parseBody(body: string | undefined): { source?: unknown; id?: unknown } | undefined {
  try {
    const parsed = JSON.parse(body ?? '') as unknown;
    return typeof parsed === 'object' && parsed !== null ? (parsed as { source?: unknown; id?: unknown }) : {};
  } catch {
    return undefined;
  }
}
