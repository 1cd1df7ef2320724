/**
 * The App Home tab (views.publish): a start button, the runs waiting for this person's approval,
 * their own recent runs, and the recent runs of the channels they run in, each with its state and
 * the buttons of its root message (src/messages/blocks.ts runActions), so a lab manages runs
 * without typing. Everything shown is escaped as in the run messages. A Home view holds at most
 * 100 blocks (https://docs.slack.dev/reference/views); the counts below keep it under 60.
 */
import type { HomeView, KnownBlock } from '@slack/types';
import type { RunManifest } from '../run/manifest.js';
import { progressLine, runActions, runLine } from './blocks.js';
import { CHANNEL_ID, LIMITS, clip, summarizeLines, withoutBroadcasts } from './message.js';

export const LAUNCH_ACTION = 'open_launch_form';
export const HOME_LIMITS = { mine: 10, toApprove: 8, channels: 3, perChannel: 8 } as const;

export interface HomeRuns {
  /** Whether the person may start runs (access.runners): the Start button is shown to them only. */
  mayStart: boolean;
  /** The person's own runs, newest first. */
  mine: RunManifest[];
  /** Others' runs waiting for approval, when the person is an approver. */
  toApprove: RunManifest[];
  /** Recent runs by others in the channels where the person runs. */
  channels: Array<{ channel: string; runs: RunManifest[] }>;
  /** Runs whose manifest could not be read. */
  unreadable: number;
}

const md = (text: string) => ({ type: 'mrkdwn' as const, text: withoutBroadcasts(clip(text, LIMITS.sectionText)), verbatim: true });
const section = (text: string): KnownBlock => ({ type: 'section', text: md(text) });
const heading = (text: string): KnownBlock => ({ type: 'header', text: { type: 'plain_text', text } });

/** A run with its progress (once submitted) and, where `withButtons`, what can be done to it now. */
function runBlocks(m: RunManifest, withButtons: boolean): KnownBlock[] {
  const line = m.submissions.length ? `${runLine(m)}\n\`${progressLine(m)}\`` : runLine(m);
  const actions = withButtons ? runActions(m) : undefined;
  return actions ? [section(line), actions] : [section(line)];
}

/**
 * `notice`: what the person just did from this tab (mrkdwn, composed by the caller, untrusted
 * parts escaped), shown under the title: the tab is where they are looking, not the run's channel.
 */
export function homeView(runs: HomeRuns, notice?: string): HomeView {
  const intro = md('Run a starfish recipe on every field of view of an experiment, on AWS Batch.');
  const blocks: KnownBlock[] = [
    heading('starfish'),
    runs.mayStart
      ? { type: 'section', text: intro, accessory: { type: 'button', text: { type: 'plain_text', text: 'Start a run' }, action_id: LAUNCH_ACTION, style: 'primary', value: 'launch' } }
      : { type: 'section', text: intro },
    { type: 'context', elements: [md('Typed commands work too: `/starfish run <experiment.json> fovs=0-15` · `/starfish list` · `/starfish help`')] },
  ];
  if (notice) blocks.splice(1, 0, section(notice));
  if (runs.toApprove.length) {
    blocks.push({ type: 'divider' }, heading('Waiting for your approval'));
    for (const m of runs.toApprove.slice(0, HOME_LIMITS.toApprove)) blocks.push(...runBlocks(m, true));
  }
  blocks.push({ type: 'divider' }, heading('Your runs'));
  if (!runs.mine.length) blocks.push(section(runs.mayStart ? 'No recent runs of yours. *Start a run* above, or type `/starfish run` in the lab channel.' : 'No recent runs of yours. A lab admin can add you to the people who may start them.'));
  // Your own run waiting for approval has no buttons here: it is someone else's to decide, or
  // (where the policy allows self-approval) listed with them under "Waiting for your approval".
  for (const m of runs.mine.slice(0, HOME_LIMITS.mine)) blocks.push(...runBlocks(m, m.status !== 'awaiting-approval'));
  for (const { channel, runs: theirs } of runs.channels.slice(0, HOME_LIMITS.channels)) {
    // A channel id read back from a manifest becomes a mention only if it is one.
    if (!theirs.length || !CHANNEL_ID.test(channel)) continue;
    const lines = theirs.slice(0, HOME_LIMITS.perChannel).map((m) => `• ${runLine(m)}`);
    blocks.push({ type: 'divider' }, section(`*Recent in <#${channel}>*\n${summarizeLines(lines)}`));
  }
  if (runs.unreadable) blocks.push({ type: 'context', elements: [md(`:warning: ${runs.unreadable} recent runs could not be read; /starfish list names them.`)] });
  return { type: 'home', blocks };
}
