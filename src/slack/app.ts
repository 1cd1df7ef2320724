/**
 * The Bolt app: listeners only, thin (DESIGN.md "Data flow"). Every listener verifies nothing
 * itself (the receiver checks the signature and timestamp), parses and authorizes through the
 * same `dispatch`/`execute` the console uses, and acknowledges within Slack's 3 seconds:
 *
 * - `/starfish <command>`: commands that only validate and publish (run, cancel, retry, stage,
 *   approve, reject, help) are dispatched first and their answer *is* the acknowledgement, so a
 *   refusal (bad input, not allowed here) reaches the person as the ephemeral ack body; cancel,
 *   retry, approve and reject, once published, are acknowledged empty (the launcher answers once
 *   it has acted). Commands that read the store (status, list) are acknowledged empty at once,
 *   then answered through `respond()` (the command's response_url), ephemerally.
 * - the Approve / Reject / Cancel / Retry buttons of a run's root message and of the Home tab
 *   (whose clicks are decided in the run's own channel): acknowledged at once, then the
 *   same command as the slash form is executed for the clicker in the message's channel. The
 *   decision itself (approver in policy? own run? already decided?) is the launcher's, which
 *   answers refusals with chat.postEphemeral; a refusal already known here (e.g. cancel outside
 *   the allowed channels) is sent the same way. The Reject button opens the reason form first.
 * - `/starfish run` alone, and the Home tab's Start button, open the launch form; the forms'
 *   listeners are in ./forms.ts, the Home tab's drawing and its clicks' channel in ./home.ts.
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
import { App, LogLevel, type AnyMiddlewareArgs, type AllMiddlewareArgs, type Receiver, type Logger as BoltLogger, type SlashCommand } from '@slack/bolt';
import { z } from 'zod';
import type { Chat } from '../ports.js';
import { CHANNEL_ID, escapeMrkdwn, untrusted } from '../messages/message.js';
import { ACTIONS, errorMessage } from '../messages/blocks.js';
import { execute, READS_STORE, type Answer, type Caller, type DispatchDeps } from '../command/dispatcher.js';
import { parseCommand, RUN_ID, type Command } from '../command/grammar.js';
import { identityProblem, type SlackIdentity } from './request-guard.js';
import { listenForForms, openLaunchForm, openRejectForm } from './forms.js';
import { fromHome, homeClickChannel, homePublisher } from './home.js';
import { ephemeralResponse, handOverFailed } from './answers.js';
import { ON_SLACKS_CLOCK } from './slack-chat.js';

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

  const publishHome = homePublisher(deps);
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
      const where = CHANNEL_ID.test(channel) ? `<#${channel}>` : 'its channel';
      const said = answer.message ? answer.message.text : `You asked to ${name} run ${untrusted(runId, 40)}: its message in ${where} shows what happened.`;
      await publishHome(client, userId, logger, said);
    });
  }

  listenForForms(app, deps, chat, publishHome);
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
