/**
 * The Bolt app: listeners only, thin (DESIGN.md "Data flow"). Every listener verifies nothing
 * itself (the receiver checks the signature and timestamp), parses and authorizes through the
 * same `dispatch`/`execute` the console uses, and acknowledges within Slack's 3 seconds:
 *
 * - `/starfish <command>`: commands that only validate and publish (run, cancel, retry, stage,
 *   approve, reject, help) are dispatched first and their answer *is* the acknowledgement, so a
 *   refusal (bad input, not allowed here) reaches the person as the ephemeral ack body. Commands
 *   that read the store (status, list) are acknowledged empty at once, then answered through
 *   `respond()` (the command's response_url), ephemerally.
 * - the Approve / Reject / Cancel buttons of a run's root message: acknowledged at once, then the
 *   same command as the slash form is executed for the clicker in the message's channel. The
 *   decision itself (approver in policy? own run? already decided?) is the launcher's, which
 *   answers refusals with chat.postEphemeral; a refusal already known here (e.g. cancel outside
 *   the allowed channels) is sent the same way.
 *
 * Authorization lives in dispatch (access.channels, access.runners, locations, queues) and in the
 * launcher (approvers, self-approval, the compare-and-swap that makes 50 clicks submit once);
 * nothing here duplicates it.
 *
 * What reaches the listeners, whatever the receiver: requests of the configured workspace and
 * Slack app only (`identity`, checked in `authorize`; others are acknowledged and dropped), and
 * never a retry (Bolt's context.retryNum, from X-Slack-Retry-Num or Socket Mode's retry_attempt:
 * acknowledged, the first delivery does the work). The public HTTP endpoint (src/lambda/slack.ts)
 * also runs src/slack/request-guard.ts before Bolt: timestamps, replays, malformed bodies.
 */
import { App, LogLevel, type AnyMiddlewareArgs, type AllMiddlewareArgs, type Receiver, type Logger as BoltLogger, type RespondArguments, type SlashCommand } from '@slack/bolt';
import { z } from 'zod';
import type { Chat } from '../ports.js';
import { escapeMrkdwn, untrusted, type Message } from '../messages/message.js';
import { ACTIONS, errorMessage } from '../messages/blocks.js';
import { execute, READS_STORE, type Answer, type Caller, type DispatchDeps } from '../command/dispatcher.js';
import { EXAMPLES, parseCommand, RUN_ID, type Command } from '../command/grammar.js';
import { checkAccess } from '../run/policy.js';
import { loadManifest } from '../run/manifest-store.js';
import { homeView, LAUNCH_ACTION } from '../messages/home-view.js';
import { identityProblem, type SlackIdentity } from './request-guard.js';
import { launchModal, launchRefusedModal, LAUNCH_CALLBACK, LAUNCH_FIELDS, readLaunchForm } from './launch-modal.js';
import { readRejectForm, rejectModal, REJECT_CALLBACK, REASON_BLOCK } from './reject-modal.js';
import { homeRuns, mayStart, startRefusal } from './home.js';
import { approverGroupResolver, ON_SLACKS_CLOCK, type WebClient } from './slack-chat.js';

export interface SlackAppOptions {
  /**
   * An AwsLambdaReceiver, HTTPReceiver or SocketModeReceiver; else Socket Mode with `appToken`.
   * (No HTTP receiver is built here: the public endpoint is src/lambda/slack.ts, guarded.)
   */
  receiver?: Receiver;
  /** Socket Mode (development): the app-level token, xapp-…; Bolt then opens a WebSocket instead of listening. */
  appToken?: string;
  /**
   * The workspace (team id, T…) and Slack app (app id, A…) this deployment serves; requests from
   * any other are dropped. Unset fields are not checked. Configuration: SLACK_TEAM_ID, SLACK_APP_ID.
   */
  identity?: SlackIdentity;
  /** The bot token, xoxb-…, used for the listeners' own Web API client. */
  token: string;
  slackApiUrl?: string | undefined;
  dispatchDeps: DispatchDeps;
  /** Where refusals to button clicks go (chat.postEphemeral). */
  chat: Chat;
  /** The slash command's name as registered in the manifest. */
  command?: string;
  logLevel?: LogLevel;
  logger?: BoltLogger;
}

const BUTTONS: ReadonlyArray<[actionId: string, command: 'approve' | 'reject' | 'cancel' | 'retry']> = [
  [ACTIONS.approve, 'approve'],
  [ACTIONS.reject, 'reject'],
  [ACTIONS.cancel, 'cancel'],
  [ACTIONS.retry, 'retry'],
];

/** An ephemeral slash-command response carrying one of our messages. */
function ephemeralResponse(message: Message): RespondArguments {
  return { response_type: 'ephemeral', text: message.text, blocks: message.blocks };
}

/** A view submission's answer paths, one per conversations_select with response_url_enabled. */
const responseUrlsSchema = z.object({ response_urls: z.array(z.object({ channel_id: z.string(), response_url: z.string().url() })) });

/** Where a click came from when the payload has no `channel` (Bolt types the container loosely). */
const containerSchema = z.object({ channel_id: z.string() });

/** Bolt's authorize, as the identity check: a stranger's request gets no token, so no listener runs. */
function authorizeFor(token: string, identity: SlackIdentity | undefined) {
  return async (source: { teamId?: string | undefined }, body?: AnyMiddlewareArgs['body']) => {
    const appId = body && 'api_app_id' in body && typeof body.api_app_id === 'string' ? body.api_app_id : undefined;
    const stranger = identityProblem({ teamId: source.teamId, appId }, identity);
    if (stranger) throw new Error(`request refused: ${stranger}`);
    return { botToken: token };
  };
}

/** A retry of a request already delivered is acknowledged, and nothing else happens. */
async function dropRetries(args: AnyMiddlewareArgs & AllMiddlewareArgs): Promise<void> {
  const { context, next, logger } = args;
  if (context.retryNum === undefined || context.retryNum === null) return next();
  logger.info(`Slack retry ${String(context.retryNum)} (${String(context.retryReason ?? 'no reason given')}) acknowledged without doing the work again`);
  if ('ack' in args && typeof args.ack === 'function') await (args.ack as () => Promise<void>)();
}

const handOverFailed = (what: string) =>
  errorMessage(`starfish could not take ${what} right now (the request did not reach its queue). Nothing was started; try again in a minute.`);

export function createSlackApp(options: SlackAppOptions): App {
  const { dispatchDeps: deps, chat, token } = options;
  const app = new App({
    ...(options.receiver ? { receiver: options.receiver } : {}),
    ...(options.appToken && !options.receiver ? { socketMode: true, appToken: options.appToken } : {}),
    // A fixed authorization instead of `token`: Bolt would otherwise call auth.test on start
    // (and again on a cold Lambda) for the bot's own ids, which only event listeners need.
    authorize: authorizeFor(token, options.identity),
    // The listeners' own calls (views.open, views.publish, the approver group) run before the
    // HTTP answer (AwsLambdaReceiver answers when the listener returns) and a trigger_id expires
    // after 3 seconds: no waiting out a 429's Retry-After, the default backoff of ~30 minutes, or
    // a Slack that does not answer (the client's default is no timeout).
    clientOptions: { ...(options.slackApiUrl ? { slackApiUrl: options.slackApiUrl } : {}), ...ON_SLACKS_CLOCK },
    logLevel: options.logLevel ?? LogLevel.WARN,
    ...(options.logger ? { logger: options.logger } : {}),
  });
  app.use(dropRetries);

  app.command(options.command ?? '/starfish', async ({ command, ack, respond, logger, client }) => {
    const caller = callerOf(command);
    if (/^\s*run\s*$/i.test(command.text)) {
      await openLaunchForm(deps, client, { ack, respond, logger }, command.trigger_id, caller);
      return;
    }
    const parsed = parseCommand(command.text);
    if (!parsed.ok) {
      await ack(ephemeralResponse(errorMessage(escapeMrkdwn(parsed.reason))));
      return;
    }
    if (READS_STORE.has(parsed.value.name)) {
      await ack();
      let answer: Answer;
      try {
        answer = await execute(deps, parsed.value, caller);
      } catch (error) {
        logger.error(`starfish ${parsed.value.name} failed: ${(error as Error).message}`);
        answer = { message: errorMessage(`starfish could not read the runs just now (${untrusted((error as Error).message, 300)}). Try again in a minute.`), refused: true };
      }
      if (answer.message) await respond(ephemeralResponse(answer.message));
      return;
    }
    let answer: Answer;
    try {
      answer = await execute(deps, parsed.value, caller);
    } catch (error) {
      logger.error(`starfish ${parsed.value.name} failed: ${(error as Error).message}`);
      answer = { message: handOverFailed(`/starfish ${parsed.value.name}`), refused: true };
    }
    // No message: the launcher answers once it has acted.
    await ack(answer.message ? ephemeralResponse(answer.message) : undefined);
  });

  // Every drawing of the Home tab asks whether the person is an approver: the group's members are
  // read once a minute (usergroups.users.list is rate-limited), as the launcher reads them.
  let groupMembers: (() => Promise<string[]>) | undefined;
  const publishHome = async (client: WebClient, userId: string, logger: BoltLogger, notice?: string) => {
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

  for (const [actionId, name] of BUTTONS) {
    app.action({ action_id: actionId, type: 'block_actions' }, async ({ ack, body, action, logger, client }) => {
      await ack();
      const userId = body.user.id;
      const runId = 'value' in action && typeof action.value === 'string' ? action.value : '';
      // A click in the App Home tab has no channel: the run's own channel is where it is decided.
      const channel = body.channel?.id ?? containerSchema.safeParse(body.container).data?.channel_id ?? (await homeClickChannel(deps, runId, userId, name));
      if (!channel) {
        logger.warn(`${actionId} from ${userId} for ${untrusted(runId, 40)} came from no channel and names no run the Home tab gives them that button for; ignored`);
        return;
      }
      // A click comes from the bot's own message, so the bot is in the channel: chat.postEphemeral works.
      const caller: Caller = { userId, channel };
      if (!RUN_ID.test(runId)) {
        await chat.ephemeral(channel, userId, errorMessage(`This button carries no run id ("${untrusted(runId, 40)}"). Use /starfish ${name} &lt;run id&gt; instead.`));
        return;
      }
      if (name === 'reject') {
        await openRejectForm(client, chat, body.trigger_id, runId, caller, logger);
        return;
      }
      const command: Command = { name, runId };
      let answer: Answer;
      try {
        answer = await execute(deps, command, caller);
      } catch (error) {
        logger.error(`${actionId} for ${runId} failed: ${(error as Error).message}`);
        answer = { message: handOverFailed(`your ${name} of run ${runId}`), refused: true };
      }
      if (!fromHome(body)) {
        if (answer.message) await chat.ephemeral(channel, userId, answer.message);
        return;
      }
      // From the Home tab: said there, where the person is looking; the launcher's answer follows in the run's channel.
      const where = /^[CG][A-Z0-9]{2,20}$/.test(channel) ? `<#${channel}>` : 'its channel';
      const said = answer.message ? answer.message.text : `You asked to ${name} run ${untrusted(runId, 40)}: its message in ${where} shows what happened.`;
      await publishHome(client, userId, logger, said);
    });
  }

  app.action({ action_id: LAUNCH_ACTION, type: 'block_actions' }, async ({ ack, body, client, logger }) => {
    await ack();
    // The Home tab is open to the whole workspace; its Start button is shown to runners only, and
    // a click from an older Home (published before the person left access.runners) is told why.
    const refusal = mayStart(deps.policy, body.user.id) ? undefined : startRefusal(deps.policy);
    try {
      await client.views.open({ trigger_id: body.trigger_id, view: refusal ? launchRefusedModal(refusal) : launchModal(deps.policy, {}) });
    } catch (error) {
      logger.error(`could not open the launch form for ${body.user.id}: ${(error as Error).message}`);
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
      await ack({ response_action: 'errors', errors: { [LAUNCH_FIELDS.channel]: plainText(answer.message?.text ?? 'The run was refused.') } });
      return;
    }
    await ack();
    if (answer.message) await chat.ephemeral(form.channel, userId, answer.message, responseUrl).catch((error: unknown) => logger.warn(`could not confirm the run to ${userId}: ${String(error)}`));
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

  app.event('app_home_opened', async ({ event, client, logger }) => {
    if (event.tab === 'home') await publishHome(client, event.user, logger);
  });

  app.error(async (error) => {
    app.logger.error(`starfish slack listener error: ${error.message}`);
  });

  return app;
}

function callerOf(command: SlashCommand): Caller {
  return { userId: command.user_id, channel: command.channel_id, ...(command.response_url ? { responseUrl: command.response_url } : {}) };
}

/** A click from the App Home tab (its container is the Home view, not a message). */
const fromHome = (body: unknown) => homeContainerSchema.safeParse(body).success;
const homeContainerSchema = z.object({ container: z.object({ type: z.literal('view') }), view: z.object({ type: z.literal('home') }) });

/** The plain text of a refusal, for a modal's field error (which shows no markup). */
function plainText(mrkdwn: string): string {
  return mrkdwn.replace(/^:warning: /, '').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

type Listener = Pick<Parameters<Parameters<App['command']>[1]>[0], 'ack' | 'respond' | 'logger'>;

/**
 * `/starfish run` alone opens the launch form, where the person may start runs; else the refusal
 * the typed command would get. The trigger expires 3 seconds after the command, so it is opened
 * before anything slow.
 */
async function openLaunchForm(deps: DispatchDeps, client: WebClient, { ack, respond, logger }: Listener, triggerId: string, caller: Caller): Promise<void> {
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
async function openRejectForm(client: WebClient, chat: Chat, triggerId: string, runId: string, caller: Caller, logger: BoltLogger): Promise<void> {
  try {
    await client.views.open({ trigger_id: triggerId, view: rejectModal(runId, caller.channel) });
  } catch (error) {
    logger.error(`could not open the reject form for ${runId}: ${(error as Error).message}`);
    await chat.ephemeral(caller.channel, caller.userId, errorMessage(`The form to reject run ${runId} did not open; type /starfish reject ${runId} &lt;reason&gt; instead.`));
  }
}

/**
 * The channel a Home tab click is decided in: the run's own. The Home tab offers Cancel and Retry
 * on the clicker's own runs only, and Approve/Reject to approvers (the launcher checks who is
 * one); a click outside that (a Home published before the policy changed, or not ours) acts on
 * nothing, so a Home click never reaches another person's run through the run's channel.
 */
async function homeClickChannel(deps: DispatchDeps, runId: string, userId: string, name: (typeof BUTTONS)[number][1]): Promise<string | undefined> {
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
