/**
 * From a typed `/starfish` command to an answer for the person who typed it, plus (for the
 * commands that do slow work) one event on the bus. Shared by Slack and the console; it never
 * touches Batch, and reads the store only for status and list.
 */
import { randomUUID } from 'node:crypto';
import type { Bus, Reader, Store } from '../ports.js';
import type { Message } from '../messages/message.js';
import { parseCommand, type Command } from './grammar.js';
import { helpMessage } from './help.js';
import { errorMessage, listMessage, noticeMessage, statusMessage } from '../messages/blocks.js';
import { refuseAccess, refuseQueue, type Policy } from '../run/policy.js';
import { listManifests, loadManifest } from '../run/manifest-store.js';
import { kindOf } from '../run/locations.js';

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
}

/** Commands whose answer needs a read of the store (answered after the 3-second ack). */
export const READS_STORE: ReadonlySet<Command['name']> = new Set(['status', 'list']);

export function checkLocation(deps: Pick<DispatchDeps, 'reader' | 'allowPaths'>, location: string, what: string): string | undefined {
  if (kindOf(location) === 'path' && !deps.allowPaths) {
    return `${what} "${location}" is a file path, but this deployment reads only s3:// or https:// URLs. Example: s3://lab-data/iss/experiment.json`;
  }
  return deps.reader.checkReadable(location);
}

/** The answer for the caller; `refused` when the command was not accepted (bad input, not allowed). */
export interface Answer {
  message: Message;
  refused: boolean;
}

export async function dispatch(deps: DispatchDeps, text: string, caller: Caller): Promise<Answer> {
  const parsed = parseCommand(text);
  if (!parsed.ok) return { message: errorMessage(parsed.error), refused: true };
  return execute(deps, parsed.command, caller);
}

export async function execute(deps: DispatchDeps, command: Command, caller: Caller): Promise<Answer> {
  const message = await answer(deps, command, caller);
  return { message, refused: message.refusal === true };
}

async function answer(deps: DispatchDeps, command: Command, caller: Caller): Promise<Message> {
  const { policy, bus, store } = deps;
  const who = { userId: caller.userId, channel: caller.channel, ...(caller.responseUrl ? { responseUrl: caller.responseUrl } : {}) };
  // Runs are the lab's business: outside the allowed channels nothing about them is shown.
  if (command.name !== 'help' && policy.access.channels.length && !policy.access.channels.includes(caller.channel)) {
    return errorMessage(refuseAccess(policy, caller.userId, caller.channel, 'use')!);
  }
  switch (command.name) {
    case 'help':
      return helpMessage(command.topic);
    case 'run': {
      const refusal =
        refuseAccess(policy, caller.userId, caller.channel, 'start') ??
        checkLocation(deps, command.request.experiment, 'The experiment') ??
        (command.request.recipe ? checkLocation(deps, command.request.recipe, 'The recipe') : undefined) ??
        refuseQueue(policy, command.request.queue ?? policy.queues.default);
      if (refusal) return errorMessage(refusal);
      await bus.publish({ type: 'RunRequested', ...who, request: command.request, requestId: randomUUID() });
      return noticeMessage(
        `Reading ${command.request.experiment} to plan the run${command.request.dryRun ? ' (dry run: nothing will be submitted)' : ''}… Its message will appear in this channel.`,
      );
    }
    case 'status': {
      if (!command.runId) {
        const mine = (await listManifests(store, 50)).find((m) => m.requester.userId === caller.userId);
        return mine ? statusMessage(mine) : noticeMessage('You have no runs yet. Start one with `/starfish run &lt;experiment.json&gt;`.');
      }
      const loaded = await loadManifest(store, command.runId);
      return loaded ? statusMessage(loaded.manifest) : errorMessage(`There is no run ${command.runId}. See /starfish list for the recent ones.`);
    }
    case 'list':
      return listMessage(await listManifests(store, 15));
    case 'cancel':
    case 'retry': {
      if (command.name === 'retry') {
        const refusal = refuseAccess(policy, caller.userId, caller.channel, 'retry');
        if (refusal) return errorMessage(refusal);
      }
      await bus.publish({ type: command.name === 'cancel' ? 'RunCancelled' : 'RunRetryRequested', ...who, runId: command.runId });
      return noticeMessage(command.name === 'cancel' ? `Cancelling run ${command.runId}…` : `Retrying the failed FOVs of run ${command.runId}…`);
    }
    case 'approve':
    case 'reject':
      await bus.publish({ type: command.name === 'approve' ? 'RunApproved' : 'RunRejected', ...who, runId: command.runId });
      return noticeMessage(`${command.name === 'approve' ? 'Approving' : 'Rejecting'} run ${command.runId}…`);
    case 'stage': {
      const refusal = refuseAccess(policy, caller.userId, caller.channel, 'stage') ?? checkLocation(deps, command.source, 'The source');
      if (refusal) return errorMessage(refusal);
      const name = command.as ?? defaultStageName(command.source);
      await bus.publish({ type: 'StageRequested', ...who, source: command.source, name });
      return noticeMessage(`Staging ${command.source} as ${name}…`);
    }
  }
}

/** `…/ISS-TEST/experiment.json` → `iss-test`. */
export function defaultStageName(source: string): string {
  const parts = source.split('/').filter(Boolean);
  const dir = parts.at(-2) ?? 'experiment';
  return dir.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[^a-z0-9]+/, '').slice(0, 64) || 'experiment';
}
