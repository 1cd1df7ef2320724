/**
 * The listeners of the two forms (modals): the launch form, opened by `/starfish run` alone
 * (src/slack/app.ts) or the Home tab's Start button, and the Reject button's reason form. Each
 * submission becomes the same command a person could type, executed for them through `execute`;
 * a refusal is shown on the form's fields and nothing is started.
 */
import type { App, Logger as BoltLogger } from '@slack/bolt';
import { z } from 'zod';
import type { Chat } from '../ports.js';
import { escapeMrkdwn } from '../messages/message.js';
import { errorMessage } from '../messages/blocks.js';
import { LAUNCH_ACTION } from '../messages/home-view.js';
import { execute, type Answer, type Caller, type DispatchDeps } from '../command/dispatcher.js';
import { EXAMPLES, type Command } from '../command/grammar.js';
import { checkAccess } from '../run/policy.js';
import { launchModal, launchRefusedModal, LAUNCH_CALLBACK, LAUNCH_FIELDS, plainError, readLaunchForm } from './launch-modal.js';
import { readRejectForm, rejectModal, REJECT_CALLBACK, REASON_BLOCK } from './reject-modal.js';
import { mayStart, startRefusal, type HomePublisher } from './home.js';
import { ephemeralResponse, handOverFailed } from './answers.js';
import type { WebClient } from './slack-chat.js';

/** A view submission's answer paths, one per conversations_select with response_url_enabled. */
const responseUrlsSchema = z.object({ response_urls: z.array(z.object({ channel_id: z.string(), response_url: z.string().url() })) });

const NOT_IN_CHANNEL = 'starfish is not in that channel, so the run cannot be announced there: nothing was submitted. Invite it with /invite @starfish, then Start again (or choose another channel).';

/** Slack's answer for a channel the bot was not invited to (or cannot see). */
const notInChannel = (error: unknown) => ['not_in_channel', 'channel_not_found'].includes(platformErrorSchema.safeParse(error).data?.data.error ?? '');
const platformErrorSchema = z.object({ data: z.object({ error: z.string() }) });

export function listenForForms(app: App, deps: DispatchDeps, chat: Chat, publishHome: HomePublisher): void {
  app.action({ action_id: LAUNCH_ACTION, type: 'block_actions' }, async ({ ack, body, client, logger }) => {
    await ack();
    // The Home tab is open to the whole workspace; its Start button is shown to runners only, and
    // a click from an older Home (published before the person left access.runners) is told why.
    const refusal = mayStart(deps.policy, body.user.id) ? undefined : startRefusal(deps.policy);
    try {
      await client.views.open({ trigger_id: body.trigger_id, view: refusal ? launchRefusedModal(refusal) : launchModal(deps.policy, {}) });
    } catch (error) {
      logger.error(`could not open the launch form for ${body.user.id}: ${(error as Error).message}`);
      // Said in the tab the person is looking at, as /starfish run alone says it in the channel.
      await publishHome(client, body.user.id, logger, `:warning: The form to start a run did not open; type the run in the lab channel instead. Example: ${escapeMrkdwn(EXAMPLES.run)}`);
    }
  });

  app.view(LAUNCH_CALLBACK, async ({ ack, body, view, logger }) => {
    const userId = body.user.id;
    const form = readLaunchForm(deps, userId, view.state.values);
    if (!form.ok) {
      await ack({ response_action: 'errors', errors: form.errors });
      return;
    }
    // The conversations_select's response_url (response_url_enabled) answers in the chosen channel.
    const responseUrl = responseUrlsSchema.safeParse(body).data?.response_urls.find((r) => r.channel_id === form.channel)?.response_url;
    const caller: Caller = { userId, channel: form.channel, ...(responseUrl ? { responseUrl } : {}) };
    let answer: Answer;
    try {
      answer = await execute(deps, { name: 'run', request: form.request }, caller);
    } catch (error) {
      logger.error(`starfish run from the launch form failed: ${(error as Error).message}`);
      await ack({ response_action: 'errors', errors: { [LAUNCH_FIELDS.experiment]: 'starfish could not take the run right now (its queue did not answer). Nothing was started; try again in a minute.' } });
      return;
    }
    if (answer.refused) {
      await ack({ response_action: 'errors', errors: { [LAUNCH_FIELDS.channel]: plainError(answer.message?.text ?? 'The run was refused.') } });
      return;
    }
    if (responseUrl || !answer.message) {
      await ack();
      if (answer.message) await chat.ephemeral(form.channel, userId, answer.message, responseUrl).catch((error: unknown) => logger.warn(`could not confirm the run to ${userId}: ${String(error)}`));
      return;
    }
    // No response_url (a form opened from the Home tab): the answer goes by chat.postEphemeral
    // before the form closes, which also finds a channel the bot is not in. There the launcher
    // cannot post the run's message either, so it ends the run unsubmitted; the form says why.
    try {
      await chat.ephemeral(form.channel, userId, answer.message);
      await ack();
    } catch (error) {
      logger.warn(`could not confirm the run to ${userId} in ${form.channel}: ${String(error)}`);
      await ack(notInChannel(error) ? { response_action: 'errors', errors: { [LAUNCH_FIELDS.channel]: NOT_IN_CHANNEL } } : undefined);
    }
  });

  app.view(REJECT_CALLBACK, async ({ ack, body, view, logger }) => {
    const userId = body.user.id;
    const form = readRejectForm(view.private_metadata, view.state.values);
    if (!form.ok) {
      await ack({ response_action: 'errors', errors: { [REASON_BLOCK]: form.error } });
      return;
    }
    await ack();
    const command: Command = { name: 'reject', runId: form.runId, ...(form.reason ? { reason: form.reason } : {}) };
    let answer: Answer;
    try {
      answer = await execute(deps, command, { userId, channel: form.channel });
    } catch (error) {
      logger.error(`reject of ${form.runId} failed: ${(error as Error).message}`);
      answer = { message: handOverFailed(`your rejection of run ${form.runId}`), refused: true };
    }
    if (answer.message) await chat.ephemeral(form.channel, userId, answer.message);
  });
}

type Listener = Pick<Parameters<Parameters<App['command']>[1]>[0], 'ack' | 'respond' | 'logger'>;

/**
 * `/starfish run` alone opens the launch form, where the person may start runs; else the refusal
 * the typed command would get. The trigger expires 3 seconds after the command, so it is opened
 * before anything slow.
 */
export async function openLaunchForm(deps: DispatchDeps, client: WebClient, { ack, respond, logger }: Listener, triggerId: string, caller: Caller): Promise<void> {
  const allowed = checkAccess(deps.policy, caller.userId, caller.channel, 'start');
  if (!allowed.ok) {
    await ack(ephemeralResponse(errorMessage(allowed.reason)));
    return;
  }
  await ack();
  try {
    await client.views.open({ trigger_id: triggerId, view: launchModal(deps.policy, { channel: caller.channel }) });
  } catch (error) {
    logger.error(`could not open the launch form: ${(error as Error).message}`);
    await respond(ephemeralResponse(errorMessage(`The form to start a run did not open; type the run instead. Example: ${escapeMrkdwn(EXAMPLES.run)}`)));
  }
}

/** The Reject button asks for a reason first (a modal); if the form cannot open, the typed form is offered. */
export async function openRejectForm(client: WebClient, chat: Chat, triggerId: string, runId: string, caller: Caller, logger: BoltLogger): Promise<void> {
  try {
    await client.views.open({ trigger_id: triggerId, view: rejectModal(runId, caller.channel) });
  } catch (error) {
    logger.error(`could not open the reject form for ${runId}: ${(error as Error).message}`);
    await chat.ephemeral(caller.channel, caller.userId, errorMessage(`The form to reject run ${runId} did not open; type /starfish reject ${runId} &lt;reason&gt; instead.`));
  }
}
