/**
 * From a typed `/starfish` command to an answer for the person who typed it, plus (for the
 * commands that do slow work) one event on the bus. Shared by Slack and the console; it never
 * touches Batch, and reads the store only for status and list.
 */
import { randomUUID } from 'node:crypto';
import { firstRefusal, passed, type Result } from '../result.js';
import type { Bus, Reader, Store } from '../ports.js';
import type { Message } from '../messages/message.js';
import { parseCommand, type Command } from './grammar.js';
import { helpMessage } from './help.js';
import { errorMessage, listMessage, noticeMessage, statusMessage } from '../messages/blocks.js';
import { checkAccess, checkQueue, type Policy } from '../run/policy.js';
import { UnreadableManifestError, listRuns, loadManifest, type ListedRun } from '../run/manifest-store.js';
import type { RunManifest } from '../run/manifest.js';
import { escapeMrkdwn } from '../messages/message.js';
import { checkLocation } from '../run/locations.js';
import type { RunRequest } from '../run/manifest.js';

export interface DispatchDeps {
  store: Store;
  bus: Bus;
  reader: Pick<Reader, 'checkReadable'>;
  policy: Policy;
  allowPaths: boolean;
}

export interface Caller {
  userId: string;
  channel: string;
  /** Slack's response_url, so that later answers reach the caller even where the bot is not invited. */
  responseUrl?: string;
  /** The id a run request is published under; a one-shot command picks it to find its run. */
  requestId?: string;
}

/** Commands whose answer needs a read of the store (answered after the 3-second ack). */
export const READS_STORE: ReadonlySet<Command['name']> = new Set(['status', 'list']);

/**
 * The answer for the caller; `refused` when the command was not accepted (bad input, not allowed).
 * No message when the launcher answers, once, after it has acted (cancel, retry, approve, reject):
 * an acknowledgement saying "Retrying…" before the launcher says "nothing to retry" was two
 * contradicting answers to one command.
 */
export interface Answer {
  message?: Message | undefined;
  refused: boolean;
}

type CommandOf<N extends Command['name']> = Extract<Command, { name: N }>;

export async function dispatch(deps: DispatchDeps, text: string, caller: Caller): Promise<Answer> {
  const parsed = parseCommand(text);
  // A grammar refusal quotes what was typed: shown as typed, never as markup.
  if (!parsed.ok) return { message: errorMessage(escapeMrkdwn(parsed.reason)), refused: true };
  return execute(deps, parsed.value, caller);
}

export async function execute(deps: DispatchDeps, command: Command, caller: Caller): Promise<Answer> {
  const message = await answer(deps, command, caller);
  return { message, refused: message?.refusal === true };
}

async function answer(deps: DispatchDeps, command: Command, caller: Caller): Promise<Message | undefined> {
  const here = checkChannel(deps.policy, command, caller);
  if (!here.ok) return errorMessage(here.reason);
  switch (command.name) {
    case 'help':
      return helpMessage(command.topic);
    case 'run':
      return requestRun(deps, command.request, caller);
    case 'status':
      return status(deps.store, command.runId, caller);
    case 'list':
      return list(deps.store, caller);
    case 'cancel':
    case 'retry':
      return cancelOrRetry(deps, command, caller);
    case 'approve':
    case 'reject':
      return decide(deps.bus, command, caller);
    case 'stage':
      return stage(deps, command, caller);
  }
}

/** Runs are the lab's business: outside the allowed channels nothing about them is shown. */
function checkChannel(policy: Policy, command: Command, caller: Caller): Result<void> {
  const { channels } = policy.access;
  if (command.name === 'help' || !channels.length || channels.includes(caller.channel)) return passed;
  return checkAccess(policy, caller.userId, caller.channel, 'use');
}

/** Who asked, as the bus events carry it. */
function asker(caller: Caller): Caller {
  return { userId: caller.userId, channel: caller.channel, ...(caller.responseUrl ? { responseUrl: caller.responseUrl } : {}) };
}

/**
 * The checks that need no slow read, so that a mistyped bucket is refused at once; the launcher
 * checks again (with the experiment read) before it creates anything.
 */
function checkRun(deps: DispatchDeps, request: RunRequest, caller: Caller): Result<void> {
  const checks = checkRunRequest(deps, request);
  return firstRefusal(checkAccess(deps.policy, caller.userId, caller.channel, 'start'), checks.experiment, checks.recipe, checks.queue);
}

/**
 * The request's own checks, by the part each concerns: the launch form (src/slack/launch-modal.ts)
 * shows each refusal on its field, so a check added here reaches the form and the typed command.
 */
export function checkRunRequest(deps: Pick<DispatchDeps, 'reader' | 'allowPaths' | 'policy'>, request: RunRequest): Record<'experiment' | 'recipe' | 'queue', Result<void>> {
  return {
    experiment: checkLocation(deps, request.experiment, 'The experiment'),
    recipe: request.recipe ? checkLocation(deps, request.recipe, 'The recipe') : passed,
    queue: checkQueue(deps.policy, request.queue ?? deps.policy.queues.default),
  };
}

async function requestRun(deps: DispatchDeps, request: RunRequest, caller: Caller): Promise<Message> {
  const allowed = checkRun(deps, request, caller);
  if (!allowed.ok) return errorMessage(allowed.reason);
  await deps.bus.publish({ type: 'RunRequested', ...asker(caller), request, requestId: caller.requestId ?? randomUUID() });
  const dryRun = request.dryRun ? ' (dry run: nothing will be submitted)' : '';
  return noticeMessage(`Reading ${escapeMrkdwn(request.experiment)} to plan the run${dryRun}… Its message will appear in this channel.`);
}

/** Runs are seen where they were started: a channel sees its runs; a direct message, the caller's own. */
function visibleTo(caller: Caller): (m: RunManifest) => boolean {
  const direct = caller.channel.startsWith('D');
  return (m) => (direct ? m.requester.userId === caller.userId : m.requester.channel === caller.channel);
}

const unreadableLine = (e: UnreadableManifestError) => `:warning: Run ${e.runId} cannot be read: ${escapeMrkdwn(e.why)} (\`${e.key}\`)`;

/** The recent runs visible from here; a run whose manifest cannot be read is marked, not hidden. */
async function list(store: Store, caller: Caller): Promise<Message> {
  const listed = await listRuns(store, 50);
  const visible = visibleTo(caller);
  const runs = listed.flatMap((r) => ('manifest' in r && visible(r.manifest) ? [r.manifest] : [])).slice(0, 15);
  const unreadable = listed.flatMap((r: ListedRun) => ('unreadable' in r ? [r.unreadable] : []));
  const message = listMessage(runs);
  if (!unreadable.length) return message;
  return { ...message, blocks: [...message.blocks, { type: 'section', text: { type: 'mrkdwn', text: unreadable.slice(0, 10).map(unreadableLine).join('\n') } }] };
}

/** The named run, or without a name the caller's latest, as far as it is visible from here. */
async function status(store: Store, runId: string | undefined, caller: Caller): Promise<Message> {
  const visible = visibleTo(caller);
  if (!runId) {
    const mine = (await listRuns(store, 50)).find((r) => 'manifest' in r && r.manifest.requester.userId === caller.userId && visible(r.manifest));
    return mine && 'manifest' in mine ? statusMessage(mine.manifest) : noticeMessage('You have no runs here yet. Start one with `/starfish run &lt;experiment.json&gt;`.');
  }
  let loaded;
  try {
    loaded = await loadManifest(store, runId);
  } catch (error) {
    if (error instanceof UnreadableManifestError) return errorMessage(`${unreadableLine(error)}. The run's jobs, if any, are not affected; a lab admin can inspect that file.`);
    throw error;
  }
  // A run of another channel is not there for this one: its existence is not confirmed either.
  if (!loaded || !visible(loaded.manifest)) return errorMessage(`There is no run ${runId} here. See /starfish list for the runs of this channel.`);
  return statusMessage(loaded.manifest);
}

/** A retry submits jobs, so it takes the right to start runs; who may cancel depends on whose run it is, which the launcher reads. */
async function cancelOrRetry(deps: DispatchDeps, command: CommandOf<'cancel' | 'retry'>, caller: Caller): Promise<Message | undefined> {
  if (command.name === 'retry') {
    const allowed = checkAccess(deps.policy, caller.userId, caller.channel, 'retry');
    if (!allowed.ok) return errorMessage(allowed.reason);
  }
  await deps.bus.publish({ type: command.name === 'cancel' ? 'RunCancelled' : 'RunRetryRequested', ...asker(caller), runId: command.runId });
  return undefined;
}

/** Whether the caller is an approver is the launcher's check, where the run is read. */
async function decide(bus: Bus, command: CommandOf<'approve' | 'reject'>, caller: Caller): Promise<undefined> {
  if (command.name === 'approve') await bus.publish({ type: 'RunApproved', ...asker(caller), runId: command.runId });
  else await bus.publish({ type: 'RunRejected', ...asker(caller), runId: command.runId, ...(command.reason ? { reason: command.reason } : {}) });
  return undefined;
}

async function stage(deps: DispatchDeps, command: CommandOf<'stage'>, caller: Caller): Promise<Message> {
  const allowed = firstRefusal(checkAccess(deps.policy, caller.userId, caller.channel, 'stage'), checkLocation(deps, command.source, 'The source'));
  if (!allowed.ok) return errorMessage(allowed.reason);
  const name = command.as ?? defaultStageName(command.source);
  await deps.bus.publish({ type: 'StageRequested', ...asker(caller), source: command.source, name });
  return noticeMessage(`Staging ${escapeMrkdwn(command.source)} as ${escapeMrkdwn(name)}…`);
}

/** `…/ISS-TEST/experiment.json` → `iss-test`. */
function defaultStageName(source: string): string {
  const parts = source.split('/').filter(Boolean);
  const dir = parts.at(-2) ?? 'experiment';
  return dir.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[^a-z0-9]+/, '').slice(0, 64) || 'experiment';
}
