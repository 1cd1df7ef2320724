/**
 * Submissions to the executor: a round's FOV arrays and its merge, and the salvage merge. Each
 * is claimed once in the store before anything reaches Batch, and the result comes back as a
 * fact for the lifecycle to record. A merge refused after arrays were accepted would leave
 * orphans burning compute: they are terminated, and the fact says whether that worked.
 */
import type { CoreDeps } from '../core.js';
import { jobName } from '../run/batch-event.js';
import { takeClaim, type HeldClaim } from '../run/claims.js';
import { expandRanges } from '../run/fov-ranges.js';
import { runKeys } from '../run/layout.js';
import type { RunManifest, Submission } from '../run/manifest.js';
import { planUnits } from '../run/plan.js';
import type { Fact } from './types.js';

/** A submission claimed this long ago and still not recorded is taken to have died with its submitter. */
const SUBMIT_STALE_MS = 10 * 60_000;

export const roundClaimKey = (runId: string, round: number) => runKeys(runId).claim(`submit-r${round}`);

type Deps = Pick<CoreDeps, 'executor' | 'store' | 'log' | 'clock'>;

/**
 * Writes the FOV list a job reads and returns its location for STARFISH_FOVS_AT. Rewritten with
 * the same bytes by a submitter taking over a stale claim, so a job never sees another list.
 */
async function fovsInput(deps: Deps, key: string, fovs: string, perChild = 1): Promise<string> {
  await deps.store.put(key, JSON.stringify(perChild > 1 ? { fovs, perChild } : { fovs }));
  return deps.store.locate(key);
}

/** The environment of a FOV job: where to read, which FOVs, where to write (containers/README.md). */
function fovEnvironment(deps: Deps, m: RunManifest, fovsAt: string): Record<string, string> {
  return {
    STARFISH_RUN_ID: m.runId,
    STARFISH_EXPERIMENT: m.inputs.experiment,
    STARFISH_RECIPE: m.inputs.recipe,
    STARFISH_FOVS_AT: fovsAt,
    STARFISH_FOV_OUTPUT: deps.store.locate(runKeys(m.runId).fovOutputs),
  };
}

/** Every round's merge covers the whole plan: a retry's outputs join the earlier rounds'. */
async function mergeEnvironment(deps: Deps, m: RunManifest): Promise<Record<string, string>> {
  const keys = runKeys(m.runId);
  return {
    STARFISH_RUN_ID: m.runId,
    // The recipe copy the FOVs ran, so that the results say which recipe (its hash) made them.
    STARFISH_RECIPE: m.inputs.recipe,
    STARFISH_FOVS_AT: await fovsInput(deps, keys.planInput, m.plan.fovs),
    STARFISH_FOV_OUTPUT: deps.store.locate(keys.fovOutputs),
    STARFISH_RESULTS_OUTPUT: deps.store.locate(keys.results),
  };
}

const specOf = (m: RunManifest) => ({ runId: m.runId, requester: m.requester.userId, queue: m.queue });

/**
 * Submits one round under its claim. `takeOver` takes a stale claim of a submitter that died,
 * terminating what it had got into Batch. Undefined when another submitter holds the round.
 */
export async function submitRound(deps: Deps, m: RunManifest, round: number, fovs: string, takeOver = false): Promise<Fact | undefined> {
  const claim = await takeClaim(deps.store, roundClaimKey(m.runId, round), deps.clock.now(), takeOver ? { staleAfterMs: SUBMIT_STALE_MS } : {});
  if (!claim) {
    if (!takeOver) deps.log.warn({ runId: m.runId, round }, 'round already being submitted; not submitting again');
    return undefined;
  }
  if (claim.previous?.jobs.length) {
    deps.log.warn({ runId: m.runId, round, orphans: claim.previous.jobs.length }, 'resuming a submission that never completed');
    // What the dead submitter got into Batch is terminated, so the run is submitted exactly once.
    await deps.executor.cancel(claim.previous.jobs, `starfish: run ${m.runId} is being resubmitted`);
  }
  return submitUnder(deps, m, round, fovs, claim);
}

async function submitUnder(deps: Deps, m: RunManifest, round: number, fovs: string, claim: HeldClaim): Promise<Fact> {
  const { executor, log, clock } = deps;
  // Every round packs as the plan does: a retry's FOVs go to children of the same length.
  const units = planUnits(expandRanges(fovs), m.plan.perChild ?? 1);
  const arrays: Submission['arrays'] = [];
  try {
    for (const [part, unit] of units.entries()) {
      const name = jobName(m.runId, 'fov', round, units.length > 1 ? part : undefined);
      const fovsAt = await fovsInput(deps, runKeys(m.runId).fovsInput(round, part), unit.fovs, unit.perChild);
      const job = await executor.submitFovs(specOf(m), { name, size: unit.size, environment: fovEnvironment(deps, m, fovsAt) });
      arrays.push({ ...job, unit });
      // Recorded as soon as Batch accepts it: whoever takes over or cancels knows it is running.
      await claim.record(job.jobId);
    }
    const merge = await executor.submitMerge(
      specOf(m),
      { name: jobName(m.runId, 'merge', round), environment: await mergeEnvironment(deps, m) },
      arrays.map((j) => j.jobId),
    );
    log.info({ runId: m.runId, round, jobs: arrays.map((j) => j.jobId), merge: merge.jobId }, 'jobs submitted');
    return { type: 'submitted', submission: { round, submittedAt: new Date(clock.now()).toISOString(), fovs, arrays, merge } };
  } catch (error) {
    return refused(deps, m, (error as Error).message, arrays.map((j) => j.jobId));
  }
}

async function refused(deps: Deps, m: RunManifest, reason: string, accepted: string[]): Promise<Fact> {
  deps.log.error({ runId: m.runId, err: reason, submitted: accepted.length }, 'submission failed');
  if (!accepted.length) return { type: 'submit-failed', reason, terminated: 0 };
  try {
    await deps.executor.cancel(accepted, `starfish: run ${m.runId} could not be fully submitted`);
    return { type: 'submit-failed', reason, terminated: accepted.length };
  } catch (cancelError) {
    // Said, rather than claiming a clean slate: these jobs need a person.
    const error = (cancelError as Error).message;
    deps.log.error({ runId: m.runId, err: error }, 'could not terminate partially submitted jobs');
    return { type: 'submit-failed', reason, terminated: 0, leftover: { error, jobIds: accepted } };
  }
}

/**
 * Submits the merge of a round whose FOVs partly failed (Batch fails a merge whose dependency
 * failed), over the FOVs that succeeded. Once per round: several notifiers may see the failure.
 */
export async function submitSalvage(deps: Deps, m: RunManifest, round: number): Promise<Fact | undefined> {
  const name = jobName(m.runId, 'merge', round, undefined, true);
  const claim = await takeClaim(deps.store, runKeys(m.runId).claim(name), deps.clock.now());
  if (!claim) return undefined;
  try {
    const job = await deps.executor.submitMerge(specOf(m), { name, environment: await mergeEnvironment(deps, m) }, []);
    deps.log.info({ runId: m.runId, round, job: job.jobId }, 'salvage merge submitted');
    return { type: 'salvage-submitted', round, job };
  } catch (error) {
    // Nothing was submitted: give the claim back so that the redelivered batch tries again.
    await claim.release();
    throw error;
  }
}
