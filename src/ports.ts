/**
 * The four ports the core talks through (DESIGN.md "Ports and adapters"), plus the reader used
 * for inputs that live outside the results store. Nothing in the core imports an SDK; the AWS
 * adapters (src/aws) and the embedded ones (src/local) implement these.
 */
import type { FailureKind } from './run/failure-kind.js';
import type { Message } from './messages/message.js';
import type { Result } from './result.js';
import type { RunEvent } from './run/run-events.js';
import type { BatchJobEvent } from './run/batch-event.js';

export interface StoredObject {
  body: Buffer;
  etag: string;
  /** Set when the object is larger than the `maxBytes` asked for; `body` then holds only that much. */
  tooLarge?: boolean;
}

/** For objects a job wrote: read at most this much, so that a hostile job cannot exhaust memory. */
export interface GetOptions {
  maxBytes?: number;
}

/** Objects under keys like `runs/<id>/run.json`. */
export interface Store {
  get(key: string, options?: GetOptions): Promise<StoredObject | undefined>;
  put(key: string, body: Buffer | string): Promise<{ etag: string }>;
  /** Writes only if nothing exists at key: 'exists' means another writer won. */
  createIfAbsent(key: string, body: Buffer | string): Promise<{ etag: string } | 'exists'>;
  /** Compare-and-swap on the etag: 'conflict' means the object changed since it was read. */
  replaceIf(key: string, body: Buffer | string, etag: string): Promise<{ etag: string } | 'conflict'>;
  delete(key: string): Promise<void>;
  list(prefix: string): Promise<string[]>;
  /**
   * The names of the "folders" directly under prefix (run ids under runs/), without their
   * contents, sorted; with `startAfter`, only the names after it (S3 lists from there on, so a
   * run id's day bounds what is read).
   */
  listFolders(prefix: string, startAfter?: string): Promise<string[]>;
  /** Where the containers find this key: a path locally, s3://bucket/key on AWS. */
  locate(key: string): string;
  /** A link a person can click to download the object. */
  downloadLink(key: string): Promise<string>;
}

/** Reads inputs by URL or path (experiments, recipes) and copies them (staging). */
export interface Reader {
  /** With `maxBytes`, an input larger than that is refused before it is read whole. */
  read(url: string, options?: GetOptions): Promise<Buffer>;
  copy(fromUrl: string, toUrl: string): Promise<void>;
  /** Refuses a URL the deployment may not read, with a message for the scientist. */
  checkReadable(url: string): Result<void>;
}

export interface ArraySpec {
  /** Job name; carries the run id so every Batch event maps back to its run. */
  name: string;
  /** Number of children; 1 means a plain job. */
  size: number;
  environment: Record<string, string>;
}

export interface SubmitSpec {
  runId: string;
  requester: string;
  queue: string;
}

export interface SubmittedJob {
  jobId: string;
  jobName: string;
}

export type BatchStatus =
  | 'SUBMITTED'
  | 'PENDING'
  | 'RUNNABLE'
  | 'STARTING'
  | 'RUNNING'
  | 'SUCCEEDED'
  | 'FAILED';

export type StatusSummary = Partial<Record<BatchStatus, number>>;

export interface JobDescription {
  jobId: string;
  jobName: string;
  status: BatchStatus;
  statusReason?: string;
  /** Array parents only. */
  statusSummary?: StatusSummary;
  size?: number;
  /** When the job entered its current status (ms since epoch), used to spot stuck jobs. */
  since?: number;
}

export interface FailedChild {
  index: number;
  reason: string;
  kind: FailureKind;
  logStreamName?: string;
}

/** How long a job's containers ran: each child's stop less its start, summed (what compute is billed on). */
export interface ContainerTimes {
  containers: number;
  seconds: number;
}

export interface Executor {
  submitFovs(spec: SubmitSpec, array: ArraySpec): Promise<SubmittedJob>;
  submitMerge(
    spec: SubmitSpec,
    merge: { name: string; environment: Record<string, string> },
    dependsOn: string[],
  ): Promise<SubmittedJob>;
  describe(jobIds: string[]): Promise<JobDescription[]>;
  cancel(jobIds: string[], reason: string): Promise<void>;
  /** The failed children of an array job, for when their own events were lost (reconciler). */
  failedChildren(arrayJobId: string): Promise<FailedChild[]>;
  /** How long the containers of an ended FOV job ran, as the executor recorded each start and stop. */
  containerTimes(jobId: string): Promise<ContainerTimes>;
  /** The link to one attempt's log (CloudWatch console on AWS, a file locally). */
  logLink(logStreamName: string): string;
}

/** Run events: requests from people, published by the chat side, consumed by the launcher. */
export interface Bus {
  publish(event: RunEvent): Promise<void>;
}

/** Sink for Batch-shaped job state changes (EventBridge → SQS on AWS, a queue locally). */
export type JobEventSink = (events: BatchJobEvent[]) => Promise<void>;

export interface DeadLetterReport {
  received: number;
  replayed: number;
  failed: number;
  /** Messages that are not Batch events, left for a person (replaying a run request could launch twice). */
  left: number;
}

/** Notifications that failed too often (an SQS dead-letter queue on AWS, a list locally). */
export interface DeadLetters {
  /** Hands the dead Batch events to `handle`; those it processes are removed, the rest stay. */
  replay(handle: (events: unknown[]) => Promise<{ failedEventIds: string[] }>): Promise<DeadLetterReport>;
}

export interface MessageRef {
  channel: string;
  ts: string;
}

export interface Chat {
  post(channel: string, message: Message): Promise<MessageRef>;
  update(ref: MessageRef, message: Message): Promise<void>;
  reply(ref: MessageRef, message: Message): Promise<MessageRef>;
  /**
   * Shown only to `user`. `responseUrl` (Slack's response_url of the command or click) answers
   * even in a channel the bot is not a member of.
   */
  ephemeral(channel: string, user: string, message: Message, responseUrl?: string): Promise<void>;
  upload(ref: MessageRef, file: { filename: string; title: string; bytes: Buffer }): Promise<void>;
}

export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
