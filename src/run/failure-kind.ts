/**
 * Why a FOV job failed, in the words AWS Batch (or the local executor) uses, so that the advice
 * fits the failure: a retry fixes a reclaimed Spot instance, never a recipe bug or a missing tile.
 * Read from the job's end as the executor reports it (status reason, container reason, exit
 * code), never from what the job wrote to its outputs.
 */
export const FAILURE_KINDS = ['reclaimed', 'timeout', 'memory', 'interrupted', 'recipe', 'unknown'] as const;
export type FailureKind = (typeof FAILURE_KINDS)[number];

export interface JobEnd {
  statusReason?: string | undefined;
  containerReason?: string | undefined;
  exitCode?: number | undefined;
}

interface JobContainer {
  reason?: string | undefined;
  exitCode?: number | undefined;
  logStreamName?: string | undefined;
}

/** A job as DescribeJobs or its state-change event has it: the fields its end is read from. */
interface JobRecord {
  statusReason?: string | undefined;
  container?: JobContainer | undefined;
  attempts?: ReadonlyArray<{ statusReason?: string | undefined; container?: JobContainer | undefined }> | undefined;
}

/** How the last attempt of a job ended, as Batch and ECS report it. */
export function jobEnd(d: JobRecord): JobEnd & { logStreamName?: string | undefined } {
  const attempt = d.attempts?.at(-1);
  const container = attempt?.container ?? d.container;
  return { statusReason: attempt?.statusReason ?? d.statusReason, containerReason: container?.reason, exitCode: container?.exitCode, logStreamName: container?.logStreamName };
}

/** The most specific reason of a job's end (the container's, else the attempt's or the job's), with a non-zero exit code. */
export function endReason(end: JobEnd): string {
  return [end.containerReason || end.statusReason, end.exitCode ? `exit code ${end.exitCode}` : undefined].filter(Boolean).join(', ') || 'no reason given by AWS Batch';
}

/** process-fov exits 1 when the recipe or the data failed and 2 when the request was wrong (containers/README.md). */
const DETERMINISTIC_EXITS = new Set([1, 2]);
/** The kernel's OOM killer sends SIGKILL: 128 + 9. */
const KILLED = 137;

export function failureKind(end: JobEnd): FailureKind {
  const said = `${end.containerReason ?? ''}\n${end.statusReason ?? ''}`;
  // The retry strategy's own patterns (src/aws/batch-executor.ts RETRY_STRATEGY) and their Fargate twin.
  if (/Host EC2 \(instance [^)]*\) terminated|Your Spot Task was interrupted/i.test(said)) return 'reclaimed';
  if (/Job attempt duration exceeded timeout/i.test(said)) return 'timeout';
  if (/OutOfMemoryError|killed due to memory usage/i.test(said) || end.exitCode === KILLED) return 'memory';
  if (/^interrupted: the starfish command that ran it stopped/m.test(said)) return 'interrupted';
  if (end.exitCode !== undefined && DETERMINISTIC_EXITS.has(end.exitCode)) return 'recipe';
  return 'unknown';
}

/** Failures a plain retry (the same recipe, data and queue) can fix. */
export const RETRY_FIXES: ReadonlySet<FailureKind> = new Set(['reclaimed', 'timeout', 'interrupted', 'unknown']);
