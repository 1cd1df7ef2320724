/**
 * Who may do what, and when a run needs a second pair of eyes. Validated with zod wherever it
 * is loaded (a JSON file locally, CDK context on AWS).
 */
import { z } from 'zod';
import { passed, refuse, type Result } from '../result.js';
import type { RunManifest, RunRequest, Plan } from './manifest.js';

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
    })
    .default({ fovThreshold: 500, queues: [], approvedRecipePrefixes: [], approvers: [], allowSelfApproval: false, expiresAfterMinutes: 1440 }),
  access: z
    .object({
      /** Channels where the bot takes commands; empty means any. */
      channels: z.array(z.string()).default([]),
      /** Who may run, cancel and retry; empty means anyone in an allowed channel. */
      runners: z.array(z.string()).default([]),
    })
    .default({ channels: [], runners: [] }),
  queues: z
    .object({ default: z.string().default('spot'), allowed: z.array(z.string()).min(1).default(['spot', 'ondemand']) })
    .default({ default: 'spot', allowed: ['spot', 'ondemand'] }),
  /** Used when a run names no recipe=. */
  defaultRecipe: z.string().optional(),
});
export type Policy = z.infer<typeof policySchema>;

export function parsePolicy(raw: unknown, source: string): Policy {
  const parsed = policySchema.safeParse(raw ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(
      `The policy in ${source} is not valid: ${issue.path.join('.') || '(top level)'}: ${issue.message}. Example: {"approval": {"fovThreshold": 500, "approvers": ["U012ABCDEF"]}, "access": {"channels": ["C0123456"]}}`,
    );
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

export function approvalReasons(policy: Policy, request: RunRequest, plan: Plan, queue: string, recipe: string): string[] {
  const reasons: string[] = [];
  if (plan.fovCount > policy.approval.fovThreshold) reasons.push(`${plan.fovCount} FOVs is above the ${policy.approval.fovThreshold}-FOV threshold`);
  if (policy.approval.queues.includes(queue)) reasons.push(`queue ${queue} needs approval`);
  const prefixes = policy.approval.approvedRecipePrefixes;
  if (prefixes.length && !prefixes.some((p) => isWithin(recipe, p))) reasons.push(`the recipe is outside the approved recipes (${prefixes.join(', ')})`);
  void request;
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
