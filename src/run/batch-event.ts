/**
 * "Batch Job State Change" events as EventBridge delivers them. Both executors emit exactly
 * this shape, so the local run drives the production notifier.
 */
import { z } from 'zod';
import { endReason, failureKind, jobEnd, type FailureKind } from './failure-kind.js';

const containerSchema = z
  .object({
    exitCode: z.number().optional(),
    reason: z.string().optional(),
    logStreamName: z.string().optional(),
  })
  .passthrough();

const attemptSchema = z.object({
  container: containerSchema.optional(),
  startedAt: z.number().optional(),
  stoppedAt: z.number().optional(),
  statusReason: z.string().optional(),
});

const batchStatusSchema = z.enum([
  'SUBMITTED',
  'PENDING',
  'RUNNABLE',
  'STARTING',
  'RUNNING',
  'SUCCEEDED',
  'FAILED',
]);

export const batchJobEventSchema = z.object({
  'detail-type': z.literal('Batch Job State Change'),
  source: z.literal('aws.batch'),
  id: z.string(),
  time: z.string(),
  detail: z
    .object({
      jobName: z.string(),
      jobId: z.string(),
      jobQueue: z.string().optional(),
      status: batchStatusSchema,
      statusReason: z.string().optional(),
      createdAt: z.number().optional(),
      startedAt: z.number().optional(),
      stoppedAt: z.number().optional(),
      attempts: z.array(attemptSchema).optional(),
      container: containerSchema.optional(),
      arrayProperties: z
        .object({
          index: z.number().int().optional(),
          size: z.number().int().optional(),
          statusSummary: z.record(z.string(), z.number()).optional(),
        })
        .optional(),
      dependsOn: z.array(z.object({ jobId: z.string() }).passthrough()).optional(),
      tags: z.record(z.string(), z.string()).optional(),
    })
    .passthrough(),
});

export type BatchJobEvent = z.infer<typeof batchJobEventSchema>;

/** Which of our jobs an event is about, read from the job name (`starfish-<run>-<role>`). */
export interface JobIdentity {
  runId: string;
  role: 'fov' | 'merge';
  /** Submission round: 0 for the launch, 1.. for retries. */
  round: number;
  /** Which FOV array of a round (several when a run exceeds 10,000 FOVs). */
  part: number;
  /** Set for a merge submitted after its dependencies failed. */
  salvage: boolean;
}

const JOB_NAME = /^starfish-([a-z0-9]+-[a-z0-9]+)(?:-r(\d+))?-(fov|merge)(?:-(\d+))?(-partial)?$/;

export function jobName(runId: string, role: 'fov' | 'merge', round = 0, part?: number, salvage = false): string {
  const r = round > 0 ? `-r${round}` : '';
  const p = part !== undefined ? `-${part}` : '';
  return `starfish-${runId}${r}-${role}${p}${salvage ? '-partial' : ''}`;
}

export function parseJobName(name: string): JobIdentity | undefined {
  const m = JOB_NAME.exec(name);
  if (!m) return undefined;
  return {
    runId: m[1]!,
    round: m[2] ? Number(m[2]) : 0,
    role: m[3] as 'fov' | 'merge',
    part: m[4] ? Number(m[4]) : 0,
    salvage: Boolean(m[5]),
  };
}

/** The log stream of the latest attempt, where Batch reports it. */
export function logStreamOf(event: BatchJobEvent): string | undefined {
  const attempts = event.detail.attempts ?? [];
  for (let i = attempts.length - 1; i >= 0; i--) {
    const stream = attempts[i]?.container?.logStreamName;
    if (stream) return stream;
  }
  return event.detail.container?.logStreamName;
}

/** What kind of failure Batch reports (src/run/failure-kind.ts), from the same fields as the reason. */
export const failureKindOf = (event: BatchJobEvent): FailureKind => failureKind(jobEnd(event.detail));

/** The most specific reason Batch gives for a failure. */
export const failureReasonOf = (event: BatchJobEvent): string => endReason(jobEnd(event.detail));
