/**
 * A recording AWS endpoint on loopback: one HTTP server that the real SDK v3 clients reach
 * through their `endpoint` option (S3 with forcePathStyle), answering the operations this app
 * uses the way the services do, and recording every request as it arrived on the wire.
 *
 * The wire formats follow the SDK's own protocol code (node_modules/@aws-sdk/client-*\/dist-cjs)
 * and the services' API references:
 * - Batch: REST-JSON, POST /v1/submitjob, /v1/describejobs, /v1/listjobs, /v1/terminatejob;
 *   errors as HTTP 400 with `x-amzn-errortype: ClientException` and `{"message"}`.
 * - EventBridge: JSON 1.1, POST / with `X-Amz-Target: AWSEvents.PutEvents`.
 * - SQS (the dead-letter queue): JSON 1.0, `X-Amz-Target: AmazonSQS.ReceiveMessage`.
 * - S3: REST-XML, path style (/bucket/key, the key percent-encoded segment by segment by the
 *   SDK and stored DECODED, as S3 stores it; past 1,024 bytes 400 KeyTooLongError); GetObject
 *   with Range (a whole object comes with its CRC32, which the SDK verifies), PutObject with
 *   If-None-Match: * and If-Match (412 PreconditionFailed) and its body checked against
 *   x-amz-content-sha256 and x-amz-checksum-crc32, HeadObject, DeleteObject, ListObjectsV2 (StartAfter) with
 *   pages, CopyObject (x-amz-copy-source "bucket/key", URL-encoded, decoded once).
 *
 * The service is told by the SigV4 credential scope of the Authorization header
 * (…/<date>/<region>/<service>/aws4_request), as AWS routes a signed request.
 */
import { createHash, randomUUID } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { S3Client } from '@aws-sdk/client-s3';
import { BatchClient } from '@aws-sdk/client-batch';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { SQSClient } from '@aws-sdk/client-sqs';
import { clientConfig } from '../../../src/aws/clients.js';

export type Service = 's3' | 'batch' | 'events' | 'sqs';

export interface RecordedRequest {
  service: Service;
  operation: string;
  method: string;
  /** The path and query as sent (percent-encoded). */
  path: string;
  headers: Record<string, string>;
  body: Buffer;
}

interface StoredObject {
  body: Buffer;
  etag: string;
  contentType: string;
  lastModified: Date;
  /** The full-object CRC32 S3 keeps and returns to a GetObject with x-amz-checksum-mode: ENABLED. */
  crc32?: string;
}

/** A Batch job as DescribeJobs returns it (the JobDetail members this app reads). */
export interface JobDetailJson {
  jobArn: string;
  jobId: string;
  jobName: string;
  jobQueue: string;
  jobDefinition: string;
  status: string;
  statusReason?: string;
  createdAt: number;
  startedAt?: number;
  stoppedAt?: number;
  dependsOn?: Array<{ jobId: string; type?: string }>;
  arrayProperties?: { size?: number; index?: number; statusSummary?: Record<string, number> };
  container?: { exitCode?: number; reason?: string; logStreamName?: string; environment?: Array<{ name: string; value: string }> };
  attempts?: Array<{ container?: { exitCode?: number; reason?: string; logStreamName?: string }; statusReason?: string }>;
  tags?: Record<string, string>;
  isTerminated?: boolean;
}

const ACCOUNT = '123456789012';
const XMLNS = 'http://s3.amazonaws.com/doc/2006-03-01/';
/** ListJobs and ListObjectsV2 page sizes when the request names none (Batch: 100; S3: 1,000). */
const LIST_JOBS_PAGE = 100;
/** S3 answers 400 KeyTooLongError past this (S3 API Reference, Error codes). */
const MAX_KEY_BYTES = 1_024;

const xmlEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
const etagOf = (body: Buffer) => `"${createHash('md5').update(body).digest('hex')}"`;
const crc32Of = (body: Buffer) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(crc32(body));
  return b.toString('base64');
};

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The service a SigV4-signed request is for, from its credential scope. */
function serviceOf(req: IncomingMessage): Service {
  const auth = req.headers.authorization ?? '';
  const scope = /Credential=[^/]+\/\d{8}\/[^/]+\/([^/]+)\/aws4_request/.exec(auth);
  const service = scope?.[1];
  if (service === 's3' || service === 'batch' || service === 'events' || service === 'sqs') return service;
  throw new HttpError(400, 'UnrecognizedClientException', `the endpoint cannot tell the service of ${req.method} ${req.url} (Authorization: ${auth.slice(0, 80)})`);
}

function headersOf(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The S3 objects, keyed "bucket/key" with the key as S3 stores it: decoded, byte for byte. */
class S3Objects {
  readonly objects = new Map<string, StoredObject>();
  /** Keys per ListObjectsV2 page when the request names no MaxKeys (S3's default is 1,000). */
  pageSize = 1000;

  put(url: string, body: Buffer | string, contentType = 'application/octet-stream'): void {
    const { bucket, key } = splitS3(url);
    const b = typeof body === 'string' ? Buffer.from(body) : body;
    this.objects.set(`${bucket}/${key}`, { body: b, etag: etagOf(b), contentType, lastModified: new Date(), crc32: crc32Of(b) });
  }

  get(url: string): Buffer | undefined {
    const { bucket, key } = splitS3(url);
    return this.objects.get(`${bucket}/${key}`)?.body;
  }

  text(url: string): string | undefined {
    return this.get(url)?.toString('utf8');
  }

  /** The keys of a bucket under a prefix, sorted as S3 lists them (by UTF-8 bytes). */
  keys(bucket: string, prefix = ''): string[] {
    return [...this.objects.keys()]
      .filter((k) => k.startsWith(`${bucket}/${prefix}`))
      .map((k) => k.slice(bucket.length + 1))
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  }
}

function splitS3(url: string): { bucket: string; key: string } {
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(url);
  if (!m) throw new Error(`not an s3:// URL: ${url}`);
  return { bucket: m[1]!, key: m[2]! };
}

/** Batch's jobs, with array children kept apart (DescribeJobs and ListJobs find them by id). */
export class BatchJobs {
  readonly jobs = new Map<string, JobDetailJson>();
  private readonly children = new Map<string, Map<number, JobDetailJson>>();
  constructor(private readonly now: () => number) {}

  submit(input: SubmitJobInputJson): JobDetailJson {
    const jobId = randomUUID();
    const size = input.arrayProperties?.size;
    const job: JobDetailJson = {
      jobArn: `arn:aws:batch:us-east-1:${ACCOUNT}:job/${jobId}`,
      jobId,
      jobName: input.jobName,
      jobQueue: input.jobQueue,
      jobDefinition: input.jobDefinition,
      status: input.dependsOn?.length ? 'PENDING' : 'RUNNABLE',
      createdAt: this.now(),
      ...(input.dependsOn?.length ? { dependsOn: input.dependsOn } : {}),
      ...(size ? { arrayProperties: { size, statusSummary: { SUBMITTED: 0, PENDING: 0, RUNNABLE: size, STARTING: 0, RUNNING: 0, SUCCEEDED: 0, FAILED: 0 } } } : {}),
      ...(input.containerOverrides?.environment ? { container: { environment: input.containerOverrides.environment } } : {}),
      ...(input.tags ? { tags: input.tags } : {}),
    };
    this.jobs.set(jobId, job);
    return job;
  }

  /** Changes what DescribeJobs says of a job (a test playing Batch's part). */
  set(jobId: string, detail: Partial<JobDetailJson>): void {
    const job = this.jobs.get(jobId);
    if (!job) throw new Error(`no job ${jobId}`);
    this.jobs.set(jobId, { ...job, ...detail });
  }

  byName(name: string): JobDetailJson {
    const found = [...this.jobs.values()].filter((j) => j.jobName === name);
    if (found.length !== 1) throw new Error(`${found.length} jobs named ${name}; have ${[...this.jobs.values()].map((j) => j.jobName).join(', ')}`);
    return found[0]!;
  }

  /** Array children that failed, as ListJobs (arrayJobId, FAILED) and DescribeJobs show them. */
  failChildren(parentId: string, indices: number[], reason: string, logStream: (index: number) => string): void {
    const parent = this.jobs.get(parentId);
    if (!parent) throw new Error(`no job ${parentId}`);
    const children = this.children.get(parentId) ?? new Map<number, JobDetailJson>();
    for (const index of indices) {
      const container = { exitCode: 1, reason, logStreamName: logStream(index) };
      children.set(index, {
        ...parent,
        jobId: `${parentId}:${index}`,
        jobArn: `${parent.jobArn}:${index}`,
        status: 'FAILED',
        statusReason: 'Essential container in task exited',
        arrayProperties: { index },
        container,
        attempts: [{ container, statusReason: 'Essential container in task exited' }],
      });
    }
    this.children.set(parentId, children);
  }

  find(jobId: string): JobDetailJson | undefined {
    const [parentId, index] = jobId.split(':');
    return index === undefined ? this.jobs.get(jobId) : this.children.get(parentId!)?.get(Number(index));
  }

  childrenOf(parentId: string, status: string | undefined): JobDetailJson[] {
    return [...(this.children.get(parentId)?.values() ?? [])].filter((c) => !status || c.status === status).sort((a, b) => a.arrayProperties!.index! - b.arrayProperties!.index!);
  }
}

/** The SubmitJob members this app sends, as they are named on the wire. */
export interface SubmitJobInputJson {
  jobName: string;
  jobQueue: string;
  jobDefinition: string;
  arrayProperties?: { size?: number };
  dependsOn?: Array<{ jobId: string; type?: string }>;
  containerOverrides?: { environment?: Array<{ name: string; value: string }> };
  tags?: Record<string, string>;
}

/**
 * What Batch refuses outright, with a ClientException: a payload past 30 KiB (service quotas), an
 * array of 1 or past 10,000 children, more than 20 dependencies (SubmitJob API).
 */
function submittable(input: SubmitJobInputJson, body: Buffer): SubmitJobInputJson {
  if (body.length > 30 * 1024) throw new HttpError(400, 'ClientException', `SubmitJob payload is ${body.length} bytes; the maximum is 30 KiB`);
  const size = input.arrayProperties?.size;
  if (size !== undefined && (size < 2 || size > 10_000)) throw new HttpError(400, 'ClientException', `arrayProperties.size must be between 2 and 10000, got ${size}`);
  if ((input.dependsOn?.length ?? 0) > 20) throw new HttpError(400, 'ClientException', `a job can depend upon a maximum of 20 jobs, got ${input.dependsOn!.length}`);
  return input;
}

const BATCH_OPERATIONS: Record<string, string> = {
  '/v1/submitjob': 'SubmitJob',
  '/v1/describejobs': 'DescribeJobs',
  '/v1/listjobs': 'ListJobs',
  '/v1/terminatejob': 'TerminateJob',
};

/** The S3 operation of a path-style request, by method, query and headers (the SDK also sends x-id). */
function s3Operation(method: string, url: URL, headers: Record<string, string>): string {
  const hasKey = url.pathname.split('/').length > 2 && url.pathname.split('/')[2] !== '';
  if (!hasKey) {
    if (method === 'GET' && url.searchParams.get('list-type') === '2') return 'ListObjectsV2';
    return `Unsupported bucket operation ${method}`;
  }
  if (method === 'GET') return 'GetObject';
  if (method === 'HEAD') return 'HeadObject';
  if (method === 'DELETE') return 'DeleteObject';
  if (method === 'PUT') return headers['x-amz-copy-source'] ? 'CopyObject' : 'PutObject';
  return `Unsupported object operation ${method}`;
}

function operationOf(service: Service, req: IncomingMessage, url: URL, headers: Record<string, string>): string {
  switch (service) {
    case 'batch':
      return BATCH_OPERATIONS[url.pathname] ?? `Unsupported ${url.pathname}`;
    case 'events':
    case 'sqs':
      return (headers['x-amz-target'] ?? '').split('.').pop() ?? 'Unsupported';
    case 's3':
      return s3Operation(req.method ?? 'GET', url, headers);
  }
}

interface Answer {
  status: number;
  headers?: Record<string, string>;
  body?: Buffer | string;
}

const json = (value: unknown, contentType = 'application/json'): Answer => ({ status: 200, headers: { 'content-type': contentType }, body: JSON.stringify(value) });

export class AwsEndpoint {
  readonly requests: RecordedRequest[] = [];
  readonly s3 = new S3Objects();
  readonly batch: BatchJobs;
  /** PutEvents entries as EventBridge received them. */
  readonly events: Array<Record<string, unknown>> = [];
  private server: Server | undefined;
  private port = 0;

  constructor(now: () => number = Date.now) {
    this.batch = new BatchJobs(now);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    // Keep-alive connections are the SDK's; closing them is the test's.
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Real SDK clients, with the app's retry configuration, pointed at this endpoint. */
  clients(region = 'us-east-1') {
    const common = {
      ...clientConfig(region),
      endpoint: this.url,
      credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' },
    };
    return {
      s3: new S3Client({ ...common, forcePathStyle: true }),
      batch: new BatchClient(common),
      eventBridge: new EventBridgeClient(common),
      sqs: new SQSClient(common),
    };
  }

  of(service: Service, operation?: string): RecordedRequest[] {
    return this.requests.filter((r) => r.service === service && (!operation || r.operation === operation));
  }

  /** SubmitJob bodies as sent, parsed. */
  submitted(): SubmitJobInputJson[] {
    return this.of('batch', 'SubmitJob').map((r) => JSON.parse(r.body.toString('utf8')) as SubmitJobInputJson);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let answer: Answer;
    try {
      const body = await readBody(req);
      const headers = headersOf(req);
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      const service = serviceOf(req);
      const operation = operationOf(service, req, url, headers);
      this.requests.push({ service, operation, method: req.method ?? '', path: req.url ?? '', headers, body });
      answer = this.answer(service, operation, url, headers, body);
    } catch (error) {
      answer = errorAnswer(error, req);
    }
    res.writeHead(answer.status, { 'x-amzn-requestid': randomUUID(), ...answer.headers });
    res.end(req.method === 'HEAD' ? undefined : answer.body);
  }

  private answer(service: Service, operation: string, url: URL, headers: Record<string, string>, body: Buffer): Answer {
    switch (service) {
      case 'batch':
        return this.batchAnswer(operation, JSON.parse(body.toString('utf8') || '{}') as Record<string, unknown>, body);
      case 'events':
        return this.eventsAnswer(operation, JSON.parse(body.toString('utf8')) as { Entries?: Array<Record<string, unknown>> });
      case 'sqs':
        if (operation === 'ReceiveMessage') return json({}, 'application/x-amz-json-1.0');
        throw new HttpError(400, 'UnsupportedOperation', `SQS ${operation} is not answered here`);
      case 's3':
        return this.s3Answer(operation, url, headers, body);
    }
  }

  // --- Batch ---------------------------------------------------------------------------------

  private batchAnswer(operation: string, input: Record<string, unknown>, body: Buffer): Answer {
    switch (operation) {
      case 'SubmitJob': {
        const job = this.batch.submit(submittable(input as unknown as SubmitJobInputJson, body));
        // Batch accepts overrides past ECS's 8,192 characters; the job then fails to start.
        if (JSON.stringify(input.containerOverrides ?? {}).length > 8_192) this.batch.set(job.jobId, { status: 'FAILED', statusReason: 'Container Overrides length must be at most 8192' });
        return json({ jobArn: job.jobArn, jobName: job.jobName, jobId: job.jobId });
      }
      case 'DescribeJobs': {
        const ids = (input.jobs as string[] | undefined) ?? [];
        // Batch refuses more than 100 ids (DescribeJobs API: "A list of up to 100 job IDs").
        if (ids.length > 100) throw new HttpError(400, 'ClientException', `jobs: ${ids.length} ids; DescribeJobs takes up to 100`);
        return json({ jobs: ids.flatMap((id) => this.batch.find(id) ?? []) });
      }
      case 'ListJobs':
        return this.listJobs(input);
      case 'TerminateJob': {
        const job = this.batch.find(String(input.jobId));
        if (!job) throw new HttpError(400, 'ClientException', `Job ${String(input.jobId)} not found`);
        this.batch.set(job.jobId, { status: 'FAILED', statusReason: String(input.reason), isTerminated: true });
        return json({});
      }
      default:
        throw new HttpError(400, 'ClientException', `Batch ${operation} is not answered here`);
    }
  }

  private listJobs(input: Record<string, unknown>): Answer {
    const parentId = input.arrayJobId as string | undefined;
    if (!parentId) throw new HttpError(400, 'ClientException', 'ListJobs is answered here for arrayJobId only');
    const all = this.batch.childrenOf(parentId, input.jobStatus as string | undefined);
    const start = input.nextToken ? Number(input.nextToken) : 0;
    const size = (input.maxResults as number | undefined) ?? LIST_JOBS_PAGE;
    const page = all.slice(start, start + size);
    const more = start + size < all.length;
    return json({
      jobSummaryList: page.map((c) => ({ jobArn: c.jobArn, jobId: c.jobId, jobName: c.jobName, createdAt: c.createdAt, status: c.status, arrayProperties: { index: c.arrayProperties!.index } })),
      ...(more ? { nextToken: String(start + size) } : {}),
    });
  }

  // --- EventBridge ---------------------------------------------------------------------------

  private eventsAnswer(operation: string, input: { Entries?: Array<Record<string, unknown>> }): Answer {
    if (operation !== 'PutEvents') throw new HttpError(400, 'UnsupportedOperation', `EventBridge ${operation} is not answered here`);
    const entries = input.Entries ?? [];
    this.events.push(...entries);
    return json({ FailedEntryCount: 0, Entries: entries.map(() => ({ EventId: randomUUID() })) }, 'application/x-amz-json-1.1');
  }

  // --- S3 ------------------------------------------------------------------------------------

  private s3Answer(operation: string, url: URL, headers: Record<string, string>, body: Buffer): Answer {
    const [, bucket = '', ...rest] = url.pathname.split('/');
    // The SDK encodes each segment of the key; S3 keeps the decoded key, of at most 1,024 bytes.
    const key = rest.map(decodeURIComponent).join('/');
    if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) throw new HttpError(400, 'KeyTooLongError', 'Your key is too long');
    switch (operation) {
      case 'ListObjectsV2':
        return this.listObjects(bucket, url.searchParams);
      case 'GetObject':
      case 'HeadObject':
        return this.getObject(bucket, key, headers.range);
      case 'PutObject':
        return this.putObject(bucket, key, headers, body);
      case 'CopyObject':
        return this.copyObject(bucket, key, headers['x-amz-copy-source']!);
      case 'DeleteObject':
        this.s3.objects.delete(`${bucket}/${key}`);
        return { status: 204 };
      default:
        throw new HttpError(501, 'NotImplemented', `S3 ${operation} is not answered here`);
    }
  }

  private stored(bucket: string, key: string): StoredObject {
    const o = this.s3.objects.get(`${bucket}/${key}`);
    if (!o) throw new HttpError(404, 'NoSuchKey', 'The specified key does not exist.');
    return o;
  }

  private getObject(bucket: string, key: string, range: string | undefined): Answer {
    const o = this.stored(bucket, key);
    const headers = { etag: o.etag, 'content-type': o.contentType, 'last-modified': o.lastModified.toUTCString(), 'accept-ranges': 'bytes' };
    const m = range ? /^bytes=(\d+)-(\d*)$/.exec(range) : null;
    // A whole object comes with its checksum, which the SDK then verifies; a range does not.
    const checksum: Record<string, string> = o.crc32 ? { 'x-amz-checksum-crc32': o.crc32, 'x-amz-checksum-type': 'FULL_OBJECT' } : {};
    if (!m || o.body.length === 0) return { status: 200, headers: { ...headers, ...checksum, 'content-length': String(o.body.length) }, body: o.body };
    const start = Number(m[1]);
    if (start >= o.body.length) throw new HttpError(416, 'InvalidRange', 'The requested range is not satisfiable');
    const end = Math.min(m[2] ? Number(m[2]) : o.body.length - 1, o.body.length - 1);
    const part = o.body.subarray(start, end + 1);
    return { status: 206, headers: { ...headers, 'content-length': String(part.length), 'content-range': `bytes ${start}-${end}/${o.body.length}` }, body: part };
  }

  private putObject(bucket: string, key: string, headers: Record<string, string>, body: Buffer): Answer {
    if (/aws-chunked/.test(headers['content-encoding'] ?? '')) throw new HttpError(501, 'NotImplemented', 'aws-chunked uploads are not decoded here');
    // S3 checks the body against the signed payload hash and the checksum the SDK sent.
    const sha = headers['x-amz-content-sha256'];
    if (sha && /^[0-9a-f]{64}$/.test(sha) && sha !== createHash('sha256').update(body).digest('hex')) {
      throw new HttpError(400, 'XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed.");
    }
    const crc = headers['x-amz-checksum-crc32'];
    if (crc !== undefined && crc !== crc32Of(body)) throw new HttpError(400, 'BadDigest', 'The CRC32 you specified did not match the calculated checksum.');
    const current = this.s3.objects.get(`${bucket}/${key}`);
    if (headers['if-none-match'] === '*' && current) throw new HttpError(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
    if (headers['if-match'] !== undefined) {
      if (!current) throw new HttpError(404, 'NoSuchKey', 'The specified key does not exist.');
      if (current.etag !== headers['if-match']) throw new HttpError(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
    }
    const etag = etagOf(body);
    this.s3.objects.set(`${bucket}/${key}`, { body, etag, contentType: headers['content-type'] ?? 'application/octet-stream', lastModified: new Date(), crc32: crc32Of(body) });
    return { status: 200, headers: { etag } };
  }

  private copyObject(bucket: string, key: string, copySource: string): Answer {
    // "bucket/key", URL-encoded, optionally with a leading slash and ?versionId (S3 CopyObject API).
    const source = decodeURIComponent(copySource.replace(/^\//, '').replace(/\?versionId=.*$/, ''));
    const slash = source.indexOf('/');
    const from = this.stored(source.slice(0, slash), source.slice(slash + 1));
    this.s3.objects.set(`${bucket}/${key}`, { ...from, lastModified: new Date() });
    const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<CopyObjectResult xmlns="${XMLNS}"><LastModified>${new Date().toISOString()}</LastModified><ETag>${xmlEscape(from.etag)}</ETag></CopyObjectResult>`;
    return { status: 200, headers: { 'content-type': 'application/xml' }, body: xml };
  }

  private listObjects(bucket: string, q: URLSearchParams): Answer {
    const prefix = q.get('prefix') ?? '';
    const delimiter = q.get('delimiter') ?? '';
    const maxKeys = Number(q.get('max-keys') ?? this.s3.pageSize);
    // StartAfter: only keys after it, in UTF-8 binary order (a continuation token carries on from its own list).
    const startAfter = q.get('start-after') ?? '';
    // Keys and common prefixes in one sorted run, as S3 counts them against MaxKeys.
    const entries: Array<{ key?: string; prefix?: string }> = [];
    const seen = new Set<string>();
    for (const key of this.s3.keys(bucket, prefix)) {
      if (startAfter && Buffer.compare(Buffer.from(key), Buffer.from(startAfter)) <= 0) continue;
      const cut = delimiter ? key.indexOf(delimiter, prefix.length) : -1;
      if (cut >= 0) {
        const common = key.slice(0, cut + delimiter.length);
        if (!seen.has(common)) entries.push({ prefix: common });
        seen.add(common);
      } else entries.push({ key });
    }
    const start = q.get('continuation-token') ? Number(Buffer.from(q.get('continuation-token')!, 'base64').toString()) : 0;
    const page = entries.slice(start, start + maxKeys);
    const truncated = start + maxKeys < entries.length;
    const contents = page
      .filter((e) => e.key !== undefined)
      .map((e) => {
        const o = this.s3.objects.get(`${bucket}/${e.key}`)!;
        return `<Contents><Key>${xmlEscape(e.key!)}</Key><LastModified>${o.lastModified.toISOString()}</LastModified><ETag>${xmlEscape(o.etag)}</ETag><Size>${o.body.length}</Size><StorageClass>STANDARD</StorageClass></Contents>`;
      });
    const prefixes = page.filter((e) => e.prefix !== undefined).map((e) => `<CommonPrefixes><Prefix>${xmlEscape(e.prefix!)}</Prefix></CommonPrefixes>`);
    const xml = [
      `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="${XMLNS}">`,
      `<Name>${xmlEscape(bucket)}</Name><Prefix>${xmlEscape(prefix)}</Prefix><KeyCount>${page.length}</KeyCount><MaxKeys>${maxKeys}</MaxKeys>`,
      delimiter ? `<Delimiter>${xmlEscape(delimiter)}</Delimiter>` : '',
      startAfter ? `<StartAfter>${xmlEscape(startAfter)}</StartAfter>` : '',
      `<IsTruncated>${truncated}</IsTruncated>`,
      truncated ? `<NextContinuationToken>${Buffer.from(String(start + maxKeys)).toString('base64')}</NextContinuationToken>` : '',
      ...contents,
      ...prefixes,
      '</ListBucketResult>',
    ].join('');
    return { status: 200, headers: { 'content-type': 'application/xml' }, body: xml };
  }
}

/** An error as the service shapes it: S3's XML <Error>, the JSON protocols' error type. */
function errorAnswer(error: unknown, req: IncomingMessage): Answer {
  const e = error instanceof HttpError ? error : new HttpError(500, 'InternalError', (error as Error).message);
  const auth = req.headers.authorization ?? '';
  if (/\/s3\/aws4_request/.test(auth)) {
    const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${e.code}</Code><Message>${xmlEscape(e.message)}</Message><RequestId>${randomUUID()}</RequestId></Error>`;
    return { status: e.status, headers: { 'content-type': 'application/xml' }, body: xml };
  }
  if (/\/batch\/aws4_request/.test(auth)) return { status: e.status, headers: { 'content-type': 'application/json', 'x-amzn-errortype': e.code }, body: JSON.stringify({ message: e.message }) };
  return { status: e.status, headers: { 'content-type': 'application/x-amz-json-1.1' }, body: JSON.stringify({ __type: e.code, message: e.message }) };
}
