/**
 * Who may do what, and when a run needs a second pair of eyes. Validated with zod wherever it
 * is loaded (a JSON file locally, CDK context on AWS).
 */
import { z } from 'zod';
import { passed, refuse, type Result } from '../result.js';
import type { RunManifest, Plan } from './manifest.js';
import { COST_POLICY_EXAMPLE, costPolicySchema } from './cost.js';

export const policySchema = z.object({
  approval: z
    .object({
      /** Runs with more FOVs than this need approval. */
      fovThreshold: z.number().int().nonnegative().default(500),
      /** Queues where every run needs approval (e.g. the on-demand one). */
      queues: z.array(z.string()).default([]),
      /** Recipes outside these prefixes need approval; empty means any recipe is fine. */
      approvedRecipePrefixes: z.array(z.string()).default([]),
      approvers: z.array(z.string()).default([]),
      /** A Slack user group whose members may approve, e.g. S0123ABCD. */
      approverGroup: z.string().optional(),
      allowSelfApproval: z.boolean().default(false),
      expiresAfterMinutes: z.number().int().positive().default(24 * 60),
      /**
       * FOVs one requester may launch without approval over any 24 hours, counting the runs that
       * needed none; unset means the same as fovThreshold. Splitting a run does not avoid approval.
       */
      dailyFovAllowance: z.number().int().nonnegative().optional(),
    })
    .default({ fovThreshold: 500, queues: [], approvedRecipePrefixes: [], approvers: [], allowSelfApproval: false, expiresAfterMinutes: 1440 }),
  access: z
    .object({
      /** Channels where the bot takes commands; empty means any. */
      channels: z.array(z.string()).default([]),
      /** Who may run, cancel and retry; empty means anyone in an allowed channel. */
      runners: z.array(z.string()).default([]),
      /** Who may cancel or retry anyone's run (with the approvers); the requester always may. */
      admins: z.array(z.string()).default([]),
      /** "owners": a run is cancelled or retried by its requester, an approver or an admin; "anyone": by anyone allowed to run. */
      othersRuns: z.enum(['owners', 'anyone']).default('owners'),
    })
    .default({ channels: [], runners: [], admins: [], othersRuns: 'owners' }),
  queues: z
    .object({ default: z.string().default('spot'), allowed: z.array(z.string()).min(1).default(['spot', 'ondemand']) })
    .default({ default: 'spot', allowed: ['spot', 'ondemand'] }),
  /** Used when a run names no recipe=. */
  defaultRecipe: z.string().optional(),
  /**
   * The lab's recipes by name, offered in the launch form's recipe menu (after the default);
   * typed commands still take any recipe= the locations allow. At most 99: a Slack menu shows 100.
   */
  recipes: z
    .array(
      z.object({
        name: z.string().min(1).max(75),
        url: z.string().regex(/^[^\s]+\.py$/i, 'a recipe is a .py file without spaces, e.g. "s3://lab-data/recipes/iss.py"').max(2_048),
      }),
    )
    .max(99)
    .default([]),
  /** Prices, the default time per FOV, the cost threshold and budgets (src/run/cost.ts); unset: the us-east-1 defaults, no limits. */
  cost: costPolicySchema.optional(),
});
export type Policy = z.infer<typeof policySchema>;

export function parsePolicy(raw: unknown, source: string): Policy {
  const parsed = policySchema.safeParse(raw ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const example = issue.path[0] === 'cost' ? COST_POLICY_EXAMPLE : '{"approval": {"fovThreshold": 500, "approvers": ["U012ABCDEF"]}, "access": {"channels": ["C0123456"]}}';
    throw new Error(`The policy in ${source} is not valid: ${issue.path.join('.') || '(top level)'}: ${issue.message}. Example: ${example}`);
  }
  return parsed.data;
}

/** Whether a person may use the bot here to `action` runs. */
export function checkAccess(policy: Policy, userId: string, channel: string, action: string): Result<void> {
  if (policy.access.channels.length && !policy.access.channels.includes(channel)) {
    return refuse(`starfish does not take commands in this channel. Ask in <#${policy.access.channels[0]}>.`);
  }
  if (policy.access.runners.length && !policy.access.runners.includes(userId)) {
    return refuse(`You are not on the list of people who may ${action} runs. Ask a lab admin to add you to the starfish policy (access.runners).`);
  }
  return passed;
}

export function checkQueue(policy: Policy, queue: string): Result<void> {
  if (policy.queues.allowed.includes(queue)) return passed;
  return refuse(`queue=${queue} is not one of this lab's queues (${policy.queues.allowed.join(', ')}). Example: queue=${policy.queues.allowed[0]}`);
}

/** FOVs this requester launched without approval in the 24 hours before now. */
export function unapprovedFovsToday(runs: readonly RunManifest[], userId: string, now: number): number {
  const since = now - 24 * 3_600_000;
  return runs
    .filter((m) => m.requester.userId === userId && Date.parse(m.createdAt) >= since && !m.approval.required && !m.request.dryRun)
    .filter((m) => m.submissions.length > 0 || m.status === 'submitting')
    .reduce((sum, m) => sum + m.plan.fovCount, 0);
}

export function approvalReasons(policy: Policy, plan: Plan, queue: string, recipe: string, usedToday = 0): string[] {
  const reasons: string[] = [];
  const { fovThreshold, dailyFovAllowance = fovThreshold } = policy.approval;
  if (plan.fovCount > fovThreshold) reasons.push(`${plan.fovCount} FOVs is above the ${fovThreshold}-FOV threshold`);
  else if (usedToday + plan.fovCount > dailyFovAllowance) {
    reasons.push(`with this run, ${usedToday + plan.fovCount} FOVs launched without approval in 24 hours is above this lab's ${dailyFovAllowance}-FOV daily allowance`);
  }
  if (policy.approval.queues.includes(queue)) reasons.push(`queue ${queue} needs approval`);
  const prefixes = policy.approval.approvedRecipePrefixes;
  if (prefixes.length && !prefixes.some((p) => isWithin(recipe, p))) reasons.push(`the recipe is outside the approved recipes (${prefixes.join(', ')})`);
  return reasons;
}

/**
 * Whether a location lies under a prefix as a folder: `..` segments (plain or %-encoded) never
 * pass, and `s3://lab-recipes` does not cover `s3://lab-recipes-evil/…`.
 */
export function isWithin(location: string, prefix: string): boolean {
  if (/(^|\/)(\.|%2e){2}(\/|$)/i.test(location)) return false;
  if (location === prefix) return true;
  return location.startsWith(prefix.endsWith('/') ? prefix : `${prefix}/`);
}

/** Whether this person may approve or reject this run. */
export function checkApprover(policy: Policy, run: RunManifest, userId: string, groupMembers: readonly string[] = []): Result<void> {
  const { approvers, approverGroup, allowSelfApproval } = policy.approval;
  const listed = approvers.includes(userId) || (approverGroup !== undefined && groupMembers.includes(userId));
  if (!listed) return refuse(`You are not an approver for starfish runs. Approvers: ${approvers.map((u) => `<@${u}>`).join(', ') || '(none listed)'}${approverGroup ? ` and <!subteam^${approverGroup}>` : ''}.`);
  if (run.requester.userId === userId && !allowSelfApproval) return refuse(`You requested run ${run.runId}; another approver has to approve it.`);
  return passed;
}

/** A lab admin or an approver (listed, or in the approver group): may manage others' runs and retry past budgets. */
export function isTrusted(policy: Policy, userId: string, groupMembers: readonly string[] = []): boolean {
  const { approvers, approverGroup } = policy.approval;
  return policy.access.admins.includes(userId) || approvers.includes(userId) || (approverGroup !== undefined && groupMembers.includes(userId));
}

/**
 * Whether this person may cancel or retry this run: its requester, an approver or an admin; or,
 * when the policy says "anyone", whoever may start runs here.
 */
export function checkManage(policy: Policy, run: RunManifest, who: { userId: string; channel: string }, action: string, groupMembers: readonly string[] = []): Result<void> {
  if (run.requester.userId === who.userId) return passed;
  if (policy.access.othersRuns === 'anyone') return checkAccess(policy, who.userId, who.channel, action);
  if (isTrusted(policy, who.userId, groupMembers)) return passed;
  return refuse(`Run ${run.runId} was started by <@${run.requester.userId}>; only they, an approver or a lab admin may ${action} it.`);
}
