import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BatchClient, DescribeJobsCommand, ListJobsCommand, SubmitJobCommand, TerminateJobCommand, ClientException } from '@aws-sdk/client-batch';
import { APP_TAG, BatchExecutor, RETRY_STRATEGY, cloudWatchLogLink, consoleEscape } from '../../src/aws/batch-executor.js';
import { jobName } from '../../src/run/batch-event.js';
import type { Logger } from '../../src/core.js';
import { CREDENTIALS, QUEUES, REGION, fakeBatch, plantJob, type FakeBatch } from './helpers.js';

const spec = { runId: '261125-k3f9', requester: 'U012ABCDEF', queue: 'spot' };

function executor(options: Partial<ConstructorParameters<typeof BatchExecutor>[0]> = {}) {
  return new BatchExecutor({
    client: new BatchClient({ region: REGION, credentials: CREDENTIALS }),
    queues: QUEUES,
    fovJobDefinition: 'starfish-process-fov',
    mergeJobDefinition: 'starfish-merge-results',
    region: REGION,
    describeRetryMs: 0,
    ...options,
  });
}

/** The jobs of one run as the launcher names them (src/run/batch-event.ts). */
const fovName = (part?: number) => jobName(spec.runId, 'fov', 0, part);
const mergeName = jobName(spec.runId, 'merge');
const TAGS = { [APP_TAG.key]: APP_TAG.value, 'starfish:run-id': '261125-k3f9', 'starfish:requester': 'U012ABCDEF' };

describe('BatchExecutor', () => {
  let batch: FakeBatch;
  beforeEach(() => {
    batch = fakeBatch();
  });
  afterEach(() => batch.mock.restore());

  it('submits an array job with the queue ARN, job definition, environment, tags and the Spot retry strategy', async () => {
    const job = await executor().submitFovs(spec, { name: 'starfish-261125-k3f9-fov', size: 2, environment: { STARFISH_FOVS: '0-1', STARFISH_RUN_ID: '261125-k3f9' } });
    expect(job.jobName).toBe('starfish-261125-k3f9-fov');
    expect(batch.mock.commandCalls(SubmitJobCommand)[0]!.args[0].input).toEqual({
      jobName: 'starfish-261125-k3f9-fov',
      jobQueue: QUEUES.spot,
      jobDefinition: 'starfish-process-fov',
      arrayProperties: { size: 2 },
      containerOverrides: {
        environment: [
          { name: 'STARFISH_FOVS', value: '0-1' },
          { name: 'STARFISH_RUN_ID', value: '261125-k3f9' },
        ],
      },
      tags: { 'starfish:app': 'starfish-chatops', 'starfish:run-id': '261125-k3f9', 'starfish:requester': 'U012ABCDEF' },
      propagateTags: true,
      retryStrategy: { attempts: 3, evaluateOnExit: [{ onStatusReason: 'Host EC2*', action: 'RETRY' }, { onStatusReason: 'Your Spot Task was interrupted*', action: 'RETRY' }, { onReason: '*', action: 'EXIT' }] },
    });
    expect(RETRY_STRATEGY.attempts).toBe(3);
  });

  it('refuses, before sending, a job whose overrides pass the 8,192 characters ECS runs (Batch would accept it, then fail it)', async () => {
    const environment = { STARFISH_EXPERIMENT: `https://example.org/${'a'.repeat(8_200)}` };
    await expect(executor().submitFovs(spec, { name: 'starfish-261125-k3f9-fov', size: 2, environment })).rejects.toThrow(/container overrides are 82\d\d characters; AWS Batch runs at most 8192/);
    expect(batch.mock.commandCalls(SubmitJobCommand)).toEqual([]);
    // Just under: sent.
    await executor().submitFovs(spec, { name: 'starfish-261125-k3f9-fov', size: 2, environment: { STARFISH_EXPERIMENT: 'a'.repeat(8_000) } });
    expect(batch.mock.commandCalls(SubmitJobCommand)).toHaveLength(1);
  });

  it('submits one FOV as a plain job (no arrayProperties) and refuses sizes Batch does not accept', async () => {
    await executor().submitFovs(spec, { name: 'starfish-261125-k3f9-fov', size: 1, environment: {} });
    expect(batch.mock.commandCalls(SubmitJobCommand)[0]!.args[0].input.arrayProperties).toBeUndefined();
    await expect(executor().submitFovs(spec, { name: 'x', size: 10_001, environment: {} })).rejects.toThrow(/2 to 10000/);
    await expect(executor().submitFovs(spec, { name: 'x', size: 0, environment: {} })).rejects.toThrow(/2 to 10000/);
  });

  it("uses a queue's own job definitions where configured (EC2 queues refuse Fargate ones)", async () => {
    const ex = executor({ queues: { ...QUEUES, highmem: 'arn:aws:batch:eu-west-1:123456789012:job-queue/highmem' }, queueJobDefinitions: { highmem: { fov: 'fov-ec2', merge: 'merge-ec2' } } });
    await ex.submitFovs({ ...spec, queue: 'highmem' }, { name: 'n', size: 3, environment: {} });
    await ex.submitMerge({ ...spec, queue: 'highmem' }, { name: 'm', environment: {} }, ['j1']);
    await ex.submitFovs(spec, { name: 'n', size: 3, environment: {} });
    expect(batch.mock.commandCalls(SubmitJobCommand).map((c) => c.args[0].input.jobDefinition)).toEqual(['fov-ec2', 'merge-ec2', 'starfish-process-fov']);
  });

  it("sums how long an array's children ran from Batch's own start and stop of each (ListJobs pages of 1,000, both outcomes)", async () => {
    batch.mock.on(DescribeJobsCommand, { jobs: ['arr'] }).resolves({ jobs: [{ jobId: 'arr', jobName: 'n', jobQueue: 'q', jobDefinition: 'd', status: 'FAILED', startedAt: 1, arrayProperties: { size: 3 } }] });
    batch.mock
      .on(ListJobsCommand, { arrayJobId: 'arr', jobStatus: 'SUCCEEDED', maxResults: 1_000 })
      .resolvesOnce({ jobSummaryList: [{ jobId: 'arr:0', jobName: 'n', startedAt: 1_000, stoppedAt: 61_000 }], nextToken: 'p2' })
      .resolvesOnce({ jobSummaryList: [{ jobId: 'arr:1', jobName: 'n', startedAt: 2_000, stoppedAt: 32_500 }] });
    // A child that never started (no startedAt) ran no container.
    batch.mock.on(ListJobsCommand, { arrayJobId: 'arr', jobStatus: 'FAILED', maxResults: 1_000 }).resolves({ jobSummaryList: [{ jobId: 'arr:2', jobName: 'n', startedAt: 5_000, stoppedAt: 14_000 }, { jobId: 'arr:3', jobName: 'n', stoppedAt: 9_000 }] });
    expect(await executor().containerTimes('arr')).toEqual({ containers: 3, seconds: 60 + 30.5 + 9 });
    // A plain job is its own container.
    batch.mock.on(DescribeJobsCommand, { jobs: ['one'] }).resolves({ jobs: [{ jobId: 'one', jobName: 'n', jobQueue: 'q', jobDefinition: 'd', status: 'SUCCEEDED', startedAt: 10_000, stoppedAt: 55_000 }] });
    expect(await executor().containerTimes('one')).toEqual({ containers: 1, seconds: 45 });
  });

  it('lists the failed children of an array with their reasons and log streams (ListJobs, then DescribeJobs)', async () => {
    batch.mock.on(ListJobsCommand, { arrayJobId: 'arr', jobStatus: 'FAILED', maxResults: 1_000 }).resolvesOnce({ jobSummaryList: [{ jobId: 'arr:3', jobName: 'n' }], nextToken: 'p2' }).resolvesOnce({ jobSummaryList: [{ jobId: 'arr:11', jobName: 'n' }] });
    batch.mock.on(DescribeJobsCommand).resolves({
      jobs: [
        { jobId: 'arr:3', jobName: 'n', jobQueue: 'q', jobDefinition: 'd', status: 'FAILED', startedAt: 1, arrayProperties: { index: 3 }, attempts: [{ container: { exitCode: 1, reason: 'OutOfMemoryError: Container killed due to memory usage', logStreamName: 'process-fov/default/aaa' } }] },
        { jobId: 'arr:11', jobName: 'n', jobQueue: 'q', jobDefinition: 'd', status: 'FAILED', startedAt: 1, arrayProperties: { index: 11 }, statusReason: 'Essential container in task exited', container: { exitCode: 2, logStreamName: 'process-fov/default/bbb' } },
      ],
    });
    expect(await executor().failedChildren('arr')).toEqual([
      { index: 3, reason: 'OutOfMemoryError: Container killed due to memory usage, exit code 1', kind: 'memory', logStreamName: 'process-fov/default/aaa' },
      { index: 11, reason: 'Essential container in task exited, exit code 2', kind: 'recipe', logStreamName: 'process-fov/default/bbb' },
    ]);
    expect(batch.mock.commandCalls(ListJobsCommand).map((c) => c.args[0].input.nextToken)).toEqual([undefined, 'p2']);
  });

  it('resolves the queue by name, and names the configured queues when it is unknown', async () => {
    await executor().submitFovs({ ...spec, queue: 'ondemand' }, { name: 'n', size: 3, environment: {} });
    expect(batch.mock.commandCalls(SubmitJobCommand)[0]!.args[0].input.jobQueue).toBe(QUEUES.ondemand);
    await expect(executor().submitFovs({ ...spec, queue: 'gpu' }, { name: 'n', size: 3, environment: {} })).rejects.toThrow(
      'no AWS Batch job queue is configured for queue=gpu; configured: spot, ondemand (STARFISH_JOB_QUEUES)',
    );
  });

  it('submits the merge with its job definition and a plain dependency on each array (no N_TO_N)', async () => {
    await executor().submitMerge(spec, { name: 'starfish-261125-k3f9-merge', environment: { STARFISH_FOVS: '0-9' } }, ['a1', 'a2']);
    const input = batch.mock.commandCalls(SubmitJobCommand)[0]!.args[0].input;
    expect(input.jobDefinition).toBe('starfish-merge-results');
    expect(input.dependsOn).toEqual([{ jobId: 'a1' }, { jobId: 'a2' }]);
    expect(input.arrayProperties).toBeUndefined();
    expect(input.tags).toEqual(TAGS);
  });

  it('submits a salvage merge without dependsOn', async () => {
    await executor().submitMerge(spec, { name: 'starfish-261125-k3f9-merge-partial', environment: {} }, []);
    expect(batch.mock.commandCalls(SubmitJobCommand)[0]!.args[0].input.dependsOn).toBeUndefined();
  });

  it('refuses a merge with more than 20 dependencies (the Batch limit) before calling Batch', async () => {
    const ids = Array.from({ length: 21 }, (_, i) => `a${i}`);
    await expect(executor().submitMerge(spec, { name: 'm', environment: {} }, ids)).rejects.toThrow(/at most 20 jobs, and this merge would depend on 21/);
    expect(batch.mock.commandCalls(SubmitJobCommand)).toHaveLength(0);
    await executor().submitMerge(spec, { name: 'm', environment: {} }, ids.slice(0, 20));
    expect(batch.mock.commandCalls(SubmitJobCommand)[0]!.args[0].input.dependsOn).toHaveLength(20);
  });

  it('passes on what Batch refuses', async () => {
    batch.mock.on(SubmitJobCommand).rejects(new ClientException({ message: 'Job Queue is in DISABLED state', $metadata: { httpStatusCode: 400 } }));
    await expect(executor().submitFovs(spec, { name: 'n', size: 2, environment: {} })).rejects.toThrow('Job Queue is in DISABLED state');
  });

  it('describes jobs in chunks of 100, with array summaries and size for parents', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 250; i++) ids.push((await executor().submitFovs(spec, { name: `n${i}`, size: i === 0 ? 5 : 1, environment: {} })).jobId);
    batch.set(ids[0]!, { status: 'RUNNING', startedAt: Date.parse('2026-11-25T10:03:00Z'), arrayProperties: { size: 5, statusSummary: { SUCCEEDED: 2, RUNNING: 2, FAILED: 1, PENDING: 0 } } });
    const described = await executor().describe([...ids, 'unknown-job', ids[1]!]);
    const calls = batch.mock.commandCalls(DescribeJobsCommand).map((c) => c.args[0].input.jobs!.length);
    expect(calls).toEqual([100, 100, 51]);
    expect(described).toHaveLength(250);
    expect(described[0]).toEqual({
      jobId: ids[0],
      jobName: 'n0',
      status: 'RUNNING',
      statusSummary: { SUCCEEDED: 2, RUNNING: 2, FAILED: 1, PENDING: 0 },
      size: 5,
      since: Date.parse('2026-11-25T10:03:00Z'),
    });
    expect(described[1]).toEqual({ jobId: ids[1], jobName: 'n1', status: 'RUNNABLE', since: Date.parse('2026-11-25T10:00:00Z') });
  });

  it('dates a RUNNABLE merge from when its last dependency stopped, so a long run does not look stuck', async () => {
    const ex = executor();
    const a = await ex.submitFovs(spec, { name: 'a', size: 3, environment: {} });
    const m = await ex.submitMerge(spec, { name: 'm', environment: {} }, [a.jobId]);
    batch.set(a.jobId, { status: 'SUCCEEDED', stoppedAt: Date.parse('2026-11-25T13:00:00Z') });
    batch.set(m.jobId, { status: 'RUNNABLE' });
    // Only the merge asked about: its dependency is described too.
    const [merge] = await ex.describe([m.jobId]);
    expect(merge!.since).toBe(Date.parse('2026-11-25T13:00:00Z'));
    expect(batch.mock.commandCalls(DescribeJobsCommand).map((c) => c.args[0].input.jobs)).toEqual([[m.jobId], [a.jobId]]);
  });

  it('cancel terminates the array parents and the merge, skipping finished jobs', async () => {
    const ex = executor();
    const a = await ex.submitFovs(spec, { name: fovName(0), size: 3, environment: {} });
    const b = await ex.submitFovs(spec, { name: fovName(1), size: 3, environment: {} });
    const m = await ex.submitMerge(spec, { name: mergeName, environment: {} }, [a.jobId, b.jobId]);
    batch.set(b.jobId, { status: 'SUCCEEDED' });
    await ex.cancel([a.jobId, b.jobId, m.jobId], 'starfish: cancelled by U1');
    expect(batch.terminated.map((t) => t.jobId).sort()).toEqual([a.jobId, m.jobId].sort());
    expect(batch.terminated.every((t) => t.reason === 'starfish: cancelled by U1')).toBe(true);
  });

  it('cancel tries every job and then throws naming the ones it could not terminate', async () => {
    const ex = executor();
    const a = await ex.submitFovs(spec, { name: fovName(0), size: 3, environment: {} });
    const b = await ex.submitFovs(spec, { name: fovName(1), size: 3, environment: {} });
    batch.mock.on(TerminateJobCommand, { jobId: a.jobId }).rejects(new ClientException({ message: 'boom', $metadata: { httpStatusCode: 400 } }));
    await expect(ex.cancel([a.jobId, b.jobId], 'r')).rejects.toThrow(`could not terminate 1 AWS Batch job(s): ${a.jobId} (boom)`);
    expect(batch.terminated.map((t) => t.jobId)).toEqual([b.jobId]);
  });

  it('clips a cancel reason to the 1,024 characters TerminateJob accepts', async () => {
    const ex = executor();
    const a = await ex.submitFovs(spec, { name: fovName(), size: 3, environment: {} });
    await ex.cancel([a.jobId], 'x'.repeat(2000));
    expect(batch.terminated[0]!.reason).toHaveLength(1024);
  });
});

describe('BatchExecutor.cancel against planted job ids (issue 11: terminate only jobs this app submitted)', () => {
  let batch: FakeBatch;
  beforeEach(() => {
    batch = fakeBatch();
  });
  afterEach(() => batch.mock.restore());

  /** One of our runs, with an array and a merge really submitted through the executor. */
  async function ourRun(ex: BatchExecutor) {
    const a = await ex.submitFovs(spec, { name: fovName(), size: 3, environment: {} });
    const m = await ex.submitMerge(spec, { name: mergeName, environment: {} }, [a.jobId]);
    return [a.jobId, m.jobId];
  }

  // Each foreign job differs from ours in one thing an attacker cannot fake from a planted id alone.
  const FOREIGN: Array<[string, Parameters<typeof plantJob>[2]]> = [
    ['another team’s job (no starfish name, no tags)', { jobName: 'nightly-etl', jobQueue: QUEUES.spot }],
    ['a starfish-named job without the app tag', { jobName: fovName(), jobQueue: QUEUES.spot, tags: { 'starfish:run-id': spec.runId } }],
    ['the app tag with another value', { jobName: fovName(), jobQueue: QUEUES.spot, tags: { ...TAGS, [APP_TAG.key]: 'someone-else' } }],
    ['a run-id tag that is not the run in its name', { jobName: jobName('261125-zzzz', 'fov'), jobQueue: QUEUES.spot, tags: TAGS }],
    ['all the right name and tags, on a queue of another deployment', { jobName: fovName(), jobQueue: `arn:aws:batch:${REGION}:123456789012:job-queue/other-stack-spot`, tags: TAGS }],
  ];

  it.each(FOREIGN)('refuses %s: logged, never terminated, and named in the error, while our own jobs are terminated', async (_what, detail) => {
    const logged: Array<{ obj: object; msg?: string }> = [];
    const log: Logger = { error: (obj, msg) => void logged.push({ obj, msg }), warn() {}, info() {} };
    const ex = executor({ log });
    const ours = await ourRun(ex);
    plantJob(batch, 'victim-0001', detail);
    await expect(ex.cancel([...ours, 'victim-0001'], 'starfish: cancelled by U1')).rejects.toThrow(/could not terminate 1 AWS Batch job\(s\): victim-0001 \(not terminated: /);
    expect(batch.mock.commandCalls(TerminateJobCommand).map((c) => c.args[0].input.jobId)).not.toContain('victim-0001');
    expect(batch.terminated.map((t) => t.jobId).sort()).toEqual([...ours].sort());
    expect(logged).toEqual([{ obj: expect.objectContaining({ jobId: 'victim-0001' }), msg: 'refusing to terminate a job this app did not submit' }]);
  });

  it('refuses a job id Batch does not know, after describing it a second time (a job just submitted may not be visible yet)', async () => {
    const ex = executor();
    const ours = await ourRun(ex);
    await expect(ex.cancel([...ours, 'no-such-job'], 'r')).rejects.toThrow('no-such-job (not terminated: DescribeJobs does not know it, so it cannot be checked)');
    expect(batch.terminated.map((t) => t.jobId).sort()).toEqual([...ours].sort());
    expect(batch.mock.commandCalls(DescribeJobsCommand).map((c) => c.args[0].input.jobs)).toEqual([[...ours, 'no-such-job'], ['no-such-job']]);
  });

  it('terminates a job that becomes visible on the second look', async () => {
    const ex = executor();
    const [a] = await ourRun(ex);
    batch.mock.on(DescribeJobsCommand).resolvesOnce({ jobs: [] }).callsFake(async (input: { jobs: string[] }) => ({ jobs: input.jobs.map((id) => batch.jobs.get(id)!.detail) }));
    await ex.cancel([a!], 'r');
    expect(batch.terminated.map((t) => t.jobId)).toEqual([a]);
  });

  it('terminates nothing when Batch cannot be asked who the jobs belong to', async () => {
    const ex = executor();
    const ours = await ourRun(ex);
    batch.mock.on(DescribeJobsCommand).rejects(new ClientException({ message: 'Rate exceeded', $metadata: { httpStatusCode: 429 } }));
    await expect(ex.cancel(ours, 'r')).rejects.toThrow('could not check 2 AWS Batch job(s) before terminating them, so none was terminated: Rate exceeded');
    expect(batch.mock.commandCalls(TerminateJobCommand)).toHaveLength(0);
  });

  it('accepts our queues given by name as well as by ARN', async () => {
    const ex = executor({ queues: { spot: 'starfish-spot', ondemand: 'starfish-ondemand' } });
    plantJob(batch, 'ours-by-arn', { jobName: fovName(), jobQueue: QUEUES.spot, tags: TAGS });
    await ex.cancel(['ours-by-arn'], 'r');
    expect(batch.terminated.map((t) => t.jobId)).toEqual(['ours-by-arn']);
  });

  it('tags every submission with the app tag IAM conditions TerminateJob on', async () => {
    const ex = executor();
    await ourRun(ex);
    for (const call of batch.mock.commandCalls(SubmitJobCommand)) expect(call.args[0].input.tags).toMatchObject({ [APP_TAG.key]: APP_TAG.value });
  });
});

describe('BatchExecutor log links', () => {
  it('links to a log stream in the CloudWatch console, escaped the console way', () => {
    expect(executor().logLink('starfish-process-fov/default/0123456789abcdef')).toBe(
      'https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logsV2:log-groups/log-group/$252Faws$252Fbatch$252Fjob/log-events/starfish-process-fov$252Fdefault$252F0123456789abcdef',
    );
    expect(cloudWatchLogLink('eu-west-1', '/custom/group', 'a b/c$[1]')).toBe(
      'https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logsV2:log-groups/log-group/$252Fcustom$252Fgroup/log-events/a$2520b$252Fc$2524$255B1$255D',
    );
    expect(executor({ logGroup: '/aws/batch/starfish' }).logLink('s')).toContain('log-group/$252Faws$252Fbatch$252Fstarfish/log-events/s');
    expect(consoleEscape('/')).toBe('$252F');
  });
});
