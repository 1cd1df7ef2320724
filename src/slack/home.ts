/**
 * Which runs a person's App Home shows: their own, the ones waiting for their approval (when they
 * are an approver), and others' recent runs in the channels they run in. A channel's runs are
 * shown to those who have run there, never to the whole workspace: the Home tab is open to anyone
 * who finds the app, while `/starfish list` answers only inside a channel.
 */
import type { Store } from '../ports.js';
import { listRuns } from '../run/manifest-store.js';
import type { RunManifest } from '../run/manifest.js';
import type { Policy } from '../run/policy.js';
import { HOME_LIMITS, type HomeRuns } from '../messages/home-view.js';

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

export async function homeRuns(store: Store, policy: Policy, userId: string, isApprover: boolean): Promise<HomeRuns> {
  const listed = await listRuns(store, RECENT);
  const runs = listed.flatMap((r) => ('manifest' in r ? [r.manifest] : []));
  const allowed = (m: RunManifest) => !policy.access.channels.length || policy.access.channels.includes(m.requester.channel);
  const mine = runs.filter((m) => m.requester.userId === userId).slice(0, HOME_LIMITS.mine);
  const toApprove = isApprover ? runs.filter((m) => m.status === 'awaiting-approval' && m.requester.userId !== userId && allowed(m)).slice(0, HOME_LIMITS.toApprove) : [];
  const shown = new Set([...mine, ...toApprove].map((m) => m.runId));
  // Direct messages are private to their requester: only channels have "recent runs", and only
  // channels the policy still takes commands in (/starfish list answers nowhere else).
  const channels = [...new Set(mine.map((m) => m.requester.channel))].filter((c) => !c.startsWith('D') && (!policy.access.channels.length || policy.access.channels.includes(c))).slice(0, HOME_LIMITS.channels);
  return {
    mayStart: mayStart(policy, userId),
    mine,
    toApprove,
    channels: channels.map((channel) => ({ channel, runs: runs.filter((m) => m.requester.channel === channel && !shown.has(m.runId)).slice(0, HOME_LIMITS.perChannel) })),
    unreadable: listed.length - runs.length,
  };
}
