/**
 * The launcher: every slow step between "someone asked" and "jobs are in Batch". Checks the
 * request, creates the run, snapshots its inputs and posts its message; decisions, cancels and
 * retries become facts for the lifecycle, which says what to submit, terminate and post.
 */
import type { CoreDeps } from '../core.js';
import type { RunEventOf, RunEvent } from '../run/run-events.js';
import { newRunId, runIdDay } from '../run/run-id.js';
import { createManifest, listManifests, loadManifest } from '../run/manifest-store.js';
import { requestClaimKey, runKeys } from '../run/layout.js';
import type { RunEstimate, RunManifest } from '../run/manifest.js';
import { approvalReasons, checkApprover, checkManage, isTrusted, unapprovedFovsToday } from '../run/policy.js';
import { costVerdict, estimateRun, historyWindowMs, packingInput, retryBudgetRefusal } from '../run/budget.js';
import { ok, passed, refuse, type Result } from '../result.js';
import { errorMessage, rootMessage } from '../messages/blocks.js';
import { RunWorker, type Asker } from '../lifecycle/run-worker.js';
import { fovsToRetry, RETRYABLE } from '../lifecycle/decide.js';
import { expandRanges } from '../run/fov-ranges.js';
import { newManifest } from '../lifecycle/new-run.js';
import { checkRequest, type CheckedRequest, type PackingFor } from './request-check.js';
import { stageExperiment } from './staging.js';

interface Assessment {
  reasons: string[];
  estimate: RunEstimate;
}

export class Launcher {
  private readonly worker: RunWorker;

  constructor(private readonly deps: CoreDeps) {
    this.worker = new RunWorker(deps);
  }

  async handle(event: RunEvent): Promise<void> {
    switch (event.type) {
      case 'RunRequested':
        return this.requested(event);
      case 'RunApproved':
      case 'RunRejected':
        return this.decided(event);
      case 'RunCancelled':
        return this.managed(event, { type: 'cancel', by: event.userId }, 'cancel');
      case 'RunRetryRequested':
        return this.retryRequested(event);
      case 'StageRequested':
        return stageExperiment(this.deps, event);
    }
  }

  private tell(asker: Asker, text: string) {
    return this.deps.chat.ephemeral(asker.channel, asker.userId, errorMessage(text), asker.responseUrl);
  }

  private async requested(event: RunEventOf<'RunRequested'>): Promise<void> {
    const { store, policy, clock } = this.deps;
    const now = clock.now();
    // The recent runs (their ids start with the window's first day or later): the recipe's timing
    // history, the budgets' spending and the day's allowance. Read once, and only for a request
    // whose experiment and recipe check out.
    let recent: Promise<RunManifest[]> | undefined;
    const history = () => (recent ??= listManifests(store, 0, runIdDay(new Date(now - historyWindowMs(policy)))));
    const packingFor: PackingFor = async (queue, sha256) => (policy.cost?.packFovs === false ? undefined : packingInput(policy, await history(), queue, sha256));
    const checked = await checkRequest({ ...this.deps, packingFor }, event.request);
    if (!checked.ok) return this.tell(event, checked.reason);
    const assessed = this.assess(event, checked.value, await history(), now);
    if (!assessed.ok) return this.tell(event, assessed.reason);
    // Buses deliver at least once (and Lambda retries a failed invocation): one request, one run.
    const claim = event.requestId ? requestClaimKey(event.requestId) : undefined;
    if (claim && (await this.deps.store.createIfAbsent(claim, JSON.stringify({ userId: event.userId, at: this.deps.clock.now() }))) === 'exists') {
      this.deps.log.warn({ requestId: event.requestId }, 'duplicate run request ignored');
      return;
    }
    let manifest: RunManifest;
    try {
      manifest = await this.createRun(event, checked.value, assessed.value);
    } catch (error) {
      // No run exists yet: release the claim so that the redelivered request can make one.
      if (claim) await this.deps.store.delete(claim);
      throw error;
    }
    // The request now names its run: a one-shot command follows the run its own request made.
    if (claim) await this.deps.store.put(claim, JSON.stringify({ userId: event.userId, at: this.deps.clock.now(), runId: manifest.runId }));
    let ref;
    try {
      ref = await this.deps.chat.post(event.channel, rootMessage(manifest));
    } catch (error) {
      await this.worker.apply(manifest.runId, { type: 'post-failed', reason: (error as Error).message }, event);
      return;
    }
    await this.worker.apply(manifest.runId, { type: 'message-posted', ref }, event);
  }

  /**
   * What the policy says before anything is created: approval reasons (FOVs, queue, recipe, the
   * estimated cost, budgets) or a refusal when a budget is exceeded and the lab refuses such runs.
   */
  private assess(event: RunEventOf<'RunRequested'>, checked: CheckedRequest, recent: readonly RunManifest[], now: number): Result<Assessment> {
    const { policy } = this.deps;
    // Splitting a large run into small ones does not avoid approval: the day's runs count.
    const usedToday = unapprovedFovsToday(recent, event.userId, now);
    const reasons = approvalReasons(policy, checked.plan, checked.queue, checked.request.recipe, usedToday);
    const estimate = estimateRun(policy, recent, { queue: checked.queue, fovCount: checked.plan.fovCount, recipeSha256: checked.recipeSha256, fovsPerChild: checked.plan.perChild ?? 1 });
    const verdict = costVerdict(policy, estimate, recent, event, now);
    // A dry run is asked for to learn what the real one would meet: the refusal is shown, not applied.
    if (verdict.refusal && !checked.request.dryRun) return refuse(verdict.refusal);
    const refusedLater = verdict.refusal ? verdict.over.map((o) => `over budget, which this lab refuses: ${o}`) : [];
    return ok({ reasons: [...reasons, ...verdict.approval, ...refusedLater], estimate });
  }

  /** Creates the manifest under a fresh run id (a clash of random ids is retried). */
  private async createRun(event: RunEventOf<'RunRequested'>, checked: CheckedRequest, assessed: Assessment): Promise<RunManifest> {
    const { store, policy, clock, log } = this.deps;
    const now = clock.now();
    const { reasons, estimate } = assessed;
    for (let attempt = 0; attempt < 5; attempt++) {
      const runId = newRunId(new Date(now));
      const keys = runKeys(runId);
      const manifest = newManifest(
        {
          runId,
          now,
          requester: { userId: event.userId, channel: event.channel },
          checked,
          approvalReasons: reasons,
          estimate,
          locate: (k) => store.locate(k),
          keys,
        },
        policy,
      );
      // Inputs first: a manifest never exists without the recipe its jobs will read (a crash in
      // between would resubmit a run whose every FOV fails).
      if (!(await this.snapshotInputs(runId, checked))) continue;
      if (await createManifest(store, manifest)) {
        log.info({ runId, fovs: checked.plan.fovCount, units: checked.plan.units.length, approval: reasons, estimatedUsd: estimate.usd }, 'run planned');
        return manifest;
      }
    }
    throw new Error('could not allocate a unique run id');
  }

  /**
   * Reproducibility: the recipe and experiment.json exactly as they were at launch, created once
   * and never replaced (a retry runs what the launch ran). False when the run id is taken.
   */
  private async snapshotInputs(runId: string, checked: CheckedRequest): Promise<boolean> {
    const keys = runKeys(runId);
    if ((await this.deps.store.createIfAbsent(keys.recipeSnapshot, checked.recipeBody)) === 'exists') return false;
    await this.deps.store.createIfAbsent(keys.experimentSnapshot, checked.experiment.source);
    return true;
  }

  private async decided(event: RunEventOf<'RunApproved'> | RunEventOf<'RunRejected'>): Promise<void> {
    const { policy } = this.deps;
    const members = await this.approverGroupMembers();
    const decision = event.type === 'RunApproved' ? 'approved' : 'rejected';
    const reason = event.type === 'RunRejected' ? event.reason : undefined;
    await this.onRun(event, { type: 'decision', decision, by: event.userId, ...(reason ? { reason } : {}) }, (m) => checkApprover(policy, m, event.userId, members));
  }

  /** Cancel and retry: by the requester, an approver or an admin, as the policy says. */
  private async managed(event: Asker & { runId: string }, fact: Parameters<RunWorker['apply']>[1], action: string): Promise<void> {
    const members = await this.approverGroupMembers();
    await this.onRun(event, fact, (m) => checkManage(this.deps.policy, m, event, action, members));
  }

  /** A retry: allowed as a cancel is, and within the asker's budgets (src/run/budget.ts). */
  private async retryRequested(event: RunEventOf<'RunRetryRequested'>): Promise<void> {
    const { policy, store, clock } = this.deps;
    const members = await this.approverGroupMembers();
    const now = clock.now();
    const trusted = isTrusted(policy, event.userId, members);
    // The budgets' spending, read only when the lab has budgets (one read per recent run).
    const recent = policy.cost?.budgets && !trusted ? await listManifests(store, 0, runIdDay(new Date(now - historyWindowMs(policy)))) : [];
    await this.onRun(event, { type: 'retry', by: event.userId }, (m) => {
      const allowed = checkManage(policy, m, event, 'retry', members);
      // A run that cannot be retried is told so by the worker, not by the budget.
      if (!allowed.ok || !RETRYABLE.has(m.status)) return allowed;
      const over = retryBudgetRefusal(policy, m, expandRanges(fovsToRetry(m)).length, recent, { ...event, trusted }, now);
      return over ? refuse(over) : passed;
    });
  }

  private async approverGroupMembers(): Promise<string[]> {
    const { policy, approverGroupMembers } = this.deps;
    return policy.approval.approverGroup && approverGroupMembers ? approverGroupMembers() : [];
  }

  /** A person's fact about an existing run, after checking they may bring it. */
  private async onRun(
    event: Asker & { runId: string },
    fact: Parameters<RunWorker['apply']>[1],
    check: (m: RunManifest) => Result<void> = () => passed,
  ): Promise<void> {
    const loaded = await loadManifest(this.deps.store, event.runId);
    if (!loaded) return this.tell(event, `There is no run ${event.runId}. See /starfish list for the recent ones.`);
    const allowed = check(loaded.manifest);
    if (!allowed.ok) return this.tell(event, allowed.reason);
    await this.worker.apply(event.runId, fact, event);
  }
}
