import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mockClient } from 'aws-sdk-client-mock';
import { DeleteMessageBatchCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { createEventsHandler, type EventsSystem } from '../../src/lambda/events.js';
import { SqsDeadLetters } from '../../src/aws/dead-letters.js';
import { silentLogger } from '../../src/core.js';
import type { ReconcileReport } from '../../src/reconciler/reconciler.js';
import { CREDENTIALS, REGION, batchEvent, sqsRecords, testEnv } from './helpers.js';

const runEnvelope = (detail: unknown, id = 'eb-1') => ({ version: '0', id, source: 'starfish.chatops', 'detail-type': 'RunCancelled', account: '1', time: '2026-11-25T10:00:00Z', region: REGION, resources: [], detail });
const cancel = { type: 'RunCancelled', userId: 'U1', channel: 'C1', runId: '261125-k3f9' };
const report: ReconcileReport = { checked: 2, expired: [], recovered: [], stuck: [], resumed: [], replayed: 0, unreadable: [] };

function stubSystem(overrides: Partial<EventsSystem> = {}) {
  const system = {
    launcher: { handle: vi.fn(async (_event: unknown) => undefined) },
    notifier: { handleBatch: vi.fn(async (_events: unknown[]) => ({ failedEventIds: [] as string[], runs: 1, ignored: 0 })) },
    reconciler: { run: vi.fn(async () => report) },
    log: silentLogger,
  };
  return Object.assign(system, overrides) as typeof system;
}

describe('events Lambda routing', () => {
  it('an EventBridge run event goes to the launcher, validated', async () => {
    const system = stubSystem();
    await createEventsHandler(async () => system)(runEnvelope(cancel));
    expect(system.launcher.handle).toHaveBeenCalledWith(cancel);
    expect(system.notifier.handleBatch).not.toHaveBeenCalled();
  });

  it('a run event whose detail is not valid is dropped (a retry would not fix it)', async () => {
    const system = stubSystem();
    await expect(createEventsHandler(async () => system)(runEnvelope({ type: 'RunCancelled', userId: 'U1' }))).resolves.toBeUndefined();
    expect(system.launcher.handle).not.toHaveBeenCalled();
  });

  it('a launcher failure on a direct run event is thrown, for Lambda to retry', async () => {
    const system = stubSystem({ launcher: { handle: vi.fn(async () => Promise.reject(new Error('S3 down'))) } });
    await expect(createEventsHandler(async () => system)(runEnvelope(cancel))).rejects.toThrow('S3 down');
  });

  it('a direct Batch state change goes to the notifier; a failed one is thrown for retry', async () => {
    const system = stubSystem();
    const event = batchEvent('b-1', { jobName: 'starfish-261125-k3f9-fov', jobId: 'j1', status: 'RUNNING' });
    await createEventsHandler(async () => system)(event);
    expect(system.notifier.handleBatch).toHaveBeenCalledWith([event]);
    system.notifier.handleBatch.mockResolvedValueOnce({ failedEventIds: ['b-1'], runs: 1, ignored: 0 });
    await expect(createEventsHandler(async () => system)(event)).rejects.toThrow(/could not process event b-1/);
  });

  it('an SQS batch: Batch events in ONE notifier call, run events to the launcher, failures as batchItemFailures', async () => {
    const system = stubSystem();
    system.notifier.handleBatch.mockResolvedValueOnce({ failedEventIds: ['b-2'], runs: 2, ignored: 0 });
    system.launcher.handle.mockRejectedValueOnce(new Error('conflict'));
    const events = [
      batchEvent('b-1', { jobName: 'starfish-261125-k3f9-fov', jobId: 'j1', status: 'RUNNING' }),
      batchEvent('b-2', { jobName: 'starfish-261125-abcd-fov', jobId: 'j2', status: 'FAILED' }),
      runEnvelope(cancel, 'eb-9'),
      'not json {',
      batchEvent('b-3', { jobName: 'starfish-261125-k3f9-merge', jobId: 'j3', status: 'SUCCEEDED' }),
      // The same event delivered twice (at-least-once): both messages fail with it.
      batchEvent('b-2', { jobName: 'starfish-261125-abcd-fov', jobId: 'j2', status: 'FAILED' }),
      { source: 'aws.s3', 'detail-type': 'Object Created', detail: {} },
    ];
    const out = await createEventsHandler(async () => system)(sqsRecords(events));
    expect(system.notifier.handleBatch).toHaveBeenCalledTimes(1);
    expect((system.notifier.handleBatch.mock.calls[0]![0] as Array<{ id: string }>).map((e) => e.id)).toEqual(['b-1', 'b-2', 'b-3', 'b-2']);
    expect(system.launcher.handle).toHaveBeenCalledWith(cancel);
    expect(out).toEqual({ batchItemFailures: [{ itemIdentifier: 'msg-1' }, { itemIdentifier: 'msg-5' }, { itemIdentifier: 'msg-2' }] });
  });

  it('an SQS batch whose notifier call throws fails every Batch message of it, and nothing else', async () => {
    const system = stubSystem();
    system.notifier.handleBatch.mockRejectedValueOnce(new Error('boom'));
    const out = await createEventsHandler(async () => system)(
      sqsRecords([batchEvent('b-1', { jobName: 'starfish-261125-k3f9-fov', jobId: 'j1', status: 'RUNNING' }), runEnvelope(cancel), batchEvent('b-2', { jobName: 'starfish-261125-k3f9-fov', jobId: 'j1', status: 'RUNNING' })]),
    );
    expect(out).toEqual({ batchItemFailures: [{ itemIdentifier: 'msg-0' }, { itemIdentifier: 'msg-2' }] });
  });

  it('an SQS batch with no failure answers an empty batchItemFailures', async () => {
    const system = stubSystem();
    expect(await createEventsHandler(async () => system)(sqsRecords([batchEvent('b-1', { jobName: 'starfish-261125-k3f9-fov', jobId: 'j1', status: 'RUNNING' })]))).toEqual({ batchItemFailures: [] });
  });

  it('the schedule runs the reconciler (which replays dead letters first) and answers its report', async () => {
    const system = stubSystem();
    const out = await createEventsHandler(async () => system)({ version: '0', id: 's-1', source: 'aws.events', 'detail-type': 'Scheduled Event', detail: {}, resources: ['arn:aws:events:us-east-1:1:rule/starfish-reconcile'] });
    expect(system.reconciler.run).toHaveBeenCalledTimes(1);
    expect(out).toEqual({ reconcile: report });
  });

  it('other events are ignored', async () => {
    const system = stubSystem();
    expect(await createEventsHandler(async () => system)({ source: 'aws.s3', 'detail-type': 'Object Created' })).toBeUndefined();
    expect(system.launcher.handle).not.toHaveBeenCalled();
    expect(system.notifier.handleBatch).not.toHaveBeenCalled();
  });
});

describe('dead-letter replay (SQS)', () => {
  const sqs = mockClient(SQSClient);
  beforeEach(() => sqs.reset());
  afterEach(() => sqs.reset());

  it('receives until empty, replays the Batch events, deletes what was processed (and what never can be), keeps the rest', async () => {
    const dlq = 'https://sqs.us-east-1.amazonaws.com/123456789012/starfish-batch-events-dlq';
    const e1 = batchEvent('b-1', { jobName: 'starfish-261125-k3f9-fov', jobId: 'j1', status: 'FAILED' });
    const e2 = batchEvent('b-2', { jobName: 'starfish-261125-k3f9-merge', jobId: 'j2', status: 'SUCCEEDED' });
    sqs
      .on(ReceiveMessageCommand)
      .resolvesOnce({
        Messages: [
          { MessageId: 'm1', ReceiptHandle: 'r1', Body: JSON.stringify(e1) },
          { MessageId: 'm2', ReceiptHandle: 'r2', Body: JSON.stringify(e2) },
          { MessageId: 'm3', ReceiptHandle: 'r3', Body: 'garbage' },
          { MessageId: 'm4', ReceiptHandle: 'r4', Body: JSON.stringify(runEnvelope(cancel)) },
        ],
      })
      .resolves({ Messages: [] });
    sqs.on(DeleteMessageBatchCommand).resolves({ Successful: [], Failed: [] });
    const handled: unknown[][] = [];
    const dead = new SqsDeadLetters({ client: new SQSClient({ region: REGION, credentials: CREDENTIALS }), queueUrl: dlq, log: silentLogger });
    const out = await dead.replay(async (events) => {
      handled.push(events);
      return { failedEventIds: ['b-2'] };
    });
    expect(handled).toEqual([[e1, e2]]);
    expect(out).toEqual({ received: 4, replayed: 1, failed: 1, left: 1 });
    expect(sqs.commandCalls(ReceiveMessageCommand)[0]!.args[0].input).toMatchObject({ QueueUrl: dlq, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 });
    const deleted = sqs.commandCalls(DeleteMessageBatchCommand).flatMap((c) => c.args[0].input.Entries!.map((e) => e.ReceiptHandle));
    expect(deleted.sort()).toEqual(['r1', 'r3']);
  });
});

describe('the deployed handler', () => {
  const saved = { ...process.env };
  afterEach(() => {
    process.env = { ...saved };
  });

  it('builds the system once per container: Slack token from Secrets Manager, AWS adapters from the environment', async () => {
    const { GetSecretValueCommand, SecretsManagerClient } = await import('@aws-sdk/client-secrets-manager');
    const sm = mockClient(SecretsManagerClient);
    try {
      sm.on(GetSecretValueCommand).resolves({ SecretString: JSON.stringify({ signingSecret: 'sig', botToken: 'xoxb-test' }) });
      Object.assign(process.env, testEnv(), { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'x', LOG_LEVEL: 'silent' });
      const { handler } = await import('../../src/lambda/events.js');
      const objectCreated = { version: '0', id: 's3-1', source: 'aws.s3', 'detail-type': 'Object Created', account: '123456789012', time: '2026-11-25T10:00:00Z', region: REGION, resources: [], detail: {} };
      expect(await handler(objectCreated)).toBeUndefined();
      expect(await handler(objectCreated)).toBeUndefined();
      expect(sm.commandCalls(GetSecretValueCommand).map((c) => c.args[0].input)).toEqual([{ SecretId: testEnv().STARFISH_SLACK_SECRET_ARN }]);
    } finally {
      sm.restore();
    }
  });
});
