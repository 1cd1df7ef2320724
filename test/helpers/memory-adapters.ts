/**
 * In-memory adapters at the port edge for notifier tests and the simulation benchmark: a store
 * with real etag semantics, a reader over a map, a chat that records (and can fail on cue),
 * and a simulated AWS Batch whose DescribeJobs answers come from the scenario.
 */
import { createHash, randomUUID } from 'node:crypto';
import type {
  ArraySpec, BatchStatus, Chat, Executor, JobDescription, MessageRef, Reader, StatusSummary, Store, StoredObject, SubmitSpec, SubmittedJob, ContainerTimes } from '../../src/ports.js';
import type { Message } from '../../src/messages/message.js';
import { passed } from '../../src/result.js';
import { runKeys } from '../../src/run/layout.js';
import { tooLarge } from '../../src/run/locations.js';
import type { BatchJobEvent } from '../../src/run/batch-event.js';
import { CODEBOOK_JSON, experimentJson, primaryManifestJson } from './spacetx.js';

const etag = (b: Buffer) => createHash('md5').update(b).digest('hex');

export class MemoryStore implements Store {
  readonly objects = new Map<string, Buffer>();
  async get(key: string, options: { maxBytes?: number } = {}): Promise<StoredObject | undefined> {
    const body = this.objects.get(key);
    if (!body) return undefined;
    const max = options.maxBytes ?? Infinity;
    return body.length > max ? { body: body.subarray(0, max), etag: etag(body), tooLarge: true } : { body, etag: etag(body) };
  }
  async put(key: string, body: Buffer | string) {
    const b = Buffer.from(body);
    this.objects.set(key, b);
    return { etag: etag(b) };
  }
  async createIfAbsent(key: string, body: Buffer | string) {
    if (this.objects.has(key)) return 'exists' as const;
    return this.put(key, body);
  }
  async replaceIf(key: string, body: Buffer | string, tag: string) {
    const current = this.objects.get(key);
    if (!current || etag(current) !== tag) return 'conflict' as const;
    return this.put(key, body);
  }
  async delete(key: string) {
    this.objects.delete(key);
  }
  async list(prefix: string) {
    return [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort();
  }
  async listFolders(prefix: string, startAfter?: string) {
    const names = [...this.objects.keys()].filter((k) => k.startsWith(prefix) && k.slice(prefix.length).includes('/')).map((k) => k.slice(prefix.length).split('/')[0]!);
    return [...new Set(names)].filter((n) => startAfter === undefined || n > startAfter).sort();
  }
  locate(key: string) {
    return `s3://lab-results/${key}`;
  }
  async downloadLink(key: string) {
    return `https://lab-results.s3.amazonaws.com/${key}?X-Amz-Expires=86400`;
  }
}

export class MapReader implements Reader {
  constructor(readonly files: Map<string, string>) {}
  async read(url: string, options: { maxBytes?: number } = {}) {
    const body = this.files.get(url);
    if (body === undefined) throw new Error('NoSuchKey');
    if (options.maxBytes !== undefined && Buffer.byteLength(body) > options.maxBytes) throw new Error(tooLarge(options.maxBytes));
    return Buffer.from(body);
  }
  async copy(from: string, to: string) {
    this.files.set(to, this.files.get(from)!);
  }
  checkReadable() {
    return passed;
  }
}

/** An experiment.json + primary manifest with `fovs` FOVs, as a MapReader serves them. */
export function experimentFiles(fovs: number, base = 's3://lab-data/exp'): Map<string, string> {
  return new Map([
    [`${base}/experiment.json`, experimentJson()],
    [`${base}/codebook.json`, CODEBOOK_JSON],
    [`${base}/primary_image.json`, primaryManifestJson(fovs)],
    ['s3://lab-data/recipes/iss.py', 'def process_fov(fov_index, experiment_url):\n    return []\n'],
  ]);
}

export interface ChatCall {
  method: 'post' | 'update' | 'reply' | 'ephemeral' | 'upload';
  message?: Message;
  filename?: string;
}

export class RecordingChat implements Chat {
  readonly calls: ChatCall[] = [];
  /** Throws on the next n calls of a method, like a Slack error that outlived the client's retries. */
  failNext: Partial<Record<ChatCall['method'], number>> = {};
  private n = 0;

  private fail(method: ChatCall['method']) {
    const left = this.failNext[method] ?? 0;
    if (left > 0) {
      this.failNext[method] = left - 1;
      throw new Error(`slack ${method} failed: internal_error`);
    }
  }
  async post(channel: string, message: Message): Promise<MessageRef> {
    this.fail('post');
    this.calls.push({ method: 'post', message });
    return { channel, ts: `${++this.n}.0` };
  }
  async update(_ref: MessageRef, message: Message) {
    this.fail('update');
    this.calls.push({ method: 'update', message });
  }
  async reply(ref: MessageRef, message: Message): Promise<MessageRef> {
    this.fail('reply');
    this.calls.push({ method: 'reply', message });
    return { channel: ref.channel, ts: `${++this.n}.0` };
  }
  async ephemeral(_c: string, _u: string, message: Message) {
    this.calls.push({ method: 'ephemeral', message });
  }
  async upload(_ref: MessageRef, file: { filename: string }) {
    this.fail('upload');
    this.calls.push({ method: 'upload', filename: file.filename });
  }
  of(method: ChatCall['method']) {
    return this.calls.filter((c) => c.method === method);
  }
  /** All text a person could read in the channel, blocks included. */
  text(method?: ChatCall['method']): string {
    return this.calls
      .filter((c) => !method || c.method === method)
      .map((c) => [c.message?.text, ...(c.message?.blocks ?? []).map((b) => JSON.stringify(b))].join('\n'))
      .join('\n');
  }
}

interface SimJob {
  jobId: string;
  jobName: string;
  size: number;
  kind: 'fov' | 'merge';
  status: BatchStatus;
  summary?: StatusSummary;
  statusReason?: string;
  since: number;
  dependsOn: string[];
}

export class SimulatedBatch implements Executor {
  readonly jobs = new Map<string, SimJob>();
  readonly cancelled: string[] = [];
  describeCalls = 0;
  constructor(private readonly clock: () => number = Date.now) {}

  async submitFovs(_spec: SubmitSpec, array: ArraySpec): Promise<SubmittedJob> {
    return this.add(array.name, array.size, 'fov', []);
  }
  async submitMerge(_spec: SubmitSpec, merge: { name: string }, dependsOn: string[]): Promise<SubmittedJob> {
    return this.add(merge.name, 1, 'merge', dependsOn);
  }
  private add(jobName: string, size: number, kind: SimJob['kind'], dependsOn: string[]): SubmittedJob {
    const jobId = randomUUID();
    this.jobs.set(jobId, { jobId, jobName, size, kind, status: 'SUBMITTED', since: this.clock(), dependsOn, ...(size > 1 ? { summary: {} } : {}) });
    return { jobId, jobName };
  }
  async describe(ids: string[]): Promise<JobDescription[]> {
    this.describeCalls++;
    return ids.flatMap((id) => {
      const j = this.jobs.get(id);
      if (!j) return [];
      return [{ jobId: j.jobId, jobName: j.jobName, status: j.status, since: j.since, ...(j.summary ? { statusSummary: { ...j.summary }, size: j.size } : {}), ...(j.statusReason ? { statusReason: j.statusReason } : {}) }];
    });
  }
  async cancel(ids: string[]) {
    this.cancelled.push(...ids);
  }
  /** Children the scenario marked failed: index → reason. */
  readonly failed = new Map<string, Map<number, string>>();
  async failedChildren(arrayJobId: string) {
    // As Batch reports a recipe's exception: the container exited 1.
    return [...(this.failed.get(arrayJobId) ?? new Map<number, string>()).entries()].map(([index, reason]) => ({ index, reason, kind: 'recipe' as const, logStreamName: `process-fov/default/${arrayJobId.slice(0, 8)}${index}` }));
  }
  /** Container time a scenario says a job's children ran (none unless set). */
  readonly times = new Map<string, ContainerTimes>();
  async containerTimes(jobId: string): Promise<ContainerTimes> {
    return this.times.get(jobId) ?? { containers: 0, seconds: 0 };
  }
  logLink(stream: string) {
    return `https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logsV2:log-groups/log-group/$252Faws$252Fbatch$252Fjob/log-events/${stream.replaceAll('/', '$252F')}`;
  }

  byName(pattern: RegExp): SimJob {
    const job = [...this.jobs.values()].find((j) => pattern.test(j.jobName));
    if (!job) throw new Error(`no job matching ${pattern}`);
    return job;
  }
  set(job: SimJob, status: BatchStatus, summary?: StatusSummary, reason?: string) {
    job.status = status;
    job.since = this.clock();
    if (summary) job.summary = summary;
    if (reason) job.statusReason = reason;
  }
}

let seq = 0;
const envelope = (detail: BatchJobEvent['detail'], time: number): BatchJobEvent => ({
  'detail-type': 'Batch Job State Change',
  source: 'aws.batch',
  id: `evt-${++seq}`,
  time: new Date(time).toISOString(),
  detail,
});

export const batchEvents = {
  parent: (job: { jobId: string; jobName: string; size: number }, status: BatchStatus, summary: StatusSummary, time = Date.now()) =>
    envelope({ jobId: job.jobId, jobName: job.jobName, status, arrayProperties: { size: job.size, statusSummary: summary } }, time),
  child: (job: { jobId: string; jobName: string }, index: number, status: BatchStatus, reason?: string, time = Date.now()) =>
    envelope(
      {
        jobId: `${job.jobId}:${index}`,
        jobName: job.jobName,
        status,
        arrayProperties: { index },
        ...(status === 'FAILED'
          ? {
              statusReason: 'Essential container in task exited',
              attempts: [{ container: { exitCode: 1, ...(reason ? { reason } : {}), logStreamName: `process-fov/default/${job.jobId.slice(0, 8)}${index}` } }],
            }
          : {}),
      },
      time,
    ),
  job: (job: { jobId: string; jobName: string }, status: BatchStatus, reason?: string, time = Date.now()) =>
    envelope({ jobId: job.jobId, jobName: job.jobName, status, ...(reason ? { statusReason: reason } : {}) }, time),
};

export function summaryJson(expected: number, missing: number[], genes: Record<string, number> = { ACTB: 10, GAPDH: 5 }) {
  return JSON.stringify({
    fovs_expected: expected,
    fovs_processed: expected - missing.length,
    fovs_missing: missing,
    failures: Object.fromEntries(missing.map((f) => [String(f), 'recipe raised ValueError'])),
    spots_total: Object.values(genes).reduce((a, b) => a + b, 0),
    spots_per_fov: {},
    counts_per_gene: genes,
  });
}

/** What a merge job leaves when it succeeds: every result file (a run succeeds only with all of them). */
export async function mergeWrote(store: Store, runId: string, summary: string | Buffer, png: Buffer = Buffer.from('png')): Promise<void> {
  const keys = runKeys(runId);
  await store.put(keys.summaryJson, summary);
  await store.put(keys.spotsCsv, 'fov,x,y,z,target,quality\n');
  await store.put(keys.spotsPng, png);
}
