/**
 * What AWS takes, each limit with where AWS says so, and a checker that holds every request the
 * endpoint recorded (test/aws/wire/endpoint.ts) against them. The requests are judged as they
 * were on the wire: the bytes the SDK sent, the S3 keys as S3 would store them (decoded).
 */
import type { RecordedRequest } from './endpoint.js';

export interface Limit {
  max: number;
  /** Where AWS documents it: document title and section. */
  source: string;
}

export const LIMITS = {
  overridesChars: {
    max: 8_192,
    source:
      'Amazon ECS API Reference, RunTask, request parameter "overrides": "A total of 8192 characters are allowed for overrides. This limit includes the JSON formatting characters of the override structure." (Batch passes a job\'s container overrides to the ECS task; past this the job fails with "Container Overrides length must be at most 8192")',
  },
  submitPayloadBytes: {
    max: 30 * 1024,
    source: 'AWS Batch User Guide, "Resource: AWS Batch service quotas": "Maximum job payload size (for SubmitJob API operations): 30 KiB"',
  },
  arraySizeMin: { max: 2, source: 'AWS Batch API Reference, SubmitJob, "arrayProperties" (ArrayProperties.size): "The array size can be between 2 and 10,000."' },
  arraySizeMax: { max: 10_000, source: 'AWS Batch API Reference, SubmitJob, "arrayProperties" (ArrayProperties.size): "The array size can be between 2 and 10,000."; AWS Batch service quotas: "Maximum array size for array jobs: 10000"' },
  dependsOn: { max: 20, source: 'AWS Batch API Reference, SubmitJob, "dependsOn": "A job can depend upon a maximum of 20 jobs."; AWS Batch service quotas: "Maximum number of job dependencies for a job: 20"' },
  jobNameChars: {
    max: 128,
    source: 'AWS Batch API Reference, SubmitJob, "jobName": "It can be up to 128 letters long. The first character must be alphanumeric, can contain uppercase and lowercase letters, numbers, hyphens (-), and underscores (_)."',
  },
  tags: { max: 50, source: 'AWS Batch API Reference, SubmitJob, "tags": Map Entries: maximum 50 items; key length 1 to 128, value length at most 256' },
  tagKeyChars: { max: 128, source: 'AWS Batch API Reference, SubmitJob, "tags": key length 1 to 128' },
  tagValueChars: { max: 256, source: 'AWS Batch API Reference, SubmitJob, "tags": value length at most 256' },
  describeJobsIds: { max: 100, source: 'AWS Batch API Reference, DescribeJobs, request parameter "jobs": "A list of up to 100 job IDs."' },
  terminateReasonChars: { max: 1_024, source: 'AWS Batch API Reference, TerminateJob, request parameter "reason": "This parameter has as limit of 1024 characters."' },
  putEventsEntries: { max: 10, source: 'Amazon EventBridge API Reference, PutEvents, request parameter "Entries": Array Members: minimum 1 item, maximum 10 items' },
  putEventsEntryBytes: {
    max: 256 * 1024,
    source:
      'Amazon EventBridge User Guide, "Calculating Amazon EventBridge PutEvents event entry size": the total entry size must be less than 256KB; Time counts 14 bytes, Source, DetailType, Detail and each of Resources their UTF-8 bytes',
  },
  s3KeyBytes: {
    max: 1_024,
    source: 'Amazon S3 User Guide, "Naming Amazon S3 objects" (Object key naming): "The object key name is a sequence of Unicode characters with UTF-8 encoding of up to 1,024 bytes long."',
  },
} as const satisfies Record<string, Limit>;

export interface Violation {
  /** The request's position in the recording. */
  index: number;
  operation: string;
  limit: keyof typeof LIMITS | 'required';
  what: string;
  source: string;
}

type Check = (body: Record<string, unknown>, add: (limit: Violation['limit'], what: string) => void) => void;

const utf8 = (s: unknown) => (typeof s === 'string' ? Buffer.byteLength(s, 'utf8') : 0);
const JOB_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

/** Members the API reference marks "Required: Yes". */
function required(body: Record<string, unknown>, names: string[], add: (limit: 'required', what: string) => void): void {
  for (const name of names) if (body[name] === undefined || body[name] === '') add('required', `"${name}" is required and missing`);
}

const checkArrayAndDependencies: Check = (body, add) => {
  const size = (body.arrayProperties as { size?: number } | undefined)?.size;
  if (size !== undefined && size < LIMITS.arraySizeMin.max) add('arraySizeMin', `arrayProperties.size is ${size}`);
  if (size !== undefined && size > LIMITS.arraySizeMax.max) add('arraySizeMax', `arrayProperties.size is ${size}`);
  const deps = (body.dependsOn as unknown[] | undefined)?.length ?? 0;
  if (deps > LIMITS.dependsOn.max) add('dependsOn', `dependsOn has ${deps} jobs`);
};

const checkTags: Check = (body, add) => {
  const tags = Object.entries((body.tags as Record<string, string> | undefined) ?? {});
  if (tags.length > LIMITS.tags.max) add('tags', `${tags.length} tags`);
  for (const [k, v] of tags) {
    if (k.length < 1 || k.length > LIMITS.tagKeyChars.max) add('tagKeyChars', `tag key ${JSON.stringify(k.slice(0, 40))} is ${k.length} characters`);
    if (v.length > LIMITS.tagValueChars.max) add('tagValueChars', `tag ${k} is ${v.length} characters`);
  }
};

const checkSubmitJob: Check = (body, add) => {
  required(body, ['jobName', 'jobQueue', 'jobDefinition'], add);
  const overrides = JSON.stringify(body.containerOverrides ?? {}).length;
  if (overrides > LIMITS.overridesChars.max) add('overridesChars', `containerOverrides are ${overrides} characters`);
  const name = String(body.jobName ?? '');
  if (name.length > LIMITS.jobNameChars.max || !JOB_NAME.test(name)) add('jobNameChars', `jobName ${JSON.stringify(name.slice(0, 60))} (${name.length} characters) is not a Batch job name`);
  checkArrayAndDependencies(body, add);
  checkTags(body, add);
};

const checkDescribeJobs: Check = (body, add) => {
  required(body, ['jobs'], add);
  const ids = (body.jobs as unknown[] | undefined)?.length ?? 0;
  if (ids > LIMITS.describeJobsIds.max) add('describeJobsIds', `jobs has ${ids} ids`);
};

const checkTerminateJob: Check = (body, add) => {
  required(body, ['jobId', 'reason'], add);
  const reason = String(body.reason ?? '');
  if (reason.length > LIMITS.terminateReasonChars.max) add('terminateReasonChars', `reason is ${reason.length} characters`);
};

/** One entry's size as EventBridge computes it (the user guide's getSize). */
export function putEventsEntrySize(entry: Record<string, unknown>): number {
  let size = entry.Time !== undefined ? 14 : 0;
  size += utf8(entry.Source) + utf8(entry.DetailType) + utf8(entry.Detail);
  for (const r of (entry.Resources as unknown[] | undefined) ?? []) size += utf8(r);
  return size;
}

const checkPutEvents: Check = (body, add) => {
  const entries = (body.Entries as Array<Record<string, unknown>> | undefined) ?? [];
  if (entries.length < 1 || entries.length > LIMITS.putEventsEntries.max) add('putEventsEntries', `Entries has ${entries.length} entries`);
  const total = entries.reduce((n, e) => n + putEventsEntrySize(e), 0);
  if (total > LIMITS.putEventsEntryBytes.max) add('putEventsEntryBytes', `the entries are ${total} bytes`);
  // "Detail, DetailType, and Source are required for EventBridge to successfully send an event" (PutEventsRequestEntry).
  entries.forEach((e, i) => required(e, ['Source', 'DetailType', 'Detail'], (limit, what) => add(limit, `Entries[${i}]: ${what}`)));
};

const JSON_CHECKS: Record<string, Check> = { SubmitJob: checkSubmitJob, DescribeJobs: checkDescribeJobs, TerminateJob: checkTerminateJob, PutEvents: checkPutEvents };

/** The decoded keys an S3 request names: its own, and a copy's source. */
function s3Keys(r: RecordedRequest): string[] {
  const path = r.path.split('?')[0]!;
  const [, , ...rest] = path.split('/');
  const keys = rest.length ? [rest.map(decodeURIComponent).join('/')] : [];
  const source = r.headers['x-amz-copy-source'];
  if (source) keys.push(decodeURIComponent(source.replace(/^\//, '').replace(/\?versionId=.*$/, '')).replace(/^[^/]*\//, ''));
  return keys.filter(Boolean);
}

/** Every way the recorded requests break a limit above; empty when AWS would take them all. */
export function violations(requests: readonly RecordedRequest[]): Violation[] {
  const out: Violation[] = [];
  requests.forEach((r, index) => {
    const add = (limit: Violation['limit'], what: string) =>
      out.push({ index, operation: r.operation, limit, what, source: limit === 'required' ? `the ${r.operation} API reference ("Required: Yes")` : LIMITS[limit].source });
    if (r.service === 's3') {
      for (const key of s3Keys(r)) if (utf8(key) > LIMITS.s3KeyBytes.max) add('s3KeyBytes', `key ${JSON.stringify(key.slice(0, 60))}… is ${utf8(key)} bytes`);
      return;
    }
    if (r.operation === 'SubmitJob' && r.body.length > LIMITS.submitPayloadBytes.max) add('submitPayloadBytes', `the request body is ${r.body.length} bytes`);
    const check = JSON_CHECKS[r.operation];
    if (check) check(JSON.parse(r.body.toString('utf8')) as Record<string, unknown>, add);
  });
  return out;
}
