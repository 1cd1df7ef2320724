/**
 * The Executor port on AWS Batch. One FOV unit is one SubmitJob: an array job (2 to 10,000
 * children) or a plain job for a single FOV; the merge is one more job that depends on every
 * array. Jobs carry the run id in their name (events map back to runs) and in their tags
 * (costs and console searches map back to runs and people). Spot reclaims are retried by Batch
 * itself; any other failure is final, and reported by the notifier with its log link.
 *
 * The Batch SDK is loaded on first use, so that the Slack Lambda (which never submits) does not
 * pay for it at cold start.
 */
import pLimit from 'p-limit';
import type { BatchClient, JobDetail, JobSummary, RetryStrategy, SubmitJobRequest } from '@aws-sdk/client-batch';
import type { ArraySpec, BatchStatus, ContainerTimes, Executor, JobDescription, StatusSummary, SubmitSpec, SubmittedJob, FailedChild } from '../ports.js';
import type { Logger } from '../core.js';
import { silentLogger } from '../core.js';
import { parseJobName } from '../run/batch-event.js';
import { endReason, failureKind, jobEnd } from '../run/failure-kind.js';

const sdk = () => import('@aws-sdk/client-batch');

/** Batch limits (AWS Batch User Guide: array jobs, job dependencies; DescribeJobs API). */
const BATCH_LIMITS = { maxArraySize: 10_000, maxDependencies: 20, describeChunk: 100, maxReasonChars: 1024 } as const;
const DESCRIBE_CONCURRENCY = 4;
/** ListJobs' largest page (AWS Batch API Reference, ListJobs maxResults: 1 to 1,000). */
const LIST_PAGE = 1_000;

/**
 * What AWS takes in one SubmitJob. Container overrides become the ECS task's overrides, "a total
 * of 8192 characters … including the JSON formatting characters" (ECS API Reference, RunTask
 * `overrides`); Batch accepts a larger one and the job then fails. The request itself is at most
 * 30 KiB (AWS Batch User Guide, Service quotas: "SubmitJob request payload size"). Checked here,
 * where the request is built, so an oversized job is refused before anything runs.
 */
export const SUBMIT_LIMITS = { overridesChars: 8_192, payloadBytes: 30 * 1024 } as const;

function checkSubmitLimits(input: SubmitJobRequest): void {
  const overrides = JSON.stringify(input.containerOverrides ?? {}).length;
  if (overrides > SUBMIT_LIMITS.overridesChars) {
    throw new Error(`${input.jobName}'s container overrides are ${overrides} characters; AWS Batch runs at most ${SUBMIT_LIMITS.overridesChars} (shorten the experiment or recipe location)`);
  }
  const payload = Buffer.byteLength(JSON.stringify(input), 'utf8');
  if (payload > SUBMIT_LIMITS.payloadBytes) {
    throw new Error(`${input.jobName}'s SubmitJob request is ${payload} bytes; AWS Batch takes at most ${SUBMIT_LIMITS.payloadBytes}`);
  }
}

/** A failed array child as DescribeJobs reports it: why, what kind of failure, and its log stream. */
function failedChildOf(d: JobDetail): FailedChild[] {
  const index = d.arrayProperties?.index;
  if (index === undefined) return [];
  const end = jobEnd(d);
  return [{ index, reason: endReason(end), kind: failureKind(end), ...(end.logStreamName ? { logStreamName: end.logStreamName } : {}) }];
}

/**
 * Up to 3 attempts, but only when Spot capacity was reclaimed: on EC2 "Host EC2 (instance i-…)
 * terminated.", on Fargate Spot the task's stopped reason "Your Spot Task was interrupted.". A
 * recipe that raised would fail the same way again, and the person retries the failed FOVs
 * deliberately with /starfish retry.
 */
export const RETRY_STRATEGY: RetryStrategy = {
  attempts: 3,
  evaluateOnExit: [
    { onStatusReason: 'Host EC2*', action: 'RETRY' },
    { onStatusReason: 'Your Spot Task was interrupted*', action: 'RETRY' },
    { onReason: '*', action: 'EXIT' },
  ],
};

export const DEFAULT_LOG_GROUP = '/aws/batch/job';

/**
 * The tag every job this app submits carries. The events Lambda's IAM policy allows
 * batch:TerminateJob only on jobs tagged with it (infra/stack.ts), and `cancel` checks it (with
 * the job's name, run-id tag and queue) before each termination.
 */
export const APP_TAG = { key: 'starfish:app', value: 'starfish-chatops' } as const;
const RUN_ID_TAG = 'starfish:run-id';
const REQUESTER_TAG = 'starfish:requester';
/** The tag keys SubmitJob sets, and the only ones the events Lambda may put on a job (infra/stack.ts). */
export const JOB_TAG_KEYS = [APP_TAG.key, RUN_ID_TAG, REQUESTER_TAG] as const;

const STATUSES: ReadonlySet<string> = new Set(['SUBMITTED', 'PENDING', 'RUNNABLE', 'STARTING', 'RUNNING', 'SUCCEEDED', 'FAILED']);
const FINISHED: ReadonlySet<string> = new Set(['SUCCEEDED', 'FAILED']);

/** The escaping the CloudWatch console expects in its #logsV2 fragment: URI-encoded twice, % → $. */
export function consoleEscape(value: string): string {
  return encodeURIComponent(encodeURIComponent(value)).replace(/%/g, '$');
}

export function cloudWatchLogLink(region: string, logGroup: string, logStreamName: string): string {
  return `https://${region}.console.aws.amazon.com/cloudwatch/home?region=${region}#logsV2:log-groups/log-group/${consoleEscape(logGroup)}/log-events/${consoleEscape(logStreamName)}`;
}

export interface BatchExecutorOptions {
  client: BatchClient | (() => Promise<BatchClient>);
  /** Queue names people use (policy.queues) → job queue ARN or name. */
  queues: Record<string, string>;
  fovJobDefinition: string;
  mergeJobDefinition: string;
  /** Per-queue job definitions, e.g. the EC2 ones of a highmem queue; others use the two above. */
  queueJobDefinitions?: Record<string, { fov: string; merge: string }>;
  region: string;
  logGroup?: string;
  log?: Logger;
  /** How long `cancel` waits before describing again the jobs DescribeJobs did not return yet (default 1000 ms). */
  describeRetryMs?: number;
}

const chunks = <T>(items: T[], size: number): T[][] => {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
};

/** A job queue's name, from its ARN (`arn:aws:batch:<region>:<account>:job-queue/<name>`) or its name. */
const queueName = (queue: string): string => queue.replace(/^arn:[^:]+:batch:[^:]*:[^:]*:job-queue\//, '');

/**
 * Why a job is not one this app submitted, or undefined when it is: a starfish job name
 * (`starfish-<run-id>-…`, src/run/batch-event.ts), the app tag, a run-id tag naming the run in
 * its name, and one of this deployment's queues. A job id planted in a claim fails at least one.
 */
function notOurs(d: JobDetail, queues: ReadonlySet<string>): string | undefined {
  const identity = parseJobName(d.jobName ?? '');
  if (!identity) return `its name ${JSON.stringify(d.jobName ?? '')} is not a starfish job name`;
  const tags = d.tags ?? {};
  if (tags[APP_TAG.key] !== APP_TAG.value) return `it is not tagged ${APP_TAG.key}=${APP_TAG.value}`;
  if (tags[RUN_ID_TAG] !== identity.runId) return `its ${RUN_ID_TAG} tag (${tags[RUN_ID_TAG] ?? 'none'}) is not the run its name gives (${identity.runId})`;
  if (!d.jobQueue || !queues.has(queueName(d.jobQueue))) return `its queue ${d.jobQueue ?? '(none)'} is not one of this deployment's queues`;
  return undefined;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * When the job last changed state, as far as Batch says. A job waiting on dependencies enters
 * RUNNABLE only when they end: their stop times count too, or it would look stuck at once.
 */
function sinceOf(d: JobDetail, status: BatchStatus, byId: Map<string, JobDetail>): number | undefined {
  const times = [d.createdAt, d.startedAt, d.stoppedAt];
  if (status === 'RUNNABLE') for (const dep of d.dependsOn ?? []) times.push(dep.jobId ? byId.get(dep.jobId)?.stoppedAt : undefined);
  const known = times.filter((t): t is number => typeof t === 'number' && t > 0);
  return known.length ? Math.max(...known) : undefined;
}

/** An array parent's size and status summary; children carry an index only, plain jobs nothing. */
function arrayPartOf(d: JobDetail): Pick<JobDescription, 'size' | 'statusSummary'> {
  const array = d.arrayProperties;
  if (!array || array.index !== undefined || (array.statusSummary === undefined && array.size === undefined)) return {};
  const statusSummary: StatusSummary = {};
  for (const [k, v] of Object.entries(array.statusSummary ?? {})) if (STATUSES.has(k) && typeof v === 'number') statusSummary[k as BatchStatus] = v;
  return array.size === undefined ? { statusSummary } : { statusSummary, size: array.size };
}

export class BatchExecutor implements Executor {
  private readonly options: BatchExecutorOptions;
  private readonly log: Logger;

  constructor(options: BatchExecutorOptions) {
    this.options = options;
    this.log = options.log ?? silentLogger;
  }

  private async client(): Promise<BatchClient> {
    const c = this.options.client;
    return typeof c === 'function' ? c() : c;
  }

  private queueOf(name: string): string {
    const arn = this.options.queues[name];
    if (!arn) {
      const known = Object.keys(this.options.queues);
      throw new Error(`no AWS Batch job queue is configured for queue=${name}; configured: ${known.join(', ') || '(none)'} (STARFISH_JOB_QUEUES)`);
    }
    return arn;
  }

  private base(spec: SubmitSpec, name: string, jobDefinition: string, environment: Record<string, string>): SubmitJobRequest {
    return {
      jobName: name,
      jobQueue: this.queueOf(spec.queue),
      jobDefinition,
      containerOverrides: { environment: Object.entries(environment).map(([k, v]) => ({ name: k, value: v })) },
      // The app tag is what IAM lets the app terminate; the run and requester tags map jobs back
      // to runs and people. They reach the ECS tasks too, so cost reports split by run and requester.
      tags: { [APP_TAG.key]: APP_TAG.value, [RUN_ID_TAG]: spec.runId, [REQUESTER_TAG]: spec.requester },
      propagateTags: true,
      retryStrategy: RETRY_STRATEGY,
    };
  }

  private async submit(input: SubmitJobRequest): Promise<SubmittedJob> {
    checkSubmitLimits(input);
    const { SubmitJobCommand } = await sdk();
    const out = await (await this.client()).send(new SubmitJobCommand(input));
    if (!out.jobId) throw new Error(`AWS Batch accepted ${input.jobName} but returned no job id`);
    this.log.info({ jobName: input.jobName, jobId: out.jobId, size: input.arrayProperties?.size ?? 1 }, 'job submitted');
    return { jobId: out.jobId, jobName: out.jobName ?? input.jobName! };
  }

  async submitFovs(spec: SubmitSpec, array: ArraySpec): Promise<SubmittedJob> {
    if (!Number.isInteger(array.size) || array.size < 1 || array.size > BATCH_LIMITS.maxArraySize) {
      throw new Error(`an AWS Batch array holds 2 to ${BATCH_LIMITS.maxArraySize} children (1 is a plain job); ${array.name} asks for ${array.size}`);
    }
    const input = this.base(spec, array.name, this.options.queueJobDefinitions?.[spec.queue]?.fov ?? this.options.fovJobDefinition, array.environment);
    // Batch rejects an array of size 1: a single FOV is a plain job (no AWS_BATCH_JOB_ARRAY_INDEX,
    // which process-fov reads as index 0).
    if (array.size >= 2) input.arrayProperties = { size: array.size };
    return this.submit(input);
  }

  async submitMerge(spec: SubmitSpec, merge: { name: string; environment: Record<string, string> }, dependsOn: string[]): Promise<SubmittedJob> {
    const deps = [...new Set(dependsOn)];
    if (deps.length > BATCH_LIMITS.maxDependencies) {
      // Throwing here makes the launcher terminate the arrays it already submitted.
      throw new Error(
        `AWS Batch lets a job depend on at most ${BATCH_LIMITS.maxDependencies} jobs, and this merge would depend on ${deps.length} FOV jobs; select fewer FOVs (at most ${BATCH_LIMITS.maxDependencies * BATCH_LIMITS.maxArraySize} in contiguous ranges) or split the run`,
      );
    }
    const input = this.base(spec, merge.name, this.options.queueJobDefinitions?.[spec.queue]?.merge ?? this.options.mergeJobDefinition, merge.environment);
    // A plain dependency: the merge waits for each whole array. (N_TO_N would pair children.)
    if (deps.length) input.dependsOn = deps.map((jobId) => ({ jobId }));
    return this.submit(input);
  }

  private async describeRaw(jobIds: string[]): Promise<JobDetail[]> {
    if (!jobIds.length) return [];
    const { DescribeJobsCommand } = await sdk();
    const client = await this.client();
    // A few at a time: 10,000 failed children are 100 DescribeJobs, which at once would be throttled.
    const limit = pLimit(DESCRIBE_CONCURRENCY);
    const out = await Promise.all(chunks(jobIds, BATCH_LIMITS.describeChunk).map((jobs) => limit(() => client.send(new DescribeJobsCommand({ jobs })))));
    return out.flatMap((o) => o.jobs ?? []);
  }

  async describe(jobIds: string[]): Promise<JobDescription[]> {
    const ids = [...new Set(jobIds)];
    const details = await this.describeRaw(ids);
    const byId = new Map(details.filter((d) => d.jobId).map((d) => [d.jobId!, d]));
    // A job waiting on dependencies enters RUNNABLE only when they end, long after it was
    // created: its `since` is when the last dependency stopped, or it would look stuck at once.
    const missingDeps = [
      ...new Set(details.filter((d) => d.status === 'RUNNABLE').flatMap((d) => (d.dependsOn ?? []).map((x) => x.jobId).filter((id): id is string => !!id && !byId.has(id)))),
    ];
    for (const d of await this.describeRaw(missingDeps)) if (d.jobId) byId.set(d.jobId, d);
    return ids.flatMap((id) => {
      const d = byId.get(id);
      return d ? [this.toDescription(d, byId)] : [];
    });
  }

  /** The children of an array in one status, as ListJobs pages them (up to 1,000 a page). */
  private async children(arrayJobId: string, jobStatus: 'FAILED' | 'SUCCEEDED'): Promise<JobSummary[]> {
    const { ListJobsCommand } = await sdk();
    const client = await this.client();
    const out: JobSummary[] = [];
    let nextToken: string | undefined;
    do {
      const page = await client.send(new ListJobsCommand({ arrayJobId, jobStatus, maxResults: LIST_PAGE, ...(nextToken ? { nextToken } : {}) }));
      out.push(...(page.jobSummaryList ?? []));
      nextToken = page.nextToken;
    } while (nextToken);
    return out;
  }

  async failedChildren(arrayJobId: string): Promise<FailedChild[]> {
    const ids = (await this.children(arrayJobId, 'FAILED')).flatMap((j) => (j.jobId ? [j.jobId] : []));
    // ListJobs has no log stream: DescribeJobs of the children (100 at a time) has.
    return (await this.describeRaw(ids)).flatMap(failedChildOf);
  }

  /**
   * Batch's own start and stop of every child that ran (ListJobs, 1,000 a page: 10 calls for
   * 10,000 children), once per ended job, rather than the state-change events, which arrive at
   * least once and may be lost. A plain job is its own only child.
   */
  async containerTimes(jobId: string): Promise<ContainerTimes> {
    const [d] = await this.describeRaw([jobId]);
    const ran = (d?.arrayProperties?.size ?? 0) > 1 ? [...(await this.children(jobId, 'SUCCEEDED')), ...(await this.children(jobId, 'FAILED'))] : d ? [d] : [];
    let seconds = 0;
    let containers = 0;
    for (const j of ran) {
      if (j.startedAt === undefined || j.stoppedAt === undefined) continue;
      containers++;
      seconds += Math.max(0, j.stoppedAt - j.startedAt) / 1000;
    }
    return { containers, seconds };
  }

  private toDescription(d: JobDetail, byId: Map<string, JobDetail>): JobDescription {
    const status = (STATUSES.has(d.status ?? '') ? d.status : 'SUBMITTED') as BatchStatus;
    const out: JobDescription = { jobId: d.jobId!, jobName: d.jobName ?? '', status };
    if (d.statusReason) out.statusReason = d.statusReason;
    const since = sinceOf(d, status, byId);
    if (since !== undefined) out.since = since;
    return { ...out, ...arrayPartOf(d) };
  }

  /**
   * Describes the jobs, once more after a pause for those DescribeJobs does not return yet (a job
   * just submitted may not be visible at once). Throws when Batch cannot be asked: nothing is
   * terminated unchecked.
   */
  private async describeForCancel(ids: string[]): Promise<Map<string, JobDetail>> {
    const byId = new Map<string, JobDetail>();
    const add = (details: JobDetail[]) => details.forEach((d) => d.jobId && byId.set(d.jobId, d));
    add(await this.describeRaw(ids));
    const unseen = ids.filter((id) => !byId.has(id));
    if (unseen.length) {
      await sleep(this.options.describeRetryMs ?? 1000);
      add(await this.describeRaw(unseen));
    }
    return byId;
  }

  /** The jobs `cancel` may terminate, and the ones it refuses with why (logged, never terminated). */
  private vet(ids: string[], byId: Map<string, JobDetail>): { terminate: string[]; refused: string[] } {
    const queues = new Set(Object.values(this.options.queues).map(queueName));
    const terminate: string[] = [];
    const refused: string[] = [];
    for (const jobId of ids) {
      const d = byId.get(jobId);
      const why = d ? notOurs(d, queues) : 'DescribeJobs does not know it, so it cannot be checked';
      if (why) {
        this.log.error({ jobId, jobName: d?.jobName, jobQueue: d?.jobQueue, why }, 'refusing to terminate a job this app did not submit');
        refused.push(`${jobId} (not terminated: ${why})`);
      } else if (!FINISHED.has(d!.status ?? '')) {
        terminate.push(jobId);
      }
    }
    return { terminate, refused };
  }

  /**
   * Terminates the jobs (TerminateJob on an array parent terminates its children; on a pending
   * merge it cancels it). Each job is first checked to be this app's (`notOurs`): a job id that
   * is not, or that Batch does not know, is refused and logged, never terminated. Jobs already
   * finished are skipped. Every job is tried; if any was refused or could not be terminated,
   * throws naming them, so that no orphan (and no planted id) goes unnoticed.
   */
  async cancel(jobIds: string[], reason: string): Promise<void> {
    const ids = [...new Set(jobIds)];
    if (!ids.length) return;
    let byId: Map<string, JobDetail>;
    try {
      byId = await this.describeForCancel(ids);
    } catch (error) {
      throw new Error(`could not check ${ids.length} AWS Batch job(s) before terminating them, so none was terminated: ${(error as Error).message}`, { cause: error });
    }
    const { terminate, refused } = this.vet(ids, byId);
    const { TerminateJobCommand } = await sdk();
    const client = await this.client();
    const clipped = reason.length > BATCH_LIMITS.maxReasonChars ? `${reason.slice(0, BATCH_LIMITS.maxReasonChars - 1)}…` : reason;
    const failed: string[] = [...refused];
    await Promise.all(
      terminate.map(async (jobId) => {
        try {
          await client.send(new TerminateJobCommand({ jobId, reason: clipped }));
        } catch (error) {
          this.log.error({ jobId, err: (error as Error).message }, 'could not terminate job');
          failed.push(`${jobId} (${(error as Error).message})`);
        }
      }),
    );
    if (failed.length) throw new Error(`could not terminate ${failed.length} AWS Batch job(s): ${failed.join('; ')}`);
  }

  logLink(logStreamName: string): string {
    return cloudWatchLogLink(this.options.region, this.options.logGroup ?? DEFAULT_LOG_GROUP, logStreamName);
  }
}
