/**
 * Test doubles at the SDK-command level (aws-sdk-client-mock): an S3 that keeps objects in a Map
 * and honours If-None-Match / If-Match like S3 (412 PreconditionFailed shaped like the SDK's), a
 * Batch that records jobs and answers DescribeJobs from them, and a Chat that records calls.
 */
import { createHash } from 'node:crypto';
import { mockClient, type AwsClientStub } from 'aws-sdk-client-mock';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { BatchClient, DescribeJobsCommand, SubmitJobCommand, TerminateJobCommand, type JobDetail, type SubmitJobRequest } from '@aws-sdk/client-batch';
import type { Chat, MessageRef } from '../../src/ports.js';
import type { Message } from '../../src/messages/message.js';
import { renderText } from '../../src/messages/text.js';
import { CODEBOOK_JSON, experimentJson, primaryManifestJson } from '../helpers/spacetx.js';

export const REGION = 'us-east-1';
export const CREDENTIALS = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' };

export function s3Error(name: string, status: number, message: string): S3ServiceException {
  return new S3ServiceException({ name, $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status, requestId: 'REQ123' }, message });
}

const preconditionFailed = () => s3Error('PreconditionFailed', 412, 'At least one of the pre-conditions you specified did not hold');
export const conditionalConflict = () => s3Error('ConditionalRequestConflict', 409, 'A conflicting conditional operation is currently in progress against this resource. Please try again.');

const etagOf = (body: Buffer) => `"${createHash('md5').update(body).digest('hex')}"`;

function toBuffer(body: unknown): Buffer {
  if (Buffer.isBuffer(body)) return body;
  if (body instanceof Uint8Array) return Buffer.from(body);
  if (typeof body === 'string') return Buffer.from(body);
  throw new Error(`fake S3: unsupported body ${typeof body}`);
}

/** What GetObject's Body offers (the SDK's stream mixin). */
function sdkBody(bytes: Buffer) {
  return {
    transformToByteArray: async () => new Uint8Array(bytes),
    transformToString: async (encoding?: BufferEncoding) => bytes.toString(encoding ?? 'utf8'),
  };
}

export interface FakeS3 {
  mock: AwsClientStub<S3Client>;
  objects: Map<string, { body: Buffer; etag: string; contentType?: string }>;
  put(url: string, body: Buffer | string): void;
  text(url: string): string | undefined;
  /** Objects per ListObjectsV2 page. */
  pageSize: number;
  /** Run (and removed) before the next PutObject calls, one each: throw from one to fail that call. */
  beforePut: Array<() => void>;
}

const split = (url: string) => {
  const m = /^s3:\/\/([^/]+)\/(.*)$/.exec(url);
  if (!m) throw new Error(`not s3: ${url}`);
  return { bucket: m[1]!, key: m[2]! };
};

export function fakeS3(): FakeS3 {
  const objects = new Map<string, { body: Buffer; etag: string; contentType?: string }>();
  const mock = mockClient(S3Client);
  const id = (bucket?: string, key?: string) => `${bucket}/${key}`;
  const fake: FakeS3 = {
    mock,
    objects,
    pageSize: 1000,
    beforePut: [],
    put(url, body) {
      const { bucket, key } = split(url);
      const b = toBuffer(body);
      objects.set(id(bucket, key), { body: b, etag: etagOf(b) });
    },
    text(url) {
      const { bucket, key } = split(url);
      return objects.get(id(bucket, key))?.body.toString('utf8');
    },
  };
  mock.on(GetObjectCommand).callsFake(async (input: { Bucket: string; Key: string }) => {
    const o = objects.get(id(input.Bucket, input.Key));
    if (!o) throw new NoSuchKey({ $metadata: { httpStatusCode: 404 }, message: 'The specified key does not exist.' });
    return { Body: sdkBody(o.body), ETag: o.etag, ContentLength: o.body.length };
  });
  mock.on(PutObjectCommand).callsFake(async (input: { Bucket: string; Key: string; Body: unknown; IfNoneMatch?: string; IfMatch?: string; ContentType?: string }) => {
    fake.beforePut.shift()?.();
    const k = id(input.Bucket, input.Key);
    const current = objects.get(k);
    if (input.IfNoneMatch === '*' && current) throw preconditionFailed();
    if (input.IfMatch !== undefined) {
      if (!current) throw new NoSuchKey({ $metadata: { httpStatusCode: 404 }, message: 'The specified key does not exist.' });
      if (current.etag !== input.IfMatch) throw preconditionFailed();
    }
    const body = toBuffer(input.Body);
    const etag = etagOf(body);
    objects.set(k, { body, etag, ...(input.ContentType ? { contentType: input.ContentType } : {}) });
    return { ETag: etag };
  });
  mock.on(DeleteObjectCommand).callsFake(async (input: { Bucket: string; Key: string }) => {
    objects.delete(id(input.Bucket, input.Key));
    return {};
  });
  mock.on(CopyObjectCommand).callsFake(async (input: { Bucket: string; Key: string; CopySource: string }) => {
    const [bucket, ...rest] = input.CopySource.split('/');
    const source = objects.get(id(bucket, rest.map(decodeURIComponent).join('/')));
    if (!source) throw new NoSuchKey({ $metadata: { httpStatusCode: 404 }, message: 'The specified key does not exist.' });
    objects.set(id(input.Bucket, input.Key), { ...source });
    return { CopyObjectResult: { ETag: source.etag } };
  });
  mock.on(ListObjectsV2Command).callsFake(async (input: { Bucket: string; Prefix?: string; Delimiter?: string; ContinuationToken?: string }) => {
    const keys = [...objects.keys()]
      .filter((k) => k.startsWith(`${input.Bucket}/${input.Prefix ?? ''}`))
      .map((k) => k.slice(input.Bucket.length + 1))
      .sort();
    if (input.Delimiter) {
      // S3's CommonPrefixes: everything up to the first delimiter after the prefix, once each.
      const prefix = input.Prefix ?? '';
      const common = [...new Set(keys.filter((k) => k.slice(prefix.length).includes(input.Delimiter!)).map((k) => prefix + k.slice(prefix.length).split(input.Delimiter!)[0] + input.Delimiter))];
      return { CommonPrefixes: common.map((Prefix) => ({ Prefix })), Contents: keys.filter((k) => !k.slice(prefix.length).includes(input.Delimiter!)).map((Key) => ({ Key })), IsTruncated: false };
    }
    const start = input.ContinuationToken ? Number(input.ContinuationToken) : 0;
    const page = keys.slice(start, start + fake.pageSize);
    const more = start + fake.pageSize < keys.length;
    return { Contents: page.map((Key) => ({ Key })), IsTruncated: more, KeyCount: page.length, ...(more ? { NextContinuationToken: String(start + fake.pageSize) } : {}) };
  });
  return fake;
}

interface FakeJob {
  input: SubmitJobRequest;
  detail: JobDetail;
}

export interface FakeBatch {
  mock: AwsClientStub<BatchClient>;
  jobs: Map<string, FakeJob>;
  submitted: SubmitJobRequest[];
  terminated: Array<{ jobId: string; reason: string }>;
  /** Changes what DescribeJobs says about a job. */
  set(jobId: string, detail: Partial<JobDetail>): void;
  byName(suffix: string): FakeJob;
  /** Return an error to make Batch refuse that SubmitJob. */
  refuse?: (input: SubmitJobRequest) => Error | undefined;
}

export function fakeBatch(start = Date.parse('2026-11-25T10:00:00Z')): FakeBatch {
  const mock = mockClient(BatchClient);
  const jobs = new Map<string, FakeJob>();
  const fake: FakeBatch = {
    mock,
    jobs,
    submitted: [],
    terminated: [],
    set(jobId, detail) {
      const job = jobs.get(jobId);
      if (!job) throw new Error(`no job ${jobId}`);
      job.detail = { ...job.detail, ...detail };
    },
    byName(suffix) {
      const job = [...jobs.values()].find((j) => j.input.jobName!.endsWith(suffix));
      if (!job) throw new Error(`no job named …${suffix}; have ${[...jobs.values()].map((j) => j.input.jobName).join(', ')}`);
      return job;
    },
  };
  let n = 0;
  mock.on(SubmitJobCommand).callsFake(async (input: SubmitJobRequest) => {
    const refused = fake.refuse?.(input);
    if (refused) throw refused;
    fake.submitted.push(input);
    const jobId = `job-${String(++n).padStart(4, '0')}-${input.jobName}`;
    const size = input.arrayProperties?.size;
    jobs.set(jobId, {
      input,
      detail: {
        jobId,
        jobName: input.jobName,
        jobQueue: input.jobQueue,
        jobDefinition: input.jobDefinition,
        status: input.dependsOn?.length ? 'PENDING' : 'RUNNABLE',
        createdAt: start,
        startedAt: undefined,
        ...(input.dependsOn ? { dependsOn: input.dependsOn } : {}),
        ...(size ? { arrayProperties: { size, statusSummary: { RUNNABLE: size } } } : {}),
        // DescribeJobs returns the tags SubmitJob set (the executor checks them before terminating).
        ...(input.tags ? { tags: input.tags } : {}),
      },
    });
    return { jobId, jobName: input.jobName, jobArn: `arn:aws:batch:${REGION}:123456789012:job/${jobId}` };
  });
  mock.on(DescribeJobsCommand).callsFake(async (input: { jobs: string[] }) => {
    if (input.jobs.length > 100) throw new Error('DescribeJobs takes at most 100 jobs');
    return { jobs: input.jobs.flatMap((id) => (jobs.has(id) ? [jobs.get(id)!.detail] : [])) };
  });
  mock.on(TerminateJobCommand).callsFake(async (input: { jobId: string; reason: string }) => {
    fake.terminated.push({ jobId: input.jobId, reason: input.reason });
    const job = jobs.get(input.jobId);
    if (job) job.detail = { ...job.detail, status: 'FAILED', statusReason: input.reason, isTerminated: true };
    return {};
  });
  return fake;
}

/**
 * A job someone else submitted in the same account, as DescribeJobs shows it: the fake Batch
 * answers for it like for its own, so a test can plant its id where the app reads job ids.
 */
export function plantJob(batch: FakeBatch, jobId: string, detail: Partial<JobDetail>): void {
  batch.jobs.set(jobId, {
    input: { jobName: detail.jobName ?? jobId, jobQueue: detail.jobQueue ?? 'other-queue', jobDefinition: detail.jobDefinition ?? 'other-definition' },
    detail: { jobId, jobName: jobId, jobQueue: 'other-queue', jobDefinition: 'other-definition', status: 'RUNNING', createdAt: Date.parse('2026-11-25T09:00:00Z'), startedAt: undefined, ...detail },
  });
}

export interface ChatCall {
  kind: 'post' | 'update' | 'reply' | 'ephemeral' | 'upload';
  channel: string;
  ts?: string;
  user?: string;
  text: string;
  message?: Message;
  filename?: string;
  bytes?: number;
}

/** A Chat at the port: records every call, with the message rendered as text. */
export class RecordingChat implements Chat {
  readonly calls: ChatCall[] = [];
  private n = 0;

  of(kind: ChatCall['kind']): ChatCall[] {
    return this.calls.filter((c) => c.kind === kind);
  }

  async post(channel: string, message: Message): Promise<MessageRef> {
    const ts = `1700000000.${String(++this.n).padStart(6, '0')}`;
    this.calls.push({ kind: 'post', channel, ts, text: renderText(message), message });
    return { channel, ts };
  }

  async update(ref: MessageRef, message: Message): Promise<void> {
    this.calls.push({ kind: 'update', channel: ref.channel, ts: ref.ts, text: renderText(message), message });
  }

  async reply(ref: MessageRef, message: Message): Promise<MessageRef> {
    this.calls.push({ kind: 'reply', channel: ref.channel, ts: ref.ts, text: renderText(message), message });
    return { channel: ref.channel, ts: `1700000001.${String(++this.n).padStart(6, '0')}` };
  }

  async ephemeral(channel: string, user: string, message: Message): Promise<void> {
    this.calls.push({ kind: 'ephemeral', channel, user, text: renderText(message), message });
  }

  async upload(ref: MessageRef, file: { filename: string; title: string; bytes: Buffer }): Promise<void> {
    this.calls.push({ kind: 'upload', channel: ref.channel, ts: ref.ts, text: file.title, filename: file.filename, bytes: file.bytes.length });
  }
}

export const QUEUES = {
  spot: `arn:aws:batch:${REGION}:123456789012:job-queue/starfish-spot`,
  ondemand: `arn:aws:batch:${REGION}:123456789012:job-queue/starfish-ondemand`,
};

/** The environment infra sets on the Lambdas, for a test deployment. */
export function testEnv(overrides: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  return {
    STARFISH_BUCKET: 'lab-starfish-results',
    STARFISH_ALLOWED_BUCKETS: 'lab-data',
    STARFISH_READONLY_BUCKETS: 'spacetx-public-data',
    STARFISH_EVENT_BUS: 'starfish-chatops',
    STARFISH_JOB_QUEUES: JSON.stringify(QUEUES),
    STARFISH_FOV_JOB_DEFINITION: 'starfish-process-fov',
    STARFISH_MERGE_JOB_DEFINITION: 'starfish-merge-results',
    STARFISH_POLICY_JSON: JSON.stringify({ approval: { fovThreshold: 1_000_000, approvers: ['UAPPROVER'] }, queues: { default: 'spot', allowed: ['spot', 'ondemand'] } }),
    STARFISH_SLACK_SECRET_ARN: `arn:aws:secretsmanager:${REGION}:123456789012:secret:starfish/slack-AbCdEf`,
    STARFISH_DLQ_URL: `https://sqs.${REGION}.amazonaws.com/123456789012/starfish-batch-events-dlq`,
    AWS_REGION: REGION,
    ...overrides,
  };
}

/** A SpaceTx experiment (no tiles) with FOVs 0..n-1 and a recipe, in the fake S3. */
export function putExperiment(s3: FakeS3, fovs: number, base = 's3://lab-data/iss'): { experiment: string; recipe: string } {
  s3.put(`${base}/primary_image.json`, primaryManifestJson(fovs));
  s3.put(`${base}/experiment.json`, experimentJson());
  s3.put(`${base}/codebook.json`, CODEBOOK_JSON);
  s3.put('s3://lab-data/recipes/iss.py', 'def process_fov(fov_index, experiment_url):\n    return []\n');
  return { experiment: `${base}/experiment.json`, recipe: 's3://lab-data/recipes/iss.py' };
}

export class ManualClock {
  constructor(public t = Date.parse('2026-11-25T10:00:00Z')) {}
  now = () => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

/** The EventBridge envelope of a Batch job state change, as the rule delivers it. */
export function batchEvent(id: string, detail: Record<string, unknown>) {
  return {
    version: '0',
    id,
    'detail-type': 'Batch Job State Change',
    source: 'aws.batch',
    account: '123456789012',
    time: '2026-11-25T10:05:00Z',
    region: REGION,
    resources: [`arn:aws:batch:${REGION}:123456789012:job/${String(detail.jobId)}`],
    detail,
  };
}

export function sqsRecords(bodies: unknown[]): { Records: Array<{ messageId: string; receiptHandle: string; body: string; eventSource: string; eventSourceARN: string; attributes: object; messageAttributes: object; md5OfBody: string; awsRegion: string }> } {
  return {
    Records: bodies.map((b, i) => ({
      messageId: `msg-${i}`,
      receiptHandle: `rh-${i}`,
      body: typeof b === 'string' ? b : JSON.stringify(b),
      attributes: {},
      messageAttributes: {},
      md5OfBody: '',
      eventSource: 'aws:sqs',
      eventSourceARN: `arn:aws:sqs:${REGION}:123456789012:starfish-batch-events`,
      awsRegion: REGION,
    })),
  };
}

/** A complete AWS backend environment (src/aws/config.ts) for bundles started in tests and benches. */
export const EXAMPLE_AWS_ENV: Record<string, string> = {
  STARFISH_BUCKET: 'lab-starfish-results',
  STARFISH_EVENT_BUS: 'starfish-chatops',
  STARFISH_JOB_QUEUES: JSON.stringify({ spot: 'arn:aws:batch:us-east-1:123456789012:job-queue/starfish-spot' }),
  STARFISH_FOV_JOB_DEFINITION: 'starfish-process-fov',
  STARFISH_MERGE_JOB_DEFINITION: 'starfish-merge-results',
  STARFISH_POLICY_JSON: JSON.stringify({ queues: { default: 'spot', allowed: ['spot'] } }),
  AWS_REGION: 'us-east-1',
  LOG_LEVEL: 'error',
};
