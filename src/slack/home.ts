/**
 * Which runs a person's App Home shows: their own, the ones waiting for their approval (when they
 * are an approver), and others' recent runs in the channels they run in. A channel's runs are
 * shown to those who have run there, never to the whole workspace: the Home tab is open to anyone
 * who finds the app, while `/starfish list` answers only inside a channel. Also how the tab is
 * drawn (views.publish) and where a click in it is decided.
 */
import type { Logger as BoltLogger } from '@slack/bolt';
import { z } from 'zod';
import type { Store } from '../ports.js';
import { listRuns, loadManifest } from '../run/manifest-store.js';
import type { RunManifest } from '../run/manifest.js';
import type { Policy } from '../run/policy.js';
import { RUN_ID } from '../command/grammar.js';
import type { DispatchDeps } from '../command/dispatcher.js';
import { HOME_LIMITS, homeView, type HomeRuns } from '../messages/home-view.js';
import { approverGroupResolver, type WebClient } from './slack-chat.js';

/** Runs read per Home view: the newest, as /starfish list reads them. */
const RECENT = 100;

/** Whether this person may start runs at all (access.runners); the channel is chosen in the form. */
export function mayStart(policy: Policy, userId: string): boolean {
  return !policy.access.runners.length || policy.access.runners.includes(userId);
}

/** What someone not on access.runners is told instead of the launch form. */
export function startRefusal(policy: Policy): string {
  const where = policy.access.channels[0] ? ` Runs are started in channel ${policy.access.channels[0]}.` : '';
  return `You are not on the list of people who may start runs. Ask a lab admin to add you to the starfish policy (access.runners).${where}`;
}

async function homeRuns(store: Store, policy: Policy, userId: string, isApprover: boolean): Promise<HomeRuns> {
  const listed = await listRuns(store, RECENT);
  const runs = listed.flatMap((r) => ('manifest' in r ? [r.manifest] : []));
  const takesCommands = (channel: string) => !policy.access.channels.length || policy.access.channels.includes(channel);
  const allowed = (m: RunManifest) => takesCommands(m.requester.channel);
  const mine = runs.filter((m) => m.requester.userId === userId).slice(0, HOME_LIMITS.mine);
  // One's own run is someone else's to decide, unless the policy lets approvers approve their own.
  const decidable = (m: RunManifest) => m.requester.userId !== userId || policy.approval.allowSelfApproval;
  const toApprove = isApprover ? runs.filter((m) => m.status === 'awaiting-approval' && decidable(m) && allowed(m)).slice(0, HOME_LIMITS.toApprove) : [];
  const shown = new Set([...mine, ...toApprove].map((m) => m.runId));
  // Direct messages are private to their requester: only channels have "recent runs", and only
  // channels the policy still takes commands in (/starfish list answers nowhere else).
  const channels = [...new Set(mine.map((m) => m.requester.channel))].filter((c) => !c.startsWith('D') && takesCommands(c)).slice(0, HOME_LIMITS.channels);
  return {
    mayStart: mayStart(policy, userId),
    mine,
    toApprove,
    channels: channels.map((channel) => ({ channel, runs: runs.filter((m) => m.requester.channel === channel && !shown.has(m.runId)).slice(0, HOME_LIMITS.perChannel) })),
    unreadable: listed.length - runs.length,
  };
}

/** A click from the App Home tab (its container is the Home view, not a message). */
export const fromHome = (body: unknown) => homeContainerSchema.safeParse(body).success;
const homeContainerSchema = z.object({ container: z.object({ type: z.literal('view') }), view: z.object({ type: z.literal('home') }) });

/**
 * Draws a person's Home tab (views.publish), with `notice` under its title when given. Every
 * drawing asks whether the person is an approver: the group's members are read once a minute
 * (usergroups.users.list is rate-limited), as the launcher reads them.
 */
export type HomePublisher = (client: WebClient, userId: string, logger: BoltLogger, notice?: string) => Promise<void>;

export function homePublisher(deps: DispatchDeps): HomePublisher {
  let groupMembers: (() => Promise<string[]>) | undefined;
  return async (client, userId, logger, notice) => {
    const { approverGroup } = deps.policy.approval;
    if (approverGroup) groupMembers ??= approverGroupResolver(client, approverGroup);
    try {
      const runs = await homeRuns(deps.store, deps.policy, userId, await isApprover(deps.policy, groupMembers, userId, logger));
      await client.views.publish({ user_id: userId, view: homeView(runs, notice) });
    } catch (error) {
      // Answered 200 all the same: a 5xx makes Slack retry an event the next opening redoes anyway.
      logger.error(`could not publish the Home tab of ${userId}: ${(error as Error).message}`);
    }
  };
}

/**
 * The channel a Home tab click is decided in: the run's own. The Home tab offers Cancel and Retry
 * on the clicker's own runs only, and Approve/Reject to approvers (the launcher checks who is
 * one); a click outside that (a Home published before the policy changed, or not ours) acts on
 * nothing, so a Home click never reaches another person's run through the run's channel.
 */
export async function homeClickChannel(deps: DispatchDeps, runId: string, userId: string, name: 'approve' | 'reject' | 'cancel' | 'retry'): Promise<string | undefined> {
  if (!RUN_ID.test(runId)) return undefined;
  const loaded = await loadManifest(deps.store, runId).catch(() => undefined);
  if (!loaded) return undefined;
  const decision = name === 'approve' || name === 'reject';
  return decision || loaded.manifest.requester.userId === userId ? loaded.manifest.requester.channel : undefined;
}

/** Whether to show approvals in this person's Home: the policy's approvers, or its approver group's members. */
async function isApprover(policy: DispatchDeps['policy'], groupMembers: (() => Promise<string[]>) | undefined, userId: string, logger: BoltLogger): Promise<boolean> {
  const { approvers, approverGroup } = policy.approval;
  if (approvers.includes(userId)) return true;
  if (!approverGroup || !groupMembers) return false;
  return groupMembers().then(
    (members) => members.includes(userId),
    (error: unknown) => {
      logger.warn(`could not read approver group ${approverGroup}: ${String(error)}`);
      return false;
    },
  );
}
