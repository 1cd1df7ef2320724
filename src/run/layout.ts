/**
 * The storage layout: every key the system reads or writes, and who may write it. Nothing else
 * builds a key. Control state (what decisions are taken from) and job outputs (what untrusted
 * recipe code writes) live under separate prefixes, so that IAM can grant the jobs write access
 * to `outputs/` only. The table in README.md "Storage layout" is this module in prose.
 */
import { createHash } from 'node:crypto';

export const RUNS_PREFIX = 'runs/';
const OUTPUTS_PREFIX = 'outputs/';
const EXPERIMENTS_PREFIX = 'experiments/';
const REQUESTS_PREFIX = 'requests/';

const fovStem = (fov: number) => `fov_${String(fov).padStart(3, '0')}`;

/** Keys of one run. */
export function runKeys(runId: string) {
  const control = `${RUNS_PREFIX}${runId}`;
  const outputs = `${OUTPUTS_PREFIX}${runId}`;
  return {
    /** The manifest: compare-and-swap by the control plane only. */
    manifest: `${control}/run.json`,
    /** Claims taken before a side effect (a submission, a salvage merge): conditional create. */
    claim: (name: string) => `${control}/claims/${name}`,
    /** The recipe and experiment.json as they were at launch; jobs read them, never write. */
    recipeSnapshot: `${control}/inputs/recipe.py`,
    experimentSnapshot: `${control}/inputs/experiment.json`,
    /**
     * The FOVs a job works on, as {"fovs": range text}: one object per FOV array of a round, and
     * one for the whole plan (what every merge expects). A FOV list grows with the experiment, and
     * a job's environment may not (Batch caps container overrides at 8,192 characters), so the
     * job gets this object's location. Written by the control plane under its submission claim.
     */
    fovsInput: (round: number, part: number) => `${control}/inputs/fovs-r${round}-${part}.json`,
    planInput: `${control}/inputs/fovs-plan.json`,
    /** Everything the jobs of this run write, and nothing else. */
    outputs,
    /** What FOV jobs write: per-FOV spot tables and failure reasons. */
    fovOutputs: `${outputs}/fovs`,
    fovErrorReason: (fov: number) => `${outputs}/fovs/${fovStem(fov)}.error.json`,
    fovTable: (fov: number) => `${outputs}/fovs/${fovStem(fov)}.csv`,
    /** What the merge job writes. */
    results: `${outputs}/results`,
    spotsCsv: `${outputs}/results/spots.csv`,
    summaryJson: `${outputs}/results/summary.json`,
    spotsPng: `${outputs}/results/spots.png`,
    /** Written by newer merges, so optional: linked (and the picture shown) when present. */
    optionalResults: {
      'counts_matrix.csv': `${outputs}/results/counts_matrix.csv`,
      'fov_quality.csv': `${outputs}/results/fov_quality.csv`,
      'overview.png': `${outputs}/results/overview.png`,
    } as const,
  };
}

/** Duplicate suppression for a run request delivered more than once (the bus is at-least-once). */
export const requestClaimKey = (requestId: string) => `${REQUESTS_PREFIX}${requestId}`;

/**
 * The one claim a signed Slack request gets at the public endpoint, so that the same request
 * replayed is answered once (src/slack/request-guard.ts): keyed by the SHA-256 of its
 * X-Slack-Signature, which covers the body and the timestamp. Written by the Slack Lambda only.
 */
export const slackRequestClaimKey = (signature: string) => `${REQUESTS_PREFIX}slack/${createHash('sha256').update(signature).digest('hex')}`;

/** Where `stage` copies an experiment: experiments/<name>/…, read by the launcher and the jobs. */
export const stagedPrefix = (name: string) => `${EXPERIMENTS_PREFIX}${name}`;

/** Written and deleted to learn whether the store still takes writes (a full disk, say). */
export const storeWriteCheckKey = `${REQUESTS_PREFIX}.write-check`;
