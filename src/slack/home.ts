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

export async function homeRuns(store: Store, policy: Policy, userId: string, isApprover: boolean): Promise<HomeRuns> {
  const listed = await listRuns(store, RECENT);
  const runs = listed.flatMap((r) => ('manifest' in r ? [r.manifest] : []));
  const allowed = (m: RunManifest) => !policy.access.channels.length || policy.access.channels.includes(m.requester.channel);
  const mine = runs.filter((m) => m.requester.userId === userId).slice(0, HOME_LIMITS.mine);
  const toApprove = isApprover ? runs.filter((m) => m.status === 'awaiting-approval' && m.requester.userId !== userId && allowed(m)).slice(0, HOME_LIMITS.toApprove) : [];
  const shown = new Set([...mine, ...toApprove].map((m) => m.runId));
  // Direct messages are private to their requester: only channels have "recent runs".
  const channels = [...new Set(mine.map((m) => m.requester.channel))].filter((c) => !c.startsWith('D')).slice(0, HOME_LIMITS.channels);
  return {
    mine,
    toApprove,
    channels: channels.map((channel) => ({ channel, runs: runs.filter((m) => m.requester.channel === channel && !shown.has(m.runId)).slice(0, HOME_LIMITS.perChannel) })),
    unreadable: listed.length - runs.length,
  };
}
