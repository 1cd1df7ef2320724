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
import type { BatchClient, JobDetail, RetryStrategy, SubmitJobRequest } from '@aws-sdk/client-batch';
import type { ArraySpec, BatchStatus, Executor, JobDescription, StatusSummary, SubmitSpec, SubmittedJob, FailedChild } from '../ports.js';
import type { Logger } from '../core.js';
import { silentLogger } from '../core.js';

const sdk = () => import('@aws-sdk/client-batch');

/** Batch limits (AWS Batch User Guide: array jobs, job dependencies; DescribeJobs API). */
const BATCH_LIMITS = { maxArraySize: 10_000, maxDependencies: 20, describeChunk: 100, maxReasonChars: 1024 } as const;

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
}

const chunks = <T>(items: T[], size: number): T[][] => {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
};

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
      tags: { 'starfish:run-id': spec.runId, 'starfish:requester': spec.requester },
      // The tags reach the ECS tasks too, so cost reports split by run and requester.
      propagateTags: true,
      retryStrategy: RETRY_STRATEGY,
    };
  }

  private async submit(input: SubmitJobRequest): Promise<SubmittedJob> {
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
    const out = await Promise.all(chunks(jobIds, BATCH_LIMITS.describeChunk).map((jobs) => client.send(new DescribeJobsCommand({ jobs }))));
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

  async failedChildren(arrayJobId: string): Promise<FailedChild[]> {
    const { ListJobsCommand } = await sdk();
    const client = await this.client();
    const ids: string[] = [];
    let nextToken: string | undefined;
    do {
      const out = await client.send(new ListJobsCommand({ arrayJobId, jobStatus: 'FAILED', ...(nextToken ? { nextToken } : {}) }));
      for (const j of out.jobSummaryList ?? []) if (j.jobId) ids.push(j.jobId);
      nextToken = out.nextToken;
    } while (nextToken);
    // ListJobs has no log stream: DescribeJobs of the children (100 at a time) has.
    return (await this.describeRaw(ids)).flatMap((d) => {
      const index = d.arrayProperties?.index;
      if (index === undefined) return [];
      const attempt = d.attempts?.at(-1);
      const container = attempt?.container ?? d.container;
      const reason = [container?.reason ?? attempt?.statusReason ?? d.statusReason, container?.exitCode ? `exit code ${container.exitCode}` : undefined].filter(Boolean).join(', ');
      const stream = container?.logStreamName;
      return [{ index, reason: reason || 'no reason given by AWS Batch', ...(stream ? { logStreamName: stream } : {}) }];
    });
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
   * Terminates the jobs (TerminateJob on an array parent terminates its children; on a pending
   * merge it cancels it). Jobs already finished are skipped. Every job is tried; if any could
   * not be terminated, throws naming them, so that no orphan goes unnoticed.
   */
  async cancel(jobIds: string[], reason: string): Promise<void> {
    const ids = [...new Set(jobIds)];
    if (!ids.length) return;
    let finished = new Set<string>();
    try {
      finished = new Set((await this.describeRaw(ids)).filter((d) => d.jobId && FINISHED.has(d.status ?? '')).map((d) => d.jobId!));
    } catch (error) {
      // Terminating a finished job is harmless; not terminating a running one is not.
      this.log.warn({ err: (error as Error).message }, 'could not describe jobs before terminating them; terminating all');
    }
    const { TerminateJobCommand } = await sdk();
    const client = await this.client();
    const clipped = reason.length > BATCH_LIMITS.maxReasonChars ? `${reason.slice(0, BATCH_LIMITS.maxReasonChars - 1)}…` : reason;
    const failed: string[] = [];
    await Promise.all(
      ids
        .filter((id) => !finished.has(id))
        .map(async (jobId) => {
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
