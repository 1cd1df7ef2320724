/**
 * What the lifecycle decides from (facts) and what it asks the workers to do (effects). Facts
 * are what a worker learned: Batch states, clicks, commands, the time. Effects are what must be
 * posted, updated, submitted or terminated once the manifest that claims them is stored.
 */
import type { Settings } from '../core.js';
import type { JobDescription } from '../ports.js';
import type { FovFailure, RunManifest, Submission } from '../run/manifest.js';
import type { ResultsSummary } from '../run/results.js';
import type { Result } from '../result.js';
import type { ContainerTimes } from '../ports.js';

/** A merge job's end, known by its name (run, round, salvage) even before its id is recorded. */
export interface MergeOutcome {
  salvage: boolean;
  status: 'SUCCEEDED' | 'FAILED';
  /** Result files missing although the merge exited 0 (a disk that filled up, say). */
  incomplete?: string[];
  reason: string;
  logLink?: string;
  jobId: string;
  jobName: string;
}

/** A FOV that Batch reported failed, with the reason and log found for it. */
export type ObservedFailure = Omit<FovFailure, 'reported'>;

export type Fact =
  | {
      type: 'batch';
      /** The round the observations are about. */
      round: number;
      /** DescribeJobs of the round's arrays (empty when not asked). */
      arrays: JobDescription[];
      failures: ObservedFailure[];
      merges: MergeOutcome[];
      /** results/summary.json (written by a job: size-capped and validated, or why not) when the round's final merge succeeded. */
      summary?: Result<ResultsSummary>;
      /** With the summary: how long the run's FOV containers ran, as the executor recorded them. */
      containers?: ContainerTimes;
      /** A job of the round waiting in RUNNABLE longer than the stuck threshold. */
      stuck?: { minutes: number; reason?: string };
    }
  | { type: 'decision'; decision: 'approved' | 'rejected'; by: string; reason?: string }
  | { type: 'cancel'; by: string }
  | { type: 'retry'; by: string }
  | { type: 'submitted'; submission: Submission }
  /** Batch refused a job of the round; `terminated` jobs already accepted were stopped, or not (`leftover`). */
  | { type: 'submit-failed'; reason: string; terminated: number; leftover?: { error: string; jobIds: string[] } }
  | { type: 'salvage-submitted'; round: number; job: { jobId: string; jobName: string } }
  | { type: 'message-posted'; ref: { channel: string; ts: string } }
  | { type: 'post-failed'; reason: string }
  /** A results or picture delivery claimed at `since` went through. */
  | { type: 'delivered'; since: number }
  /** Only the clock moved: approvals expire, stale deliveries are taken over. */
  | { type: 'tick' };

export type Effect =
  /** Redraw the run's root message. `restore` is the progress claim to give back if it fails. */
  | { type: 'update-root'; restore?: { key?: string | undefined; at?: number | undefined } }
  | { type: 'digest'; failures: FovFailure[]; roundFailed: number; restoreAt?: number | undefined }
  /** `summary` as shown: Batch's FOV counts, the job's spot counts; `problem` when summary.json was unusable. */
  | { type: 'results'; summary: ResultsSummary; problem?: string | undefined }
  | { type: 'failed-run'; reason: string; logLink?: string | undefined }
  | { type: 'picture' }
  | { type: 'notice'; text: string; tone?: 'error' }
  /** A thread reply that must be given back as a stuck warning if it fails. */
  | { type: 'stuck-warning'; text: string }
  | { type: 'submit-round'; round: number; fovs: string }
  | { type: 'submit-salvage'; round: number }
  /** `pendingRound`: also the jobs a round being submitted has recorded in its claim. */
  | { type: 'terminate'; jobIds: string[]; reason: string; pendingRound?: number }
  /**
   * The one answer to whoever brought the fact (ephemeral): what was done, or why nothing was.
   * The command's own acknowledgement says nothing, so that the two never contradict.
   */
  | { type: 'answer'; text: string; refusal: boolean };

/** Effects whose delivery is claimed with `deliveringSince` and confirmed by a `delivered` fact. */
export const DELIVERIES: ReadonlySet<Effect['type']> = new Set(['results', 'failed-run', 'picture']);

export interface DecideContext {
  now: number;
  settings: Pick<Settings, 'progressIntervalMs' | 'digestIntervalMs'>;
}

export interface Decision {
  /** The manifest to store; undefined when nothing changes. */
  next: RunManifest | undefined;
  effects: Effect[];
}
