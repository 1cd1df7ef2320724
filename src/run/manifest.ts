/**
 * The run manifest, runs/<run-id>/run.json: everything about a run, so that no database is
 * needed. Every read goes through the schema; every write is a compare-and-swap.
 */
import { z } from 'zod';
import { FAILURE_KINDS } from './failure-kind.js';
import { queuePriceSchema } from './cost.js';

const fovSelectionSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('all') }),
  z.object({ kind: z.literal('first'), count: z.number().int().positive() }),
  z.object({ kind: z.literal('list'), ranges: z.array(z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()])).min(1) }),
]);

export const runRequestSchema = z.object({
  experiment: z.string().min(1),
  recipe: z.string().min(1).optional(),
  fovs: fovSelectionSchema,
  queue: z.string().optional(),
  name: z.string().optional(),
  dryRun: z.boolean(),
});
export type RunRequest = z.infer<typeof runRequestSchema>;

/**
 * One Batch submission unit: a plain job (size 1) or an array of up to 10,000 children. Its FOVs
 * are range text, the one form a FOV set takes from the plan to the container (its FOV list
 * object): child i processes the FOVs at positions i*perChild … (i+1)*perChild-1 of it (one FOV
 * each when perChild is absent). Manifests written before units carried range text (offset for
 * contiguous FOVs, fovList for scattered ones) are read into the same form.
 */
export const workUnitSchema = z.preprocess(
  (raw) => {
    const u = raw as { size?: number; offset?: number; fovList?: string; fovs?: string };
    if (typeof u !== 'object' || u === null || u.fovs !== undefined) return raw;
    if (u.offset !== undefined && u.size !== undefined) return { size: u.size, fovs: u.size === 1 ? `${u.offset}` : `${u.offset}-${u.offset + u.size - 1}` };
    return { size: u.size, fovs: u.fovList };
  },
  z.object({ size: z.number().int().positive(), fovs: z.string().min(1), perChild: z.number().int().min(2).max(10_000).optional() }),
);
export type WorkUnit = z.infer<typeof workUnitSchema>;

const planSchema = z.object({
  experimentFovCount: z.number().int().nonnegative(),
  /** The selected FOV indices as compact ranges, e.g. "0-9999". */
  fovs: z.string(),
  fovCount: z.number().int().nonnegative(),
  units: z.array(workUnitSchema),
  /** FOVs per array child (packing); absent is one. Retries pack the same way. */
  perChild: z.number().int().min(2).max(10_000).optional(),
});
export type Plan = z.infer<typeof planSchema>;

const runStatusSchema = z.enum([
  'planned',
  'awaiting-approval',
  'rejected',
  'expired',
  'submitting',
  'running',
  'merging',
  'succeeded',
  'partially-failed',
  'failed',
  'cancelled',
]);
export type RunStatus = z.infer<typeof runStatusSchema>;
export const TERMINAL: ReadonlySet<RunStatus> = new Set(['planned', 'rejected', 'expired', 'succeeded', 'partially-failed', 'failed', 'cancelled']);

const jobRefSchema = z.object({ jobId: z.string(), jobName: z.string() });

const submissionSchema = z.object({
  round: z.number().int().nonnegative(),
  submittedAt: z.string(),
  fovs: z.string(),
  arrays: z.array(jobRefSchema.extend({ unit: workUnitSchema })),
  merge: jobRefSchema.optional(),
  /** A merge submitted without dependencies after some FOVs failed (Batch fails a dependent job). */
  salvageMerge: jobRefSchema.optional(),
});
export type Submission = z.infer<typeof submissionSchema>;

const failureSchema = z.object({
  fov: z.number().int().nonnegative(),
  reason: z.string(),
  /** From the executor's report of the job's end (src/run/failure-kind.ts); absent in older manifests. */
  kind: z.enum(FAILURE_KINDS).optional(),
  logLink: z.string().optional(),
  jobId: z.string(),
  round: z.number().int().nonnegative(),
  reported: z.boolean(),
});
export type FovFailure = z.infer<typeof failureSchema>;

const progressSchema = z.object({
  total: z.number().int().nonnegative(),
  succeeded: z.number().int().nonnegative(),
  failed: z.number().int().nonnegative(),
  running: z.number().int().nonnegative(),
  waiting: z.number().int().nonnegative(),
  /** When the round's first FOV ended: the ETA's rate counts from here (absent: from the submission). */
  firstEndedAt: z.string().optional(),
});
export type Progress = z.infer<typeof progressSchema>;

const approvalSchema = z.object({
  required: z.boolean(),
  reasons: z.array(z.string()),
  expiresAt: z.string().optional(),
  decision: z.enum(['approved', 'rejected', 'expired']).optional(),
  decidedBy: z.string().optional(),
  decidedAt: z.string().optional(),
  /** Why it was rejected, as the approver typed it (shown escaped). */
  reason: z.string().max(300).optional(),
});

const resultsSchema = z.object({
  spotsTotal: z.number().int().nonnegative(),
  fovsProcessed: z.number().int().nonnegative(),
  fovsMissing: z.array(z.number().int()),
  topGenes: z.array(z.tuple([z.string(), z.number()])),
  /** The FOVs' measured time, from summary.json's "compute" (src/run/cost.ts recordedCompute); absent for older runs. */
  compute: z.object({ fovs: z.number().int().nonnegative(), wallSeconds: z.number().nonnegative(), cpuSeconds: z.number().nonnegative() }).optional(),
  /** How long the FOV containers ran, from Batch's (the executor's) start and stop of each: what compute is billed on. */
  containers: z.object({ containers: z.number().int().nonnegative(), seconds: z.number().nonnegative() }).optional(),
});

/**
 * What the run was expected to take and cost at launch, with the price it was estimated at, so
 * that the actual cost and the budgets use the same price even after the lab changes it.
 */
const estimateSchema = z.object({
  secondsPerFov: z.number().nonnegative(),
  source: z.enum(['history', 'default']),
  historyRuns: z.number().int().nonnegative(),
  fovsPerChild: z.number().int().positive(),
  children: z.number().int().nonnegative(),
  billedSeconds: z.number().nonnegative(),
  vcpuHours: z.number().nonnegative(),
  usd: z.number().nonnegative(),
  wallSeconds: z.number().nonnegative(),
  parallel: z.number().int().positive(),
  price: queuePriceSchema,
});
export type RunEstimate = z.infer<typeof estimateSchema>;

export const manifestSchema = z.object({
  version: z.literal(1),
  runId: z.string(),
  createdAt: z.string(),
  updatedAt: z.string(),
  requester: z.object({ userId: z.string(), channel: z.string() }),
  request: runRequestSchema,
  /** The experiment, the recipe snapshot, and the run's outputs prefix (outputs/<run-id>), as the containers see them. */
  inputs: z.object({
    experiment: z.string(),
    recipe: z.string(),
    output: z.string(),
    /** sha256 of the recipe as copied at launch: runs of the same recipe share their timings. */
    recipeSha256: z.string().optional(),
  }),
  queue: z.string(),
  plan: planSchema,
  approval: approvalSchema,
  status: runStatusSchema,
  statusReason: z.string().optional(),
  message: z.object({ channel: z.string(), ts: z.string() }).optional(),
  submissions: z.array(submissionSchema),
  /** Set with status 'submitting': which round and FOVs to submit, so that a crash can be resumed. */
  pendingSubmission: z.object({ round: z.number().int().nonnegative(), fovs: z.string() }).optional(),
  progress: progressSchema,
  failures: z.array(failureSchema),
  notify: z.object({
    lastProgressAt: z.number().optional(),
    lastProgressKey: z.string().optional(),
    lastDigestAt: z.number().optional(),
    resultsPosted: z.boolean(),
    /** The spots picture is owed to the thread (results posted, upload not yet done). */
    picturePending: z.boolean().optional(),
    /** When results or the picture were claimed for sending; cleared once sent. */
    deliveringSince: z.number().optional(),
    stuckWarnedAt: z.number().optional(),
  }),
  results: resultsSchema.optional(),
  estimate: estimateSchema.optional(),
});
export type RunManifest = z.infer<typeof manifestSchema>;
