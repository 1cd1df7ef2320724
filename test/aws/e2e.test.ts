/**
 * The core end to end on the AWS adapters, with the SDK mocked at the command level: a run
 * request through the events Lambda → manifest in S3 → SubmitJob → Batch-shaped state changes
 * through the SQS path → failure digest with a CloudWatch link → salvage merge → results with
 * presigned links; and the reconciler finishing a run whose merge event was lost.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runKeys } from '../../src/run/layout.js';
import { mockClient } from 'aws-sdk-client-mock';
import { BatchClient, DescribeJobsCommand, SubmitJobCommand } from '@aws-sdk/client-batch';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { S3Client } from '@aws-sdk/client-s3';
import { DeleteMessageBatchCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { createAwsSystem, type AwsSystem } from '../../src/aws/system.js';
import { createEventsHandler } from '../../src/lambda/events.js';
import { silentLogger } from '../../src/core.js';
import { listManifests, loadManifest } from '../../src/run/manifest-store.js';
import type { RunManifest } from '../../src/run/manifest.js';
import { CREDENTIALS, ManualClock, REGION, RecordingChat, batchEvent, fakeBatch, fakeS3, putExperiment, sqsRecords, testEnv, type FakeBatch, type FakeS3 } from './helpers.js';

const RESULTS = 's3://lab-starfish-results';
const STREAM = 'starfish-process-fov/default/4f0c2a9e8b7d4c1e9a3b5d6f7e8a9b0c';
const CONSOLE_LINK = `https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logsV2:log-groups/log-group/$252Faws$252Fbatch$252Fjob/log-events/starfish-process-fov$252Fdefault$252F4f0c2a9e8b7d4c1e9a3b5d6f7e8a9b0c`;

function summary(missing: number[], fovs = 4) {
  const processed = Array.from({ length: fovs }, (_, i) => i).filter((i) => !missing.includes(i));
  return {
    fovs_expected: fovs,
    fovs_processed: processed.length,
    fovs_missing: missing,
    failures: Object.fromEntries(missing.map((f) => [String(f), `FOV ${f}: recipe raised ValueError: no spots found in round 2`])),
    spots_total: processed.length * 80,
    spots_per_fov: Object.fromEntries(processed.map((f) => [String(f), 80])),
    counts_per_gene: { ACTB: processed.length * 50, GAPDH: processed.length * 30 },
  };
}

describe('end to end on the AWS adapters (SDK mocked)', () => {
  let s3: FakeS3;
  let batch: FakeBatch;
  let chat: RecordingChat;
  let clock: ManualClock;
  let system: AwsSystem;
  let handler: ReturnType<typeof createEventsHandler>;
  const sqs = mockClient(SQSClient);

  beforeEach(() => {
    s3 = fakeS3();
    batch = fakeBatch();
    chat = new RecordingChat();
    clock = new ManualClock();
    system = createAwsSystem(chat, testEnv(), {
      clients: {
        s3: new S3Client({ region: REGION, credentials: CREDENTIALS }),
        batch: new BatchClient({ region: REGION, credentials: CREDENTIALS }),
        eventBridge: new EventBridgeClient({ region: REGION, credentials: CREDENTIALS }),
        sqs: new SQSClient({ region: REGION, credentials: CREDENTIALS }),
      },
      log: silentLogger,
      clock,
    });
    handler = createEventsHandler(async () => system);
    sqs.reset();
    sqs.on(ReceiveMessageCommand).resolves({ Messages: [] });
  });
  afterEach(() => {
    s3.mock.restore();
    batch.mock.restore();
  });

  async function request(fovs: number): Promise<RunManifest> {
    const { experiment, recipe } = putExperiment(s3, fovs);
    const detail = { type: 'RunRequested', userId: 'U012ABCDEF', channel: 'C0STARFISH', request: { experiment, recipe, fovs: { kind: 'all' }, dryRun: false } };
    await handler({ version: '0', id: 'eb-run-1', source: 'starfish.chatops', 'detail-type': 'RunRequested', account: '123456789012', time: '2026-11-25T10:00:00Z', region: REGION, resources: [], detail });
    const [m] = await listManifests(system.store);
    return m!;
  }

  const manifest = async (runId: string) => (await loadManifest(system.store, runId))!.manifest;
  const text = (c: { message?: unknown }) => JSON.stringify(c.message);

  it('4 FOVs, one fails: digest with the CloudWatch link, salvage merge, partially-failed with presigned result links', async () => {
    // 1. The request: manifest in S3, the jobs in Batch, the root message in the channel.
    const m0 = await request(4);
    const runId = m0.runId;
    expect(m0.status).toBe('running');
    expect(s3.text(`${RESULTS}/runs/${runId}/run.json`)).toContain(`"runId": "${runId}"`);
    expect(batch.submitted.map((s) => s.jobName)).toEqual([`starfish-${runId}-fov`, `starfish-${runId}-merge`]);
    const arrayId = batch.byName('-fov').detail.jobId!;
    const mergeId = batch.byName('-merge').detail.jobId!;
    expect(batch.byName('-merge').input.dependsOn).toEqual([{ jobId: arrayId }]);
    expect(chat.of('post')).toHaveLength(1);
    expect(chat.of('post')[0]!.text).toContain(`starfish run ${runId}`);

    // 2. Children run; FOV 2 fails (process-fov wrote its reason next to the output).
    clock.advance(60_000);
    s3.put(`${RESULTS}/${runKeys(runId).fovErrorReason(2)}`, JSON.stringify({ fov: 2, reason: 'FOV 2: recipe raised ValueError: no spots found in round 2' }));
    const running = { size: 4, statusSummary: { SUBMITTED: 0, PENDING: 0, RUNNABLE: 0, STARTING: 0, RUNNING: 1, SUCCEEDED: 2, FAILED: 1 } };
    batch.set(arrayId, { status: 'RUNNING', startedAt: clock.now(), arrayProperties: running });
    const out1 = await handler(
      sqsRecords([
        batchEvent('ev-1', { jobName: `starfish-${runId}-fov`, jobId: arrayId, status: 'RUNNING', arrayProperties: running }),
        batchEvent('ev-2', {
          jobName: `starfish-${runId}-fov`,
          jobId: `${arrayId}:2`,
          status: 'FAILED',
          statusReason: 'Essential container in task exited',
          arrayProperties: { index: 2 },
          attempts: [{ container: { exitCode: 1, logStreamName: STREAM }, startedAt: clock.now() - 30_000, stoppedAt: clock.now(), statusReason: 'Essential container in task exited' }],
          container: { exitCode: 1, logStreamName: STREAM },
        }),
      ]),
    );
    expect(out1).toEqual({ batchItemFailures: [] });
    // DescribeJobs gave the progress (the array parent's summary), not the events.
    expect(batch.mock.commandCalls(DescribeJobsCommand).at(-1)!.args[0].input).toEqual({ jobs: [arrayId] });
    const m1 = await manifest(runId);
    expect(m1.progress).toEqual({ total: 4, succeeded: 2, failed: 1, running: 1, waiting: 0, firstEndedAt: new Date(clock.now()).toISOString() });
    expect(m1.failures).toEqual([{ fov: 2, round: 0, jobId: `${arrayId}:2`, reason: 'FOV 2: recipe raised ValueError: no spots found in round 2', kind: 'recipe', logLink: CONSOLE_LINK, reported: true }]);
    const digest = chat.of('reply').find((c) => c.text.includes('failed'))!;
    expect(digest.text).toMatch(/• FOV 2 log \(\S+\) — recipe raised ValueError: no spots found in round 2/);
    expect(text(digest)).toContain(CONSOLE_LINK);
    expect(chat.of('update').at(-1)!.text).toContain('2 succeeded · 1 failed of 4 FOVs');

    // 3. The array ends FAILED; Batch fails the dependent merge; a salvage merge is submitted.
    clock.advance(60_000);
    const ended = { size: 4, statusSummary: { SUCCEEDED: 3, FAILED: 1 } };
    batch.set(arrayId, { status: 'FAILED', stoppedAt: clock.now(), statusReason: 'Array Child Job failed', arrayProperties: ended });
    batch.set(mergeId, { status: 'FAILED', statusReason: 'Dependent Job failed', stoppedAt: clock.now() });
    const out2 = await handler(
      sqsRecords([
        batchEvent('ev-3', { jobName: `starfish-${runId}-fov`, jobId: arrayId, status: 'FAILED', statusReason: 'Array Child Job failed', arrayProperties: ended }),
        batchEvent('ev-4', { jobName: `starfish-${runId}-merge`, jobId: mergeId, status: 'FAILED', statusReason: 'Dependent Job failed' }),
      ]),
    );
    expect(out2).toEqual({ batchItemFailures: [] });
    const salvage = batch.byName('-merge-partial');
    expect(salvage.input).toMatchObject({ jobName: `starfish-${runId}-merge-partial`, jobDefinition: 'starfish-merge-results', tags: { 'starfish:run-id': runId } });
    expect(salvage.input.dependsOn).toBeUndefined();
    // The salvage merge expects the whole plan: the list object its STARFISH_FOVS_AT names.
    const fovsAt = salvage.input.containerOverrides!.environment!.find((e) => e.name === 'STARFISH_FOVS_AT')!.value!;
    expect(fovsAt).toBe(`${RESULTS}/runs/${runId}/inputs/fovs-plan.json`);
    expect(JSON.parse(s3.text(fovsAt)!)).toEqual({ fovs: '0-3' });
    expect((await manifest(runId)).status).toBe('merging');
    // The salvage merge was claimed with a conditional create.
    expect(s3.text(`${RESULTS}/runs/${runId}/claims/starfish-${runId}-merge-partial`)).toBeDefined();

    // 4. The salvage merge succeeds with the results in S3.
    clock.advance(60_000);
    s3.put(`${RESULTS}/${runKeys(runId).summaryJson}`, JSON.stringify(summary([2])));
    s3.put(`${RESULTS}/${runKeys(runId).spotsCsv}`, 'fov,x,y,z,target,quality\n0,1.00,2.00,0,ACTB,0.900\n');
    s3.put(`${RESULTS}/${runKeys(runId).spotsPng}`, Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]));
    batch.set(salvage.detail.jobId!, { status: 'SUCCEEDED', stoppedAt: clock.now() });
    const finalBatch = sqsRecords([
      batchEvent('ev-5', {
        jobName: `starfish-${runId}-merge-partial`,
        jobId: salvage.detail.jobId,
        status: 'SUCCEEDED',
        attempts: [{ container: { exitCode: 0, logStreamName: 'starfish-merge-results/default/0a1b' } }],
      }),
    ]);
    expect(await handler(finalBatch)).toEqual({ batchItemFailures: [] });
    const m4 = await manifest(runId);
    expect(m4.status).toBe('partially-failed');
    expect(m4.results).toEqual({ spotsTotal: 240, fovsProcessed: 3, fovsMissing: [2], topGenes: [['ACTB', 150], ['GAPDH', 90]] });
    const results = chat.of('reply').find((c) => c.text.includes('Results of run'))!;
    expect(results.text).toContain('240 spots from 3/4 FOVs');
    expect(results.text).toContain(`${RESULTS}/${runKeys(runId).spotsCsv}`);
    const links = [...text(results).matchAll(/<(https:\/\/lab-starfish-results\.s3\.us-east-1\.amazonaws\.com\/[^|>]+)\|download>/g)].map((x) => new URL(x[1]!));
    expect(links.map((u) => u.pathname)).toEqual([`/outputs/${runId}/results/spots.csv`, `/outputs/${runId}/results/summary.json`, `/outputs/${runId}/results/spots.png`]);
    for (const u of links) {
      expect(u.searchParams.get('X-Amz-Expires')).toBe('86400');
      expect(u.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
    }
    expect(chat.of('upload')).toEqual([expect.objectContaining({ filename: `${runId}-spots.png`, bytes: 7 })]);
    expect(chat.of('update').at(-1)!.text).toContain('Finished with failed FOVs');

    // 5. SQS redelivers the last batch: nothing new is posted.
    const calls = chat.calls.length;
    expect(await handler(finalBatch)).toEqual({ batchItemFailures: [] });
    expect(chat.calls.length).toBe(calls);
    expect(batch.mock.commandCalls(SubmitJobCommand)).toHaveLength(3);
  });

  it('2 FOVs, all succeed, the merge event is lost: the scheduled reconciler finishes the run from DescribeJobs', async () => {
    const { runId } = await request(2);
    const arrayId = batch.byName('-fov').detail.jobId!;
    const mergeId = batch.byName('-merge').detail.jobId!;
    clock.advance(60_000);
    const done = { size: 2, statusSummary: { SUCCEEDED: 2 } };
    batch.set(arrayId, { status: 'SUCCEEDED', stoppedAt: clock.now(), arrayProperties: done });
    expect(await handler(sqsRecords([batchEvent('ev-1', { jobName: `starfish-${runId}-fov`, jobId: arrayId, status: 'SUCCEEDED', arrayProperties: done })]))).toEqual({ batchItemFailures: [] });
    expect((await manifest(runId)).status).toBe('merging');

    // The merge ran and wrote its results, but its event never arrived.
    clock.advance(5 * 60_000);
    s3.put(`${RESULTS}/${runKeys(runId).summaryJson}`, JSON.stringify(summary([], 2)));
    s3.put(`${RESULTS}/${runKeys(runId).spotsCsv}`, 'fov,x,y,z,target,quality\n');
    s3.put(`${RESULTS}/${runKeys(runId).spotsPng}`, Buffer.from([0x89, 0x50, 0x4e, 0x47]));
    batch.set(mergeId, { status: 'SUCCEEDED', stoppedAt: clock.now() });
    const out = (await handler({ version: '0', id: 'sched-1', source: 'aws.events', 'detail-type': 'Scheduled Event', detail: {}, resources: [] })) as { reconcile: { recovered: string[] } };
    expect(out.reconcile.recovered).toEqual([runId]);
    expect(sqs.commandCalls(ReceiveMessageCommand)[0]!.args[0].input.QueueUrl).toBe(testEnv().STARFISH_DLQ_URL);
    const m = await manifest(runId);
    expect(m.status).toBe('succeeded');
    expect(chat.of('reply').some((c) => c.text.includes('160 spots from 2/2 FOVs'))).toBe(true);
    expect(chat.of('upload')).toHaveLength(1);
  });

  it('a merge that exits 0 without writing spots.png (a full disk) does not make the run succeed', async () => {
    const { runId } = await request(2);
    const mergeId = batch.byName('-merge').detail.jobId!;
    batch.set(batch.byName('-fov').detail.jobId!, { status: 'SUCCEEDED', stoppedAt: clock.now(), arrayProperties: { size: 2, statusSummary: { SUCCEEDED: 2 } } });
    s3.put(`${RESULTS}/${runKeys(runId).summaryJson}`, JSON.stringify(summary([], 2)));
    s3.put(`${RESULTS}/${runKeys(runId).spotsCsv}`, 'fov,x,y,z,target,quality\n');
    batch.set(mergeId, { status: 'SUCCEEDED', stoppedAt: clock.now() });
    await handler({ version: '0', id: 'sched-4', source: 'aws.events', 'detail-type': 'Scheduled Event', detail: {}, resources: [] });
    const m = await manifest(runId);
    expect(m.status).toBe('failed');
    expect(m.statusReason).toMatch(/the merge finished but spots\.png is missing from the results \(a full disk\?\); free space, then \/starfish retry/);
    expect(chat.of('reply').some((c) => c.text.includes('Results of run'))).toBe(false);
    expect(chat.of('reply').some((c) => c.text.includes('spots.png is missing'))).toBe(true);
  });

  it('the schedule replays a dead-lettered Batch event into the run, deletes it, and leaves a run event for a person', async () => {
    const { runId } = await request(2);
    const arrayId = batch.byName('-fov').detail.jobId!;
    const done = { size: 2, statusSummary: { SUCCEEDED: 1, FAILED: 1 } };
    batch.set(arrayId, { status: 'FAILED', stoppedAt: clock.now(), arrayProperties: done });
    const dead = batchEvent('dead-1', { jobName: `starfish-${runId}-fov`, jobId: `${arrayId}:1`, status: 'FAILED', statusReason: 'Essential container in task exited', arrayProperties: { index: 1 } });
    const runEvent = { version: '0', id: 'run-1', source: 'starfish.chatops', 'detail-type': 'RunRequested', detail: {} };
    sqs.on(ReceiveMessageCommand)
      .resolvesOnce({ Messages: [{ MessageId: 'm1', ReceiptHandle: 'r1', Body: JSON.stringify(dead) }, { MessageId: 'm2', ReceiptHandle: 'r2', Body: JSON.stringify(runEvent) }] })
      .resolves({ Messages: [] });
    sqs.on(DeleteMessageBatchCommand).resolves({ Successful: [{ Id: 'e0' }] });
    const out = (await handler({ version: '0', id: 'sched-2', source: 'aws.events', 'detail-type': 'Scheduled Event', detail: {}, resources: [] })) as { reconcile: { deadLetters: unknown } };
    expect(out.reconcile.deadLetters).toEqual({ received: 2, replayed: 1, failed: 0, left: 1 });
    expect(sqs.commandCalls(DeleteMessageBatchCommand)[0]!.args[0].input.Entries).toEqual([{ Id: 'e0', ReceiptHandle: 'r1' }]);
    expect((await manifest(runId)).failures.map((f) => f.fov)).toEqual([1]);
  });

  it('the schedule still reconciles when the dead-letter queue cannot be read', async () => {
    const { runId } = await request(2);
    sqs.on(ReceiveMessageCommand).rejects(new Error('AccessDenied'));
    const mergeId = batch.byName('-merge').detail.jobId!;
    batch.set(batch.byName('-fov').detail.jobId!, { status: 'SUCCEEDED', stoppedAt: clock.now(), arrayProperties: { size: 2, statusSummary: { SUCCEEDED: 2 } } });
    s3.put(`${RESULTS}/${runKeys(runId).summaryJson}`, JSON.stringify(summary([], 2)));
    s3.put(`${RESULTS}/${runKeys(runId).spotsCsv}`, 'fov,x,y,z,target,quality\n');
    s3.put(`${RESULTS}/${runKeys(runId).spotsPng}`, Buffer.from([0x89, 0x50, 0x4e, 0x47]));
    batch.set(mergeId, { status: 'SUCCEEDED', stoppedAt: clock.now() });
    const out = (await handler({ version: '0', id: 'sched-3', source: 'aws.events', 'detail-type': 'Scheduled Event', detail: {}, resources: [] })) as { reconcile: { recovered: string[]; deadLetters?: unknown } };
    expect(out.reconcile.deadLetters).toBeUndefined();
    expect(out.reconcile.recovered).toEqual([runId]);
    expect((await manifest(runId)).status).toBe('succeeded');
  });
});
