/**
 * The launcher: every slow step between "someone asked" and "jobs are in Batch". Reads the
 * experiment, plans, snapshots inputs, posts the root message, then asks for approval or submits.
 */
import type { CoreDeps } from '../core.js';
import type { RunEventOf, RunEvent } from '../run/run-events.js';
import { ExperimentError, readExperiment, type ExperimentInfo } from '../run/experiment.js';
import { makePlan } from '../run/plan.js';
import { newRunId } from '../run/run-id.js';
import { createManifest, loadManifest, updateManifest } from '../run/manifest-store.js';
import { TERMINAL, runPrefix, type RunManifest, type Submission, type WorkUnit } from '../run/manifest.js';
import { approvalReasons, refuseAccess, refuseApproval, refuseQueue } from '../run/policy.js';
import { errorMessage, noticeMessage, rootMessage } from '../messages/blocks.js';
import { jobName } from '../run/batch-event.js';
import { expandRanges, formatRanges } from '../run/fov-ranges.js';
import { planUnits } from '../run/plan.js';
import { checkLocation } from '../command/dispatcher.js';
import { absoluteLocation } from '../run/locations.js';
import { stageExperiment } from './staging.js';

const submitClaim = (runId: string, round: number) => `${runPrefix(runId)}/claims/submit-r${round}`;

/** The claim of a round: when it was taken, and every job submitted under it so far. */
interface SubmitClaim {
  at: number;
  jobs: string[];
}

function readClaim(body: Buffer): SubmitClaim {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as Partial<SubmitClaim>;
    return { at: Number(parsed.at) || 0, jobs: Array.isArray(parsed.jobs) ? parsed.jobs.filter((j): j is string => typeof j === 'string') : [] };
  } catch {
    return { at: 0, jobs: [] };
  }
}
/** A submission claimed this long ago and still not recorded is taken to have died with its launcher. */
export const SUBMIT_STALE_MS = 10 * 60_000;

const absolute = absoluteLocation;

export class Launcher {
  private readonly where: { reader: CoreDeps['reader']; allowPaths: boolean };

  constructor(private readonly deps: CoreDeps) {
    this.where = { reader: deps.reader, allowPaths: deps.settings.allowPaths };
  }

  async handle(event: RunEvent): Promise<void> {
    switch (event.type) {
      case 'RunRequested':
        return this.requested(event);
      case 'RunApproved':
      case 'RunRejected':
        return this.decided(event);
      case 'RunCancelled':
        return this.cancelled(event);
      case 'RunRetryRequested':
        return this.retry(event);
      case 'StageRequested':
        return stageExperiment(this.deps, event);
    }
  }

  private tell(event: { channel: string; userId: string; responseUrl?: string | undefined }, text: string) {
    return this.deps.chat.ephemeral(event.channel, event.userId, errorMessage(text), event.responseUrl);
  }

  private async requested(event: RunEventOf<'RunRequested'>): Promise<void> {
    const { store, reader, policy, chat, clock, log } = this.deps;

    // Paths are kept absolute, so that the jobs, a retry and `status` agree on what was run.
    const request = { ...event.request, experiment: absolute(event.request.experiment), ...(event.request.recipe ? { recipe: absolute(event.request.recipe) } : {}) };
    const recipeSource = request.recipe ?? policy.defaultRecipe;
    const recipe = recipeSource ? absolute(recipeSource) : undefined;
    if (!recipe) return this.tell(event, `No recipe given and this lab has no default recipe. Add recipe=URL, e.g. recipe=s3://lab-data/recipes/iss.py`);
    const queue = request.queue ?? policy.queues.default;
    const problem = checkLocation(this.where, request.experiment, 'The experiment') ?? checkLocation(this.where, recipe, 'The recipe') ?? refuseQueue(policy, queue);
    if (problem) return this.tell(event, problem);

    let experiment: ExperimentInfo;
    try {
      experiment = await readExperiment(reader, request.experiment);
    } catch (error) {
      if (error instanceof ExperimentError) return this.tell(event, error.message);
      throw error;
    }
    const plan = makePlan(experiment.fovs, request.fovs);
    if (typeof plan === 'string') return this.tell(event, plan);

    let recipeBody: Buffer;
    try {
      recipeBody = await reader.read(recipe);
    } catch (error) {
      return this.tell(event, `Could not read the recipe at ${recipe}: ${(error as Error).message}. Example: recipe=s3://lab-data/recipes/iss.py`);
    }
    if (!/def\s+process_fov\s*\(/.test(recipeBody.toString('utf8'))) {
      return this.tell(event, `The recipe at ${recipe} defines no process_fov(fov_index, experiment_url) function, which each FOV job calls. See examples/recipes/README.md.`);
    }
    const broken = await this.deps.checkRecipe?.(recipeBody);
    if (broken) return this.tell(event, `The recipe at ${recipe} cannot run: ${broken}. Nothing was launched.`);

    // Buses deliver at least once (and Lambda retries a failed invocation): one request, one run.
    const claim = event.requestId ? `requests/${event.requestId}` : undefined;
    if (claim && (await store.createIfAbsent(claim, JSON.stringify({ userId: event.userId, at: clock.now() }))) === 'exists') {
      log.warn({ requestId: event.requestId }, 'duplicate run request ignored');
      return;
    }
    const reasons = approvalReasons(policy, request, plan, queue, recipe);
    const now = new Date(clock.now());
    let manifest: RunManifest | undefined;
    for (let attempt = 0; attempt < 5 && !manifest; attempt++) {
      const runId = newRunId(now);
      const candidate: RunManifest = {
        version: 1,
        runId,
        createdAt: now.toISOString(),
        updatedAt: now.toISOString(),
        requester: { userId: event.userId, channel: event.channel },
        request: { ...request, recipe },
        inputs: {
          experiment: request.experiment,
          recipe: store.locate(`${runPrefix(runId)}/inputs/recipe.py`),
          output: store.locate(runPrefix(runId)),
        },
        queue,
        plan,
        approval: {
          required: reasons.length > 0 && !request.dryRun,
          reasons,
          ...(reasons.length && !request.dryRun ? { expiresAt: new Date(now.getTime() + policy.approval.expiresAfterMinutes * 60_000).toISOString() } : {}),
        },
        status: request.dryRun ? 'planned' : reasons.length ? 'awaiting-approval' : 'submitting',
        ...(request.dryRun || reasons.length ? {} : { pendingSubmission: { round: 0, fovs: plan.fovs } }),
        submissions: [],
        progress: { total: plan.fovCount, succeeded: 0, failed: 0, running: 0, waiting: plan.fovCount },
        failures: [],
        notify: { resultsPosted: false },
      };
      try {
        if (await createManifest(store, candidate)) manifest = candidate;
      } catch (error) {
        // No run exists yet: release the claim so that the redelivered request can make one.
        if (claim) await store.delete(claim);
        throw error;
      }
    }
    if (!manifest) throw new Error('could not allocate a unique run id');
    const runId = manifest.runId;
    // Reproducibility: the recipe and experiment.json exactly as they were at launch.
    await store.put(`${runPrefix(runId)}/inputs/recipe.py`, recipeBody);
    await store.put(`${runPrefix(runId)}/inputs/experiment.json`, experiment.source);
    log.info({ runId, fovs: plan.fovCount, units: plan.units.length, approval: reasons }, 'run planned');

    let ref;
    try {
      ref = await chat.post(event.channel, rootMessage(manifest));
    } catch (error) {
      // Typically not_in_channel: nothing was submitted, so end the run here and say how to fix it.
      const reason = (error as Error).message;
      await updateManifest(store, runId, (m) => ({ ...m, status: 'failed', statusReason: `could not post the run's message in the channel (${reason})` }));
      return this.tell(
        event,
        `Run ${runId} was not started: I could not post its message in this channel (${reason}). Invite me with \`/invite @starfish\` and run the command again.`,
      );
    }
    const { after } = await updateManifest(store, runId, (m) => ({ ...m, message: ref }));
    if (after.status === 'submitting') await this.submit(after, 0, plan.units, plan.fovs);
  }

  private async decided(event: RunEventOf<'RunApproved'> | RunEventOf<'RunRejected'>): Promise<void> {
    const { store, policy, clock } = this.deps;
    const loaded = await loadManifest(store, event.runId);
    if (!loaded) return this.tell(event, `There is no run ${event.runId}. See /starfish list for the recent ones.`);
    const members = policy.approval.approverGroup && this.deps.approverGroupMembers ? await this.deps.approverGroupMembers() : [];
    const refusal = refuseApproval(policy, loaded.manifest, event.userId, members);
    if (refusal) return this.tell(event, refusal);
    if (await this.expireIfDue(loaded.manifest)) return this.tell(event, `The approval request for run ${event.runId} has expired. Start it again with /starfish run.`);

    const decision = event.type === 'RunApproved' ? 'approved' : 'rejected';
    const at = new Date(clock.now()).toISOString();
    // The compare-and-swap from awaiting-approval is what makes 50 clicks submit once.
    const { after, changed, before } = await updateManifest(store, event.runId, (m) =>
      m.status !== 'awaiting-approval'
        ? undefined
        : {
            ...m,
            status: decision === 'approved' ? 'submitting' : 'rejected',
            ...(decision === 'approved' ? { pendingSubmission: { round: 0, fovs: m.plan.fovs } } : {}),
            approval: { ...m.approval, decision, decidedBy: event.userId, decidedAt: at },
          },
    );
    if (!changed) {
      const by = before.approval.decidedBy ? ` by <@${before.approval.decidedBy}>` : '';
      return this.tell(event, `Run ${event.runId} is already ${before.approval.decision ?? before.status}${by}; nothing to do.`);
    }
    // Submit first: a failing chat call must not leave an approved run without its jobs.
    if (decision === 'approved') await this.submit(after, 0, after.plan.units, after.plan.fovs);
    else await this.refreshRoot(after);
  }

  /**
   * Resumes a submission whose launcher died between the decision and SubmitJob (the
   * reconciler calls this). Takes over the round's claim only once it has gone stale.
   */
  async resumeSubmission(m: RunManifest): Promise<boolean> {
    const pending = m.pendingSubmission;
    const now = this.deps.clock.now();
    if (m.status !== 'submitting' || !pending || m.submissions.some((s) => s.round === pending.round)) return false;
    const key = submitClaim(m.runId, pending.round);
    const stored = await this.deps.store.get(key);
    const claim = stored ? readClaim(stored.body) : undefined;
    if (claim && now - claim.at < SUBMIT_STALE_MS) return false;
    const fresh = JSON.stringify({ at: now, jobs: [] } satisfies SubmitClaim);
    const taken = stored ? await this.deps.store.replaceIf(key, fresh, stored.etag) : await this.deps.store.createIfAbsent(key, fresh);
    if (taken === 'conflict' || taken === 'exists') return false;
    this.deps.log.warn({ runId: m.runId, round: pending.round, orphans: claim?.jobs.length ?? 0 }, 'resuming a submission that never completed');
    // What the dead submitter got into Batch is terminated, so the run is submitted exactly once.
    if (claim?.jobs.length) await this.deps.executor.cancel(claim.jobs, `starfish: run ${m.runId} is being resubmitted`);
    await this.submit(m, pending.round, planUnits(expandRanges(pending.fovs)), pending.fovs, true);
    return true;
  }

  /** Marks a pending approval expired once its time has passed; true when it did. */
  async expireIfDue(m: RunManifest): Promise<boolean> {
    const now = this.deps.clock.now();
    if (m.status !== 'awaiting-approval' || !m.approval.expiresAt || Date.parse(m.approval.expiresAt) > now) return false;
    const { changed, after } = await updateManifest(this.deps.store, m.runId, (cur) =>
      cur.status !== 'awaiting-approval'
        ? undefined
        : { ...cur, status: 'expired', approval: { ...cur.approval, decision: 'expired', decidedAt: new Date(now).toISOString() } },
    );
    if (changed) await this.refreshRoot(after);
    return true;
  }

  private async refreshRoot(m: RunManifest): Promise<void> {
    if (m.message) await this.deps.chat.update(m.message, rootMessage(m));
  }

  /**
   * Submits the FOV arrays and the merge of one round. A merge refused after arrays were
   * accepted would leave orphans burning compute: terminate them and say why.
   */
  private async submit(m: RunManifest, round: number, units: WorkUnit[], fovs: string, tookOver = false): Promise<void> {
    const { executor, store, log, clock } = this.deps;
    // Exactly one submitter per round, whatever redeliveries and reconciler passes happen.
    const claimKey = submitClaim(m.runId, round);
    const claim: SubmitClaim = { at: clock.now(), jobs: [] };
    if (!tookOver && (await store.createIfAbsent(claimKey, JSON.stringify(claim))) === 'exists') {
      log.warn({ runId: m.runId, round }, 'round already being submitted; not submitting again');
      return;
    }
    // Each job goes into the claim as soon as Batch accepts it: whoever takes over a dead
    // submission (the reconciler) or cancels it knows what is already running.
    const remember = async (jobId: string) => {
      claim.jobs.push(jobId);
      await store.put(claimKey, JSON.stringify(claim));
    };
    const spec = { runId: m.runId, requester: m.requester.userId, queue: m.queue };
    const base = { STARFISH_RUN_ID: m.runId, STARFISH_OUTPUT: m.inputs.output };
    const submitted: Submission['arrays'] = [];
    let merge: Submission['merge'];
    try {
      for (const [part, unit] of units.entries()) {
        const name = jobName(m.runId, 'fov', round, units.length > 1 ? part : undefined);
        const env: Record<string, string> = { ...base, STARFISH_EXPERIMENT: m.inputs.experiment, STARFISH_RECIPE: m.inputs.recipe };
        if (unit.offset !== undefined) env.STARFISH_FOV_OFFSET = String(unit.offset);
        else env.STARFISH_FOV_LIST = expandRanges(unit.fovList ?? '').join(',');
        const job = await executor.submitFovs(spec, { name, size: unit.size, environment: env });
        submitted.push({ ...job, unit });
        await remember(job.jobId);
      }
      merge = await executor.submitMerge(
        spec,
        { name: jobName(m.runId, 'merge', round), environment: { ...base, STARFISH_EXPECTED_FOVS: m.plan.fovs } },
        submitted.map((j) => j.jobId),
      );
    } catch (error) {
      const reason = (error as Error).message;
      log.error({ runId: m.runId, err: reason, submitted: submitted.length }, 'submission failed');
      let cleanup = submitted.length ? `; the ${submitted.length} job(s) already submitted were terminated` : '';
      let leftovers = '';
      try {
        if (submitted.length) await executor.cancel(submitted.map((j) => j.jobId), `starfish: run ${m.runId} could not be fully submitted`);
      } catch (cancelError) {
        // Say so rather than claim a clean slate: these jobs need a person.
        cleanup = leftovers = `; terminating the jobs already submitted failed too (${(cancelError as Error).message}): check ${submitted.map((j) => j.jobId).join(', ')}`;
        log.error({ runId: m.runId, err: (cancelError as Error).message }, 'could not terminate partially submitted jobs');
      }
      const { after } = await updateManifest(store, m.runId, (cur) => ({
        ...cur,
        pendingSubmission: undefined,
        // The thread is told below; no later event may announce another ending.
        notify: { ...cur.notify, resultsPosted: true },
        status: 'failed',
        statusReason: `could not submit the jobs (${reason})${cleanup}`,
      }));
      await this.refreshRoot(after);
      if (after.message) await this.deps.chat.reply(after.message, errorMessage(`Run ${m.runId} was not started: AWS Batch refused a job (${reason})${leftovers || '. Nothing is left running.'}`));
      return;
    }
    const submission: Submission = { round, submittedAt: new Date(this.deps.clock.now()).toISOString(), fovs, arrays: submitted, merge };
    const total = expandRanges(fovs).length;
    const { after } = await updateManifest(store, m.runId, (cur) =>
      cur.status === 'cancelled'
        ? undefined
        : {
            ...cur,
            status: 'running',
            pendingSubmission: undefined,
            submissions: [...cur.submissions, submission],
            progress: { total, succeeded: 0, failed: 0, running: 0, waiting: total },
          },
    );
    if (after.status === 'cancelled') {
      await executor.cancel([...submitted.map((j) => j.jobId), merge.jobId], `starfish: run ${m.runId} was cancelled`);
      return;
    }
    log.info({ runId: m.runId, round, jobs: submitted.map((j) => j.jobId), merge: merge.jobId }, 'jobs submitted');
    await this.refreshRoot(after);
  }

  private async cancelled(event: RunEventOf<'RunCancelled'>): Promise<void> {
    const { store, executor, policy } = this.deps;
    const loaded = await loadManifest(store, event.runId);
    if (!loaded) return this.tell(event, `There is no run ${event.runId}. See /starfish list for the recent ones.`);
    const m = loaded.manifest;
    if (m.requester.userId !== event.userId) {
      const refusal = refuseAccess(policy, event.userId, event.channel, 'cancel');
      if (refusal) return this.tell(event, refusal);
    }
    const { changed, after } = await updateManifest(store, event.runId, (cur) =>
      TERMINAL.has(cur.status)
        ? undefined
        : { ...cur, status: 'cancelled', statusReason: `cancelled by <@${event.userId}>`, progress: { ...cur.progress, running: 0, waiting: 0 } },
    );
    if (!changed && after.status !== 'cancelled') return this.tell(event, `Run ${event.runId} has already ended (${m.status}); there is nothing to cancel.`);
    // Also when it was cancelled already: a TerminateJob that failed the first time is retried.
    const jobs = after.submissions.flatMap((s) => [...s.arrays.map((a) => a.jobId), ...(s.merge ? [s.merge.jobId] : []), ...(s.salvageMerge ? [s.salvageMerge.jobId] : [])]);
    if (after.pendingSubmission) {
      const stored = await store.get(submitClaim(after.runId, after.pendingSubmission.round));
      if (stored) jobs.push(...readClaim(stored.body).jobs);
    }
    if (jobs.length) await executor.cancel([...new Set(jobs)], `starfish: cancelled by ${event.userId}`);
    if (!changed) return this.tell(event, `Run ${event.runId} was already cancelled; its jobs have been terminated again to be sure.`);
    await this.refreshRoot(after);
    if (after.message) await this.deps.chat.reply(after.message, noticeMessage(`:octagonal_sign: Run ${event.runId} cancelled by <@${event.userId}>.`));
  }

  private async retry(event: RunEventOf<'RunRetryRequested'>): Promise<void> {
    const { store } = this.deps;
    const loaded = await loadManifest(store, event.runId);
    if (!loaded) return this.tell(event, `There is no run ${event.runId}. See /starfish list for the recent ones.`);
    const m = loaded.manifest;
    if (m.status !== 'partially-failed' && m.status !== 'failed') {
      return this.tell(event, `Run ${event.runId} is ${m.status}; retry reruns the failed FOVs of a run that has finished with failures.`);
    }
    if (!m.submissions.length) {
      return this.tell(event, `Run ${event.runId} never started (${m.statusReason ?? 'nothing was submitted'}); start a new run with /starfish run.`);
    }
    const failed = m.results?.fovsMissing.length ? m.results.fovsMissing : [...new Set(m.failures.map((f) => f.fov))];
    // A run that failed before any FOV ran (e.g. the merge itself failed) is retried whole.
    const fovs = failed.length ? failed.sort((a, b) => a - b) : expandRanges(m.plan.fovs);
    const round = (m.submissions.at(-1)?.round ?? -1) + 1;
    const { changed, after } = await updateManifest(store, event.runId, (cur) =>
      cur.status !== m.status
        ? undefined
        : {
            ...cur,
            status: 'submitting',
            statusReason: `retry ${round}: ${fovs.length} FOV${fovs.length === 1 ? '' : 's'} rerun at the request of <@${event.userId}>`,
            pendingSubmission: { round, fovs: formatRanges(fovs) },
            notify: { ...cur.notify, resultsPosted: false, stuckWarnedAt: undefined },
          },
    );
    if (!changed) return this.tell(event, `Run ${event.runId} changed while retrying; check /starfish status ${event.runId}.`);
    await this.submit(after, round, planUnits(fovs), formatRanges(fovs));
    if (after.message) await this.deps.chat.reply(after.message, noticeMessage(`:rocket: Retrying ${fovs.length} FOV${fovs.length === 1 ? '' : 's'} (${formatRanges(fovs)}) of run ${event.runId}, requested by <@${event.userId}>.`));
  }
}
