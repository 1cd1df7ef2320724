/**
 * The main flows of the AWS backend on the wire: createAwsSystem with the real S3, Batch,
 * EventBridge and SQS clients of SDK v3, pointed at a recording endpoint on loopback
 * (./endpoint.ts), so that the SDK's own serialization runs and every request is judged as AWS
 * would receive it against AWS's documented limits (./limits.ts names each limit's source):
 * container overrides ≤ 8,192 characters, SubmitJob ≤ 30 KiB, arrays of 2 to 10,000, at most 20
 * dependencies, DescribeJobs ≤ 100 ids, PutEvents ≤ 10 entries and 256 KB, S3 keys ≤ 1,024 bytes.
 *
 * Besides the limits, what a person would notice: the jobs got the right FOVs (the
 * STARFISH_FOVS_AT objects are read back from the endpoint's S3), the failed FOV was retried, the
 * salvage merge expected the whole plan, the cancel terminated every job.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DescribeJobsCommand, SubmitJobCommand } from '@aws-sdk/client-batch';
import { PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { createAwsSystem, type AwsSystem } from '../../../src/aws/system.js';
import { BatchExecutor, SUBMIT_LIMITS } from '../../../src/aws/batch-executor.js';
import { createEventsHandler } from '../../../src/lambda/events.js';
import { silentLogger } from '../../../src/core.js';
import { dispatch } from '../../../src/command/dispatcher.js';
import { listManifests, loadManifest } from '../../../src/run/manifest-store.js';
import type { RunManifest } from '../../../src/run/manifest.js';
import { runKeys } from '../../../src/run/layout.js';
import { expandRanges } from '../../../src/run/fov-ranges.js';
import { ManualClock, QUEUES, RecordingChat, batchEvent, sqsRecords, testEnv } from '../helpers.js';
import { AwsEndpoint, type SubmitJobInputJson } from './endpoint.js';
import { LIMITS, putEventsEntrySize, violations } from './limits.js';

const RESULTS = 's3://lab-starfish-results';
const DATA = 's3://lab-data';
const STREAM = (fov: number) => `starfish-process-fov/default/${String(fov).padStart(32, '0')}`;

/**
 * The v5-flat case of the shared SpaceTx table (test/fixtures/spacetx/cases.json, written from
 * starfish's and slicedimage's sources): its experiment.json, codebook and first FOV's tile list.
 */
interface SpacetxCase {
  name: string;
  files: Record<string, unknown>;
}
const CASES = (JSON.parse(readFileSync(path.join(__dirname, '../../fixtures/spacetx/cases.json'), 'utf8')) as { cases: SpacetxCase[] }).cases;
const V5_FLAT = CASES.find((c) => c.name === 'v5-flat')!;
const fileOf = (rel: string) => V5_FLAT.files[rel] as Record<string, unknown> | { bytes: string };

/** FOV names as the lab writes them: fov_ and five digits (the FOV number is the run's index). */
const fovName = (fov: number) => `fov_${String(fov).padStart(5, '0')}`;

/**
 * A SpaceTx experiment with the given FOVs in the endpoint's S3: experiment.json, codebook and
 * the FOV tile list as in v5-flat, the primary image collection naming every FOV (each FOV's
 * tile list is the same document; only the first is read when planning).
 */
function putExperiment(endpoint: AwsEndpoint, fovs: number[], base = `${DATA}/iss`): { experiment: string; recipe: string } {
  const tileset = fileOf('primary_images-fov_000.json');
  endpoint.s3.put(`${base}/experiment.json`, JSON.stringify(fileOf('experiment.json')));
  endpoint.s3.put(`${base}/codebook.json`, JSON.stringify(fileOf('codebook.json')));
  const contents = Object.fromEntries(fovs.map((f) => [fovName(f), `primary_images-${fovName(f)}.json`]));
  endpoint.s3.put(`${base}/primary_images.json`, JSON.stringify({ version: '0.1.0', contents, extras: null }));
  endpoint.s3.put(`${base}/primary_images-${fovName(fovs[0]!)}.json`, JSON.stringify(tileset));
  endpoint.s3.put(`${DATA}/recipes/iss.py`, 'def process_fov(fov_index, experiment_url):\n    return []\n');
  return { experiment: `${base}/experiment.json`, recipe: `${DATA}/recipes/iss.py` };
}

const envOf = (job: SubmitJobInputJson) => Object.fromEntries((job.containerOverrides?.environment ?? []).map((e) => [e.name, e.value]));

describe('the AWS backend on the wire, against AWS limits', () => {
  let endpoint: AwsEndpoint;
  let chat: RecordingChat;
  let clock: ManualClock;
  let system: AwsSystem;
  let handler: ReturnType<typeof createEventsHandler>;
  let clients: ReturnType<AwsEndpoint['clients']>;

  beforeEach(async () => {
    clock = new ManualClock();
    endpoint = new AwsEndpoint(clock.now);
    await endpoint.start();
    chat = new RecordingChat();
    clients = endpoint.clients();
    system = createAwsSystem(chat, testEnv(), { clients, log: silentLogger, clock });
    handler = createEventsHandler(async () => system);
  });
  afterEach(async () => {
    for (const client of Object.values(clients)) client.destroy();
    await endpoint.close();
  });

  /** No request broke a limit; on failure the message names each limit and its source. */
  const expectWithinLimits = () => expect(violations(endpoint.requests)).toEqual([]);

  /** The FOVs a job processes: the list its STARFISH_FOVS_AT object holds, read back from S3. */
  const fovsOf = (job: SubmitJobInputJson): number[] => {
    const at = envOf(job).STARFISH_FOVS_AT!;
    const text = endpoint.s3.text(at);
    if (text === undefined) throw new Error(`${job.jobName}'s STARFISH_FOVS_AT ${at} names no object`);
    return expandRanges((JSON.parse(text) as { fovs: string }).fovs);
  };

  const manifest = async (runId: string): Promise<RunManifest> => (await loadManifest(system.store, runId))!.manifest;

  const caller = { userId: 'U012ABCDEF', channel: 'C0STARFISH' };

  /** A PutEvents entry as EventBridge's rule hands it to the events Lambda. */
  const delivered = (entry: Record<string, unknown>, id: number) => ({
    version: '0',
    id: `eb-${id}`,
    source: entry.Source,
    'detail-type': entry.DetailType,
    account: '123456789012',
    time: new Date(clock.now()).toISOString(),
    region: 'us-east-1',
    resources: entry.Resources ?? [],
    detail: JSON.parse(entry.Detail as string) as unknown,
  });

  /** A typed /starfish command the Slack way: dispatched, published with PutEvents, delivered. */
  async function command(text: string): Promise<void> {
    const before = endpoint.events.length;
    const answer = await dispatch(system.dispatchDeps, text, caller);
    if (answer.refused) throw new Error(`/starfish ${text.slice(0, 80)} was refused: ${JSON.stringify(answer.message)}`);
    for (const [i, entry] of endpoint.events.slice(before).entries()) await handler(delivered(entry, before + i));
  }

  /**
   * Launches a run over the experiment's FOVs: `/starfish run` for fovs=all; a selection longer
   * than the grammar reads (4,000 characters) goes straight onto the bus as a RunRequested event.
   */
  async function launch(fovs: number[], selection?: Array<[number, number]>, base?: string): Promise<RunManifest> {
    const { experiment, recipe } = putExperiment(endpoint, fovs, base);
    if (!selection) await command(`run ${experiment} recipe=${recipe}`);
    else await system.bus.publish({ type: 'RunRequested', ...caller, request: { experiment, recipe, fovs: { kind: 'list', ranges: selection }, dryRun: false } });
    if (selection) await handler(delivered(endpoint.events.at(-1)!, endpoint.events.length));
    const [m] = await listManifests(system.store);
    if (!m) throw new Error(`no run was created; the chat says: ${chat.calls.map((c) => c.text).join(' | ')}`);
    return m;
  }

  /** Each SubmitJob's overrides and payload, for the assertions that show the margins. */
  const sizes = () =>
    endpoint.of('batch', 'SubmitJob').map((r) => ({ overrides: JSON.stringify((JSON.parse(r.body.toString('utf8')) as SubmitJobInputJson).containerOverrides).length, payload: r.body.length }));

  describe('the limit checker', () => {
    it('finds what AWS would refuse in requests the real SDK sent: it cannot pass vacuously', async () => {
      const { batch, eventBridge, s3 } = clients;
      // Straight through the SDK, past the app's own checks.
      const big = 'x'.repeat(9_000);
      // Batch refuses an array past 10,000 children, and a payload past 30 KiB, outright …
      await expect(
        batch.send(new SubmitJobCommand({ jobName: 'starfish-261125-k3f9-fov', jobQueue: 'q', jobDefinition: 'd', arrayProperties: { size: 10_001 }, containerOverrides: { environment: [{ name: 'STARFISH_FOVS', value: big }] } })),
      ).rejects.toMatchObject({ name: 'ClientException' });
      await expect(batch.send(new SubmitJobCommand({ jobName: 'n', jobQueue: 'q', jobDefinition: 'd', containerOverrides: { environment: Array.from({ length: 4 }, (_, i) => ({ name: `V${i}`, value: big })) } }))).rejects.toMatchObject({
        name: 'ClientException',
      });
      // … but takes overrides past 8,192 characters: the job then fails to start.
      const accepted = await batch.send(new SubmitJobCommand({ jobName: 'starfish-261125-k3f9-merge', jobQueue: 'q', jobDefinition: 'd', containerOverrides: { environment: [{ name: 'STARFISH_EXPECTED_FOVS', value: big }] } }));
      expect(endpoint.batch.find(accepted.jobId!)).toMatchObject({ status: 'FAILED', statusReason: 'Container Overrides length must be at most 8192' });
      await expect(batch.send(new DescribeJobsCommand({ jobs: Array.from({ length: 101 }, (_, i) => `job-${i}`) }))).rejects.toMatchObject({ name: 'ClientException' });
      await eventBridge.send(new PutEventsCommand({ Entries: [{ Source: 'starfish.chatops', DetailType: 'RunRequested', Detail: JSON.stringify({ big: 'é'.repeat(131_100) }) }] }));
      // S3 itself refuses a key past 1,024 bytes.
      await expect(s3.send(new PutObjectCommand({ Bucket: 'lab-starfish-results', Key: `experiments/${'k'.repeat(1_020)}.json`, Body: '{}' }))).rejects.toMatchObject({ name: 'KeyTooLongError' });

      const found = violations(endpoint.requests).map((v) => [v.operation, v.limit]);
      expect(found).toEqual([
        ['SubmitJob', 'overridesChars'],
        ['SubmitJob', 'arraySizeMax'],
        ['SubmitJob', 'submitPayloadBytes'],
        ['SubmitJob', 'overridesChars'],
        ['SubmitJob', 'overridesChars'],
        ['DescribeJobs', 'describeJobsIds'],
        ['PutEvents', 'putEventsEntryBytes'],
        ['PutObject', 's3KeyBytes'],
      ]);
      // Each violation names where AWS documents the limit.
      expect(violations(endpoint.requests)[0]!.source).toMatch(/Amazon ECS API Reference, RunTask/);
      expect(violations(endpoint.requests)[2]!.source).toMatch(/AWS Batch service quotas/);
      expect(violations(endpoint.requests).at(-1)!.source).toMatch(/Amazon S3 User Guide/);
    });

    it('the executor checks the same limits where it builds the request: an oversized job is refused before it is sent, naming the job', async () => {
      expect(SUBMIT_LIMITS).toEqual({ overridesChars: LIMITS.overridesChars.max, payloadBytes: LIMITS.submitPayloadBytes.max });
      const executor = new BatchExecutor({ client: clients.batch, queues: QUEUES, fovJobDefinition: 'starfish-process-fov', mergeJobDefinition: 'starfish-merge-results', region: 'us-east-1' });
      const environment = { STARFISH_EXPERIMENT: `https://data.example.org/${'a'.repeat(8_200)}/experiment.json` };
      await expect(executor.submitFovs({ runId: '261125-k3f9', requester: 'U012ABCDEF', queue: 'spot' }, { name: 'starfish-261125-k3f9-fov', size: 2, environment })).rejects.toThrow(
        /starfish-261125-k3f9-fov's container overrides are 8,?\d{3} characters; AWS Batch runs at most 8,?192/,
      );
      expect(endpoint.of('batch', 'SubmitJob')).toEqual([]);
    });

    it('counts a PutEvents entry as EventBridge documents it: Time 14 bytes, the rest their UTF-8 bytes', () => {
      expect(putEventsEntrySize({ Source: 'starfish.chatops', DetailType: 'RunRequested', Detail: '{"a":"é"}' })).toBe(16 + 12 + 10);
      expect(putEventsEntrySize({ Time: 1, Source: 's', DetailType: 'd', Detail: '', Resources: ['arn:x', 'é'] })).toBe(14 + 1 + 1 + 5 + 2);
    });
  });

  describe('launch', () => {
    it.each([
      { fovs: 1, arrays: [1] },
      { fovs: 2, arrays: [2] },
      { fovs: 10_000, arrays: [10_000] },
      { fovs: 25_000, arrays: [10_000, 10_000, 5_000] },
    ])('$fovs FOVs: arrays of $arrays, each job reads its FOVs from S3, every request within the limits', async ({ fovs, arrays }) => {
      const all = Array.from({ length: fovs }, (_, i) => i);
      const m = await launch(all);
      expect(m.status).toBe('running');
      const jobs = endpoint.submitted();
      const fovJobs = jobs.filter((j) => j.jobName.includes('-fov'));
      const merge = jobs.find((j) => j.jobName === `starfish-${m.runId}-merge`)!;
      // A single FOV is a plain job: Batch refuses an array of 1.
      expect(fovJobs.map((j) => j.arrayProperties?.size ?? 1)).toEqual(arrays);
      if (fovs === 1) expect(fovJobs[0]!.arrayProperties).toBeUndefined();
      // Child i of each array processes the i-th FOV of its list: together, every FOV once, in order.
      expect(fovJobs.flatMap(fovsOf)).toEqual(all);
      fovJobs.forEach((j) => expect(fovsOf(j)).toHaveLength(j.arrayProperties?.size ?? 1));
      // The merge waits for every array and expects the whole plan.
      expect(merge.dependsOn).toEqual(fovJobs.map((j) => ({ jobId: endpoint.batch.byName(j.jobName).jobId })));
      expect(fovsOf(merge)).toEqual(all);
      expectWithinLimits();
    }, 30_000);
  });

  it('a selection of 10,000 FOVs with a gap after each (10,000 ranges of 20,000 FOVs): the jobs get exactly those, every request within the limits', async () => {
    const all = Array.from({ length: 20_000 }, (_, i) => i);
    const chosen = all.filter((f) => f % 2 === 1);
    const m = await launch(all, chosen.map((f) => [f, f]));
    const [array, merge] = endpoint.submitted();
    expect(array!.arrayProperties).toEqual({ size: 10_000 });
    expect(fovsOf(array!)).toEqual(chosen);
    expect(fovsOf(merge!)).toEqual(chosen);
    expect(m.plan.fovCount).toBe(10_000);
    expectWithinLimits();
  }, 30_000);

  it('an experiment at the longest S3 key: the FOV jobs\' overrides stay far below 8,192 characters, even were the URL a 2,048-character https one', async () => {
    // Its longest file's key is 1,024 bytes, the most S3 has (the grammar refuses longer ones).
    const folder = 'd'.repeat(1_024 - `/primary_images-${fovName(0)}.json`.length);
    const m = await launch([0, 1, 2], undefined, `${DATA}/${folder}`);
    expect(m.inputs.experiment).toBe(`${DATA}/${folder}/experiment.json`);
    const [fov] = endpoint.submitted();
    expect(envOf(fov!).STARFISH_EXPERIMENT).toBe(m.inputs.experiment);
    const overrides = JSON.stringify(fov!.containerOverrides).length;
    // The only part that grows with what a person types is the experiment location, capped at
    // 2,048 characters (src/command/grammar.ts); Batch adds its own AWS_BATCH_* variables too.
    expect(overrides + (2_048 - m.inputs.experiment.length)).toBeLessThan(LIMITS.overridesChars.max / 2);
    expectWithinLimits();
  });

  it('200,001 FOVs would need 21 arrays, more than one merge may wait for: refused at planning, nothing reaches Batch, the person is told how to split', async () => {
    await expect(launch(Array.from({ length: 200_001 }, (_, i) => i))).rejects.toThrow(/no run was created/);
    expect(endpoint.of('batch', 'SubmitJob')).toEqual([]);
    expect(chat.calls.map((c) => c.text).join('\n')).toMatch(/these are 200,001 FOVs; one run takes at most 200,000 .*e\.g\. fovs=0-199999 first/);
    expectWithinLimits();
  }, 30_000);

  describe('a 10,000-FOV run numbered at every other index (0, 2, …, 19998)', () => {
    const gapped = Array.from({ length: 10_000 }, (_, i) => 2 * i);

    it('launched, one FOV failed, salvage-merged, then retried: every SubmitJob within both limits, each job with the right FOVs', async () => {
      const m0 = await launch(gapped);
      const { runId } = m0;
      // The range text alone is ~49,000 characters: it reaches the jobs through S3.
      expect(m0.plan.fovs.length).toBeGreaterThan(40_000);
      const array = endpoint.batch.byName(`starfish-${runId}-fov`);
      const merge = endpoint.batch.byName(`starfish-${runId}-merge`);
      expect(fovsOf(endpoint.submitted()[0]!)).toEqual(gapped);

      // Child 1 (FOV 2) fails; process-fov wrote its reason next to the output.
      clock.advance(60_000);
      endpoint.s3.put(`${RESULTS}/${runKeys(runId).fovErrorReason(2)}`, JSON.stringify({ fov: 2, reason: 'FOV 2: recipe raised ValueError: no spots found' }));
      const ended = { size: 10_000, statusSummary: { SUBMITTED: 0, PENDING: 0, RUNNABLE: 0, STARTING: 0, RUNNING: 0, SUCCEEDED: 9_999, FAILED: 1 } };
      endpoint.batch.set(array.jobId, { status: 'FAILED', stoppedAt: clock.now(), statusReason: 'Array Child Job failed', arrayProperties: ended });
      endpoint.batch.set(merge.jobId, { status: 'FAILED', stoppedAt: clock.now(), statusReason: 'Dependent Job failed' });
      const child = { jobName: `starfish-${runId}-fov`, jobId: `${array.jobId}:1`, status: 'FAILED', statusReason: 'Essential container in task exited', arrayProperties: { index: 1 }, container: { exitCode: 1, logStreamName: STREAM(2) } };
      const out = await handler(
        sqsRecords([
          batchEvent('ev-1', child),
          batchEvent('ev-2', { jobName: `starfish-${runId}-fov`, jobId: array.jobId, status: 'FAILED', statusReason: 'Array Child Job failed', arrayProperties: ended }),
          batchEvent('ev-3', { jobName: `starfish-${runId}-merge`, jobId: merge.jobId, status: 'FAILED', statusReason: 'Dependent Job failed' }),
        ]),
      );
      expect(out).toEqual({ batchItemFailures: [] });
      expect((await manifest(runId)).failures.map((f) => f.fov)).toEqual([2]);

      // The salvage merge expects the whole plan: all 10,000 gapped FOVs, from S3.
      const salvage = endpoint.submitted().find((j) => j.jobName === `starfish-${runId}-merge-partial`)!;
      expect(salvage.dependsOn).toBeUndefined();
      expect(fovsOf(salvage)).toEqual(gapped);
      expect((await manifest(runId)).status).toBe('merging');

      // The salvage merge succeeds: the run is partially-failed.
      clock.advance(60_000);
      const summary = { fovs_expected: 10_000, fovs_processed: 9_999, fovs_missing: [2], failures: { '2': 'no spots found' }, spots_total: 9_999, spots_per_fov: {}, counts_per_gene: { ACTB: 9_999 } };
      endpoint.s3.put(`${RESULTS}/${runKeys(runId).summaryJson}`, JSON.stringify(summary));
      endpoint.s3.put(`${RESULTS}/${runKeys(runId).spotsCsv}`, 'fov,x,y,z,target,quality\n');
      endpoint.s3.put(`${RESULTS}/${runKeys(runId).spotsPng}`, Buffer.from([0x89, 0x50, 0x4e, 0x47]));
      const salvageJob = endpoint.batch.byName(`starfish-${runId}-merge-partial`);
      endpoint.batch.set(salvageJob.jobId, { status: 'SUCCEEDED', stoppedAt: clock.now() });
      await handler(sqsRecords([batchEvent('ev-4', { jobName: salvageJob.jobName, jobId: salvageJob.jobId, status: 'SUCCEEDED' })]));
      expect((await manifest(runId)).status).toBe('partially-failed');

      // Retry: FOV 2 alone, as a plain job; its merge again expects the whole plan.
      await command(`retry ${runId}`);
      const retried = endpoint.submitted().find((j) => j.jobName === `starfish-${runId}-r1-fov`)!;
      expect(retried.arrayProperties).toBeUndefined();
      expect(fovsOf(retried)).toEqual([2]);
      const retryMerge = endpoint.submitted().find((j) => j.jobName === `starfish-${runId}-r1-merge`)!;
      expect(retryMerge.dependsOn).toEqual([{ jobId: endpoint.batch.byName(retried.jobName).jobId }]);
      expect(fovsOf(retryMerge)).toEqual(gapped);
      expect((await manifest(runId)).status).toBe('running');

      // Launch, salvage, retry and its merge: five SubmitJobs, each far inside both limits.
      expect(endpoint.of('batch', 'SubmitJob')).toHaveLength(5);
      for (const { overrides, payload } of sizes()) {
        expect(overrides).toBeLessThan(LIMITS.overridesChars.max / 4);
        expect(payload).toBeLessThan(LIMITS.submitPayloadBytes.max / 4);
      }
      expectWithinLimits();
    }, 30_000);
  });

  it('cancel of a 25,000-FOV run: every job checked (DescribeJobs ≤ 100 ids) and terminated with a reason AWS takes', async () => {
    const { runId } = await launch(Array.from({ length: 25_000 }, (_, i) => i));
    const ids = [...endpoint.batch.jobs.values()].map((j) => j.jobId);
    expect(ids).toHaveLength(4);
    await command(`cancel ${runId}`);
    const terminated = endpoint.of('batch', 'TerminateJob').map((r) => JSON.parse(r.body.toString('utf8')) as { jobId: string; reason: string });
    expect(terminated.map((t) => t.jobId).sort()).toEqual([...ids].sort());
    expect((await manifest(runId)).status).toBe('cancelled');
    expectWithinLimits();
  }, 30_000);

  it('reconcile after lost events: 250 failed children found through ListJobs pages and DescribeJobs of at most 100 ids', async () => {
    const m = await launch(Array.from({ length: 10_000 }, (_, i) => i));
    const { runId } = m;
    const array = endpoint.batch.byName(`starfish-${runId}-fov`);
    const merge = endpoint.batch.byName(`starfish-${runId}-merge`);
    const failed = Array.from({ length: 250 }, (_, i) => 40 * i);
    clock.advance(60_000);
    endpoint.batch.set(array.jobId, { status: 'FAILED', stoppedAt: clock.now(), arrayProperties: { size: 10_000, statusSummary: { SUCCEEDED: 9_750, FAILED: 250 } } });
    endpoint.batch.set(merge.jobId, { status: 'FAILED', stoppedAt: clock.now(), statusReason: 'Dependent Job failed' });
    endpoint.batch.failChildren(array.jobId, failed, 'OutOfMemoryError: Container killed due to memory usage', STREAM);

    const out = (await handler({ version: '0', id: 'sched-1', source: 'aws.events', 'detail-type': 'Scheduled Event', detail: {}, resources: [] })) as { reconcile: { checked: number } };
    expect(out.reconcile.checked).toBe(1);
    // The dead-letter queue was read first, on the same endpoint (SQS's JSON protocol).
    expect(endpoint.of('sqs', 'ReceiveMessage').length).toBeGreaterThan(0);
    const after = await manifest(runId);
    expect(after.failures.map((f) => f.fov)).toEqual(failed);
    expect(after.failures[1]).toMatchObject({ fov: 40, jobId: `${array.jobId}:40`, reason: expect.stringContaining('OutOfMemoryError') });
    // ListJobs pages hold up to 1,000 (one here); the children were described 100 at a time.
    expect(endpoint.of('batch', 'ListJobs').map((r) => (JSON.parse(r.body.toString('utf8')) as { maxResults?: number }).maxResults)).toEqual([1_000]);
    const described = endpoint.of('batch', 'DescribeJobs').map((r) => (JSON.parse(r.body.toString('utf8')) as { jobs: string[] }).jobs);
    expect(described.filter((ids) => ids.every((id) => id.startsWith(`${array.jobId}:`))).map((ids) => ids.length)).toEqual([100, 100, 50]);
    // Batch failed the merge: the salvage merge over the plan was submitted.
    expect(fovsOf(endpoint.submitted().find((j) => j.jobName.endsWith('-merge-partial'))!)).toHaveLength(10_000);
    expectWithinLimits();
  }, 30_000);

  it('the largest run request the Slack side can publish is one PutEvents entry well under 256 KB', async () => {
    // Every part at the grammar's maximum: 2,048-character locations, a 4,000-character fovs=.
    const url = (tail: string) => `https://data.example.org/${'a'.repeat(2_048 - 'https://data.example.org/'.length - tail.length)}${tail}`;
    let fovs = '';
    for (let i = 0; fovs.length + `${i * 2},`.length <= 4_000; i++) fovs += `${i * 2},`;
    fovs = fovs.replace(/,$/, '');
    const text = `run ${url('/experiment.json')} fovs=${fovs} recipe=${url('/iss.py')} queue=ondemand name=${'n'.repeat(64)}`;
    const caller = { userId: 'U012ABCDEF', channel: 'C0STARFISH', responseUrl: `https://hooks.slack.com/commands/T0001/${'1'.repeat(13)}/${'x'.repeat(24)}` };
    const answer = await dispatch(system.dispatchDeps, text, caller);
    expect(answer.refused ?? false).toBe(false);

    const [put] = endpoint.of('events', 'PutEvents');
    const entries = (JSON.parse(put!.body.toString('utf8')) as { Entries: Array<Record<string, unknown>> }).Entries;
    expect(entries).toHaveLength(1);
    expect(JSON.parse(entries[0]!.Detail as string)).toMatchObject({ type: 'RunRequested', request: { experiment: url('/experiment.json'), recipe: url('/iss.py') } });
    expect(putEventsEntrySize(entries[0]!)).toBeLessThan(LIMITS.putEventsEntryBytes.max / 4);
    expectWithinLimits();
  });

  it('the bus refuses, before sending, an event EventBridge would not take', async () => {
    const experiment = `s3://lab-data/${'é'.repeat(140_000)}/experiment.json`;
    await expect(system.bus.publish({ type: 'RunRequested', ...caller, request: { experiment, fovs: { kind: 'all' }, dryRun: false } })).rejects.toThrow(
      /the RunRequested request is 280,\d{3} bytes, and EventBridge takes less than 262,144 \(256 KB\) in one event; locations are at most 2,048 characters, e\.g\. s3:\/\/lab-data\/iss\/experiment\.json/,
    );
    expect(endpoint.of('events')).toEqual([]);
  });
});

/**
 * `/starfish stage` through the S3 adapters with the real SDK: file names with a space, "+",
 * parentheses and non-ASCII letters reach S3 as keys with those very names, and the server-side
 * copies name their sources so that S3 finds them (x-amz-copy-source is decoded once).
 */
describe('staging on the wire', () => {
  let endpoint: AwsEndpoint;
  let chat: RecordingChat;
  let system: AwsSystem;
  let clients: ReturnType<AwsEndpoint['clients']>;

  beforeEach(async () => {
    endpoint = new AwsEndpoint();
    await endpoint.start();
    chat = new RecordingChat();
    clients = endpoint.clients();
    system = createAwsSystem(chat, testEnv(), { clients, log: silentLogger, clock: new ManualClock() });
  });
  afterEach(async () => {
    for (const client of Object.values(clients)) client.destroy();
    await endpoint.close();
  });

  const stage = (source: string, name: string) => system.launcher.handle({ type: 'StageRequested', userId: 'U012ABCDEF', channel: 'C0STARFISH', source, name });

  /**
   * v5-flat with odd names: the experiment in a folder "odd names (2026)", FOV 0's tile list and
   * tiles named with a space, "+", parentheses and "é" written as they are, FOV 1's written
   * percent-encoded (slicedimage unquotes a reference's name, _parse_absolute_url). The tiles'
   * bytes, and so their sha256, are v5-flat's.
   */
  function putOddExperiment(base: string): Map<string, Buffer> {
    const files = new Map<string, Buffer>();
    const tileName = (fov: string, file: string) => `${fov} (tile ${file.replace(/^primary_images-fov_00\d-|\.tiff$/g, '')}) + é.tiff`;
    const listName = (fov: string) => `primary images (${fov}) + ü.json`;
    for (const [rel, value] of Object.entries(V5_FLAT.files)) {
      if (rel.endsWith('.tiff')) {
        const fov = /fov_00\d/.exec(rel)![0];
        files.set(tileName(fov, rel), Buffer.from((value as { bytes: string }).bytes));
      } else if (/^primary_images-fov_00\d\.json$/.test(rel)) {
        const fov = /fov_00\d/.exec(rel)![0];
        const doc = value as { tiles: Array<{ file: string }> };
        const reference = (name: string) => (fov === 'fov_000' ? name : encodeURIComponent(name));
        files.set(listName(fov), Buffer.from(JSON.stringify({ ...doc, tiles: doc.tiles.map((t) => ({ ...t, file: reference(tileName(fov, t.file)) })) })));
      } else if (rel === 'primary_images.json') {
        const doc = value as { contents: Record<string, string> };
        const contents = { fov_000: listName('fov_000'), fov_001: encodeURIComponent(listName('fov_001')) };
        files.set(rel, Buffer.from(JSON.stringify({ ...doc, contents })));
      } else {
        files.set(rel, Buffer.from(JSON.stringify(value)));
      }
    }
    for (const [rel, body] of files) endpoint.s3.put(`${base}/${rel}`, body);
    return files;
  }

  it('an experiment whose names have spaces, "+", parentheses and non-ASCII letters is copied whole, under the same names', async () => {
    const base = `${DATA}/odd names (2026)`;
    const files = putOddExperiment(base);
    await stage(`${base}/experiment.json`, 'odd');

    const last = chat.calls.at(-1)!.text;
    expect(last).toMatch(new RegExp(`Staged ${files.size} files as odd`));
    const staged = endpoint.s3.keys('lab-starfish-results', 'experiments/odd/').filter((k) => !k.endsWith('/.staged.json'));
    expect(staged.sort()).toEqual([...files.keys()].map((rel) => `experiments/odd/${rel}`).sort());
    // The same bytes under the same names: nothing is "%20", "%2B" or "%C3%A9" on S3.
    for (const [rel, body] of files) if (!rel.endsWith('.json')) expect(endpoint.s3.get(`${RESULTS}/experiments/odd/${rel}`)).toEqual(body);
    expect(staged.some((k) => /%[0-9A-F]{2}/i.test(k))).toBe(false);
    // Tiles went server-side, each copy naming a source that exists.
    expect(endpoint.of('s3', 'CopyObject').length).toBeGreaterThanOrEqual(8);
    expectNoViolations(endpoint);
  });

  it("a tile whose source key is a legal 1,024 bytes: its staged key would pass S3's limit, and the person is told which file and why; no such key reaches S3", async () => {
    const base = `${DATA}/k`;
    const files = putOddExperiment(base);
    // FOV 0's first tile renamed to fill its source key to exactly 1,024 bytes.
    const list = JSON.parse(files.get('primary images (fov_000) + ü.json')!.toString()) as { tiles: Array<{ file: string }> };
    const long = `${'t'.repeat(1_024 - Buffer.byteLength('k/') - '.tiff'.length)}.tiff`;
    expect(Buffer.byteLength(`k/${long}`)).toBe(1_024);
    endpoint.s3.put(`${base}/${long}`, endpoint.s3.get(`${base}/${list.tiles[0]!.file}`)!);
    list.tiles[0]!.file = long;
    endpoint.s3.put(`${base}/primary images (fov_000) + ü.json`, JSON.stringify(list));

    await stage(`${base}/experiment.json`, 'long');
    const answer = chat.calls.at(-1)!.text;
    expect(answer).toMatch(/S3 keys are at most 1,024 bytes/);
    expect(answer).toContain('experiments/long/tttt');
    expect(answer).not.toMatch(/Staged \d+ files/);
    expect(answer).toMatch(/cannot be placed in the staged copy.*Nothing was staged\./);
    // Refused before the name was claimed or anything was copied.
    expect(endpoint.of('s3', 'CopyObject')).toHaveLength(0);
    expect(endpoint.s3.get(`${RESULTS}/experiments/long/.staged.json`)).toBeUndefined();
    expectNoViolations(endpoint);
  });
});

function expectNoViolations(endpoint: AwsEndpoint): void {
  expect(violations(endpoint.requests)).toEqual([]);
}
