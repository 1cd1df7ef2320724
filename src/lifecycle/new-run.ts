/** The manifest a checked request starts as: planned (dry run), awaiting approval, or submitting. */
import type { Policy } from '../run/policy.js';
import type { RunEstimate, RunManifest } from '../run/manifest.js';
import type { CheckedRequest } from '../launcher/request-check.js';

export interface NewRun {
  runId: string;
  now: number;
  requester: { userId: string; channel: string };
  checked: CheckedRequest;
  /** Why the policy wants approval; empty when it does not. */
  approvalReasons: string[];
  /** What the run should take and cost (src/run/budget.ts), shown on its message and charged to budgets. */
  estimate?: RunEstimate;
  /** Where the containers find a key (Store.locate). */
  locate: (key: string) => string;
  keys: { recipeSnapshot: string; outputs: string };
}

export function newManifest(run: NewRun, policy: Policy): RunManifest {
  const { checked, approvalReasons: reasons, now } = run;
  const { request, plan } = checked;
  const at = new Date(now).toISOString();
  const needsApproval = reasons.length > 0 && !request.dryRun;
  const status = request.dryRun ? 'planned' : needsApproval ? 'awaiting-approval' : 'submitting';
  return {
    version: 1,
    runId: run.runId,
    createdAt: at,
    updatedAt: at,
    requester: run.requester,
    request,
    inputs: {
      experiment: request.experiment,
      recipe: run.locate(run.keys.recipeSnapshot),
      output: run.locate(run.keys.outputs),
      // Runs of the same recipe share their timings.
      recipeSha256: checked.recipeSha256,
    },
    queue: checked.queue,
    plan,
    approval: {
      required: needsApproval,
      reasons,
      ...(needsApproval ? { expiresAt: new Date(now + policy.approval.expiresAfterMinutes * 60_000).toISOString() } : {}),
    },
    status,
    ...(status === 'submitting' ? { pendingSubmission: { round: 0, fovs: plan.fovs } } : {}),
    submissions: [],
    progress: { total: plan.fovCount, succeeded: 0, failed: 0, running: 0, waiting: plan.fovCount },
    failures: [],
    notify: { resultsPosted: false },
    ...(run.estimate ? { estimate: run.estimate } : {}),
  };
}
