/** The real Launcher on the AWS adapters, with S3 and Batch mocked at the command level. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BatchClient, ClientException, SubmitJobCommand, TerminateJobCommand } from '@aws-sdk/client-batch';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { S3Client } from '@aws-sdk/client-s3';
import { createAwsSystem } from '../../src/aws/system.js';
import { silentLogger } from '../../src/core.js';
import { listManifests } from '../../src/run/manifest-store.js';
import type { RunManifest } from '../../src/run/manifest.js';
import { CREDENTIALS, ManualClock, QUEUES, REGION, RecordingChat, fakeBatch, fakeS3, putExperiment, testEnv, type FakeBatch, type FakeS3 } from './helpers.js';

const clients = () => ({
  s3: new S3Client({ region: REGION, credentials: CREDENTIALS }),
  batch: new BatchClient({ region: REGION, credentials: CREDENTIALS }),
  eventBridge: new EventBridgeClient({ region: REGION, credentials: CREDENTIALS }),
});

describe('Launcher on the AWS adapters', () => {
  let s3: FakeS3;
  let batch: FakeBatch;
  let chat: RecordingChat;
  beforeEach(() => {
    s3 = fakeS3();
    batch = fakeBatch();
    chat = new RecordingChat();
  });
  afterEach(() => {
    s3.mock.restore();
    batch.mock.restore();
  });

  async function launch(fovs: number, env = testEnv()): Promise<RunManifest> {
    const { experiment, recipe } = putExperiment(s3, fovs);
    const system = createAwsSystem(chat, env, { clients: clients(), log: silentLogger, clock: new ManualClock() });
    await system.launcher.handle({ type: 'RunRequested', userId: 'U012ABCDEF', channel: 'C0STARFISH', request: { experiment, recipe, fovs: { kind: 'all' }, dryRun: false } });
    const [m] = await listManifests(system.store);
    return m!;
  }

  const env = (input: { containerOverrides?: { environment?: Array<{ name?: string; value?: string }> } }) =>
    Object.fromEntries((input.containerOverrides?.environment ?? []).map((e) => [e.name, e.value]));
  /** The FOVs a job reads: the list object its STARFISH_FOVS_AT names, as the launcher wrote it in S3. */
  const fovsOf = (input: Parameters<typeof env>[0]) => (JSON.parse(s3.text(env(input).STARFISH_FOVS_AT!)!) as { fovs: string }).fovs;

  it('1 FOV: one plain job (no arrayProperties) and a merge that depends on it', async () => {
    const m = await launch(1);
    const [fov, merge] = batch.submitted;
    expect(batch.submitted).toHaveLength(2);
    expect(fov!.jobName).toBe(`starfish-${m.runId}-fov`);
    expect(fov!.arrayProperties).toBeUndefined();
    expect(env(fov!)).toEqual({
      STARFISH_RUN_ID: m.runId,
      STARFISH_EXPERIMENT: 's3://lab-data/iss/experiment.json',
      STARFISH_RECIPE: `s3://lab-starfish-results/runs/${m.runId}/inputs/recipe.py`,
      STARFISH_FOVS_AT: `s3://lab-starfish-results/runs/${m.runId}/inputs/fovs-r0-0.json`,
      STARFISH_FOV_OUTPUT: `s3://lab-starfish-results/outputs/${m.runId}/fovs`,
    });
    expect(fovsOf(fov!)).toBe('0');
    expect(merge!.jobName).toBe(`starfish-${m.runId}-merge`);
    expect(merge!.dependsOn).toEqual([{ jobId: batch.byName('-fov').detail.jobId }]);
    expect(env(merge!)).toEqual({ STARFISH_RUN_ID: m.runId, STARFISH_RECIPE: `s3://lab-starfish-results/runs/${m.runId}/inputs/recipe.py`, STARFISH_FOVS_AT: `s3://lab-starfish-results/runs/${m.runId}/inputs/fovs-plan.json`, STARFISH_FOV_OUTPUT: `s3://lab-starfish-results/outputs/${m.runId}/fovs`, STARFISH_RESULTS_OUTPUT: `s3://lab-starfish-results/outputs/${m.runId}/results` });
    expect(fovsOf(merge!)).toBe('0');
    expect(m.status).toBe('running');
    // The recipe was snapshotted into the results bucket, where the jobs read it.
    expect(s3.text(`s3://lab-starfish-results/runs/${m.runId}/inputs/recipe.py`)).toContain('def process_fov');
  });

  it('2 FOVs: an array of 2 with tags, queue, job definition and propagateTags', async () => {
    const m = await launch(2);
    const fov = batch.submitted[0]!;
    expect(fov).toMatchObject({
      jobName: `starfish-${m.runId}-fov`,
      jobQueue: QUEUES.spot,
      jobDefinition: 'starfish-process-fov',
      arrayProperties: { size: 2 },
      tags: { 'starfish:run-id': m.runId, 'starfish:requester': 'U012ABCDEF' },
      propagateTags: true,
    });
    expect(batch.submitted[1]).toMatchObject({ jobDefinition: 'starfish-merge-results', tags: { 'starfish:run-id': m.runId } });
    expect(fovsOf(batch.submitted[1]!)).toBe('0-1');
  });

  it('10,000 FOVs: one array of 10,000', async () => {
    const m = await launch(10_000);
    expect(batch.submitted).toHaveLength(2);
    expect(batch.submitted[0]).toMatchObject({ jobName: `starfish-${m.runId}-fov`, arrayProperties: { size: 10_000 } });
    expect(fovsOf(batch.submitted[0]!)).toBe('0-9999');
    expect(batch.submitted[1]!.dependsOn).toHaveLength(1);
    expect(fovsOf(batch.submitted[1]!)).toBe('0-9999');
  });

  it('10,001 FOVs: two FOV jobs (an array of 10,000 and a plain job for FOV 10000); the merge depends on both', async () => {
    const m = await launch(10_001);
    expect(batch.submitted).toHaveLength(3);
    const [first, second, merge] = batch.submitted;
    expect(first).toMatchObject({ jobName: `starfish-${m.runId}-fov-0`, arrayProperties: { size: 10_000 } });
    expect(fovsOf(first!)).toBe('0-9999');
    expect(second!.jobName).toBe(`starfish-${m.runId}-fov-1`);
    expect(second!.arrayProperties).toBeUndefined();
    expect(fovsOf(second!)).toBe('10000');
    expect(merge!.dependsOn).toEqual([{ jobId: batch.byName('-fov-0').detail.jobId }, { jobId: batch.byName('-fov-1').detail.jobId }]);
    expect(fovsOf(merge!)).toBe('0-10000');
    expect(m.submissions[0]!.arrays.map((a) => a.jobId)).toEqual([batch.byName('-fov-0').detail.jobId, batch.byName('-fov-1').detail.jobId]);
  });

  it('orphan-free: the array is accepted, the merge refused → the array is terminated, the run failed with the reason, the thread told', async () => {
    batch.mock.on(SubmitJobCommand, { jobDefinition: 'starfish-merge-results' }).rejects(new ClientException({ message: 'Job queue is disabled', $metadata: { httpStatusCode: 400 } }));
    const m = await launch(4);
    const arrayId = batch.byName('-fov').detail.jobId!;
    expect(batch.mock.commandCalls(TerminateJobCommand).map((c) => c.args[0].input)).toEqual([{ jobId: arrayId, reason: `starfish: run ${m.runId} could not be fully submitted` }]);
    expect(m.status).toBe('failed');
    expect(m.statusReason).toBe('could not submit the jobs (Job queue is disabled); the 1 job(s) already submitted were terminated');
    const reply = chat.of('reply').at(-1)!;
    expect(reply.text).toContain(`Run ${m.runId} was not started: AWS Batch refused a job (Job queue is disabled). Nothing is left running.`);
    expect(chat.of('update').at(-1)!.text).toContain('Failed');
  });

  it('orphan-free across several arrays: the second array refused → the first terminated', async () => {
    batch.refuse = (input) => (input.jobName!.endsWith('-fov-1') ? new ClientException({ message: 'Too many requests', $metadata: { httpStatusCode: 429 } }) : undefined);
    const m = await launch(10_001);
    expect(batch.terminated.map((t) => t.jobId)).toEqual([batch.byName('-fov-0').detail.jobId]);
    expect(m.status).toBe('failed');
  });

  it('a run on a queue the deployment has no ARN for is refused at configuration time', () => {
    expect(() =>
      createAwsSystem(chat, testEnv({ STARFISH_POLICY_JSON: JSON.stringify({ queues: { default: 'spot', allowed: ['spot', 'gpu'] } }) }), { clients: clients(), log: silentLogger }),
    ).toThrow(/STARFISH_JOB_QUEUES has no job queue for "gpu"/);
  });
});
