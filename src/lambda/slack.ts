/**
 * The Slack Lambda: API Gateway (or a function URL) → Bolt's AwsLambdaReceiver → the thin
 * listeners of src/slack/app.ts → EventBridge. It never does slow work: `run` and the buttons
 * publish one event and return; status and list read S3 and answer through response_url.
 *
 * Credentials: STARFISH_SLACK_SECRET_ARN names a Secrets Manager JSON secret
 * {"signingSecret": "…", "botToken": "xoxb-…"}, read once per container (src/aws/secrets.ts);
 * without it, SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN from the environment (development stacks).
 *
 * The endpoint is public: every request first passes src/slack/request-guard.ts (method, size,
 * signature, a timestamp within 5 minutes either way, retries acknowledged, form body of a slash
 * command or an interaction or JSON of an Events API callback or the URL handshake, team and app
 * ids), answered 4xx without reaching Bolt when it fails,
 * and is then claimed once by its signature in the store (requests/slack/…), so that a replayed
 * request does not start a second run. Bolt's AwsLambdaReceiver then verifies it again and runs
 * the listeners.
 *
 * Cold start: this module loads only Bolt and the listeners. The AWS backend (S3 and EventBridge
 * SDKs, policy, config) and Secrets Manager are imported on the first invocation and kept for the
 * container's life; a failed initialisation is retried on the next invocation, except a wrong
 * backend configuration (kept, and told to each signed command: the environment does not change).
 */
import { AwsLambdaReceiver, LogLevel, type Logger as BoltLogger } from '@slack/bolt';
import type { APIGatewayProxyStructuredResultV2, Context, LambdaFunctionURLEvent } from 'aws-lambda';
import { z } from 'zod';
import type { DispatchDeps } from '../command/dispatcher.js';
import type { Chat, Store } from '../ports.js';
import { ConfigError } from '../config.js';
import { escapeMrkdwn } from '../messages/message.js';
import { createSlackApp } from '../slack/app.js';
import { ON_SLACKS_CLOCK, SlackChat } from '../slack/slack-chat.js';
import { checkIdentity, checkSlackRequest, claimSlackRequest, SLACK_FORM, type SlackIdentity, type Verdict } from '../slack/request-guard.js';

interface SlackCredentials {
  signingSecret: string;
  botToken: string;
}

/** What the Slack side needs of a backend; src/aws/system.ts's createAwsSystem returns more. */
interface SlackBackend {
  dispatchDeps: DispatchDeps;
}

export interface SlackHandlerOptions {
  env?: NodeJS.ProcessEnv;
  /** The backend behind dispatch; the AWS one by default. */
  createBackend?: (chat: Chat, env: NodeJS.ProcessEnv) => SlackBackend | Promise<SlackBackend>;
  /** Credentials source; Secrets Manager or the environment by default. */
  credentials?: (env: NodeJS.ProcessEnv) => Promise<SlackCredentials>;
  /**
   * The workspace and Slack app to serve (team id T…, app id A…); requests for others get 403.
   * By default SLACK_TEAM_ID and SLACK_APP_ID from `env`; unset, they are not checked.
   */
  identity?: SlackIdentity;
}

type AwsHandler = Awaited<ReturnType<AwsLambdaReceiver['start']>>;

interface Ready {
  bolt: AwsHandler;
  signingSecret: string;
  identity: SlackIdentity;
  store: Pick<Store, 'createIfAbsent'>;
  logger: BoltLogger;
}

/**
 * A function URL invocation (the same payload 2.0 as an API Gateway HTTP API). Bolt's receiver
 * checks the Slack signature over the body before anything reads it; the answer always has a
 * status code and a body.
 */
export type SlackLambdaHandler = ((event: LambdaFunctionURLEvent, context?: Context) => Promise<APIGatewayProxyStructuredResultV2>) & {
  /** Does the first request's work now (credentials, backend, Bolt app); never throws. */
  prewarm(): Promise<void>;
};

const EXAMPLE_SECRET = 'STARFISH_SLACK_SECRET_ARN=arn:aws:secretsmanager:us-east-1:123456789012:secret:starfish/slack-AbCdEf';

/** Secrets Manager when STARFISH_SLACK_SECRET_ARN is set, else SLACK_SIGNING_SECRET / SLACK_BOT_TOKEN. */
async function slackCredentials(env: NodeJS.ProcessEnv): Promise<SlackCredentials> {
  const arn = env.STARFISH_SLACK_SECRET_ARN;
  if (arn) {
    const { slackSecret } = await import('../aws/secrets.js');
    const { signingSecret, botToken } = await slackSecret(arn);
    return { signingSecret, botToken };
  }
  const signingSecret = env.SLACK_SIGNING_SECRET;
  const botToken = env.SLACK_BOT_TOKEN;
  if (!signingSecret || !botToken?.startsWith('xoxb-')) {
    throw new ConfigError(
      `The Slack Lambda needs its Slack credentials: set ${EXAMPLE_SECRET} (a JSON secret {"signingSecret": "…", "botToken": "xoxb-…"}), or for a development stack SLACK_SIGNING_SECRET=<Basic Information → Signing Secret> and SLACK_BOT_TOKEN=xoxb-… (${!signingSecret ? 'SLACK_SIGNING_SECRET is missing' : 'SLACK_BOT_TOKEN is missing or not an xoxb- token'}).`,
    );
  }
  return { signingSecret, botToken };
}

async function awsBackend(chat: Chat, env: NodeJS.ProcessEnv): Promise<SlackBackend> {
  const { createAwsSystem } = await import('../aws/system.js');
  return createAwsSystem(chat, env);
}

/** The identity to check: the options', else SLACK_TEAM_ID / SLACK_APP_ID; a malformed one is a ConfigError (told as Misconfigured). */
function identityFrom(options: SlackHandlerOptions, env: NodeJS.ProcessEnv): SlackIdentity {
  const identity = options.identity ?? { teamId: env.SLACK_TEAM_ID || undefined, appId: env.SLACK_APP_ID || undefined };
  const problem = checkIdentity(identity);
  if (problem) throw new ConfigError(`${problem}: set SLACK_TEAM_ID=T0123ABCD (the workspace's team id) and SLACK_APP_ID=A0123ABCD (Basic Information → App ID), or leave them unset.`);
  return identity;
}

const LOG_LEVELS: Record<string, LogLevel> = { debug: LogLevel.DEBUG, trace: LogLevel.DEBUG, info: LogLevel.INFO, warn: LogLevel.WARN, error: LogLevel.ERROR, fatal: LogLevel.ERROR };

/** The body as sent: function URLs base64-encode form posts (decoded as UTF-8, not Bolt's ASCII). */
function bodyOf(event: LambdaFunctionURLEvent): string {
  if (typeof event.body !== 'string') return '';
  return event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body;
}

/** A function URL or API Gateway event, read defensively: any field may be missing in a forged one. */
function methodOf(event: LambdaFunctionURLEvent): string | undefined {
  const loose = event as Partial<LambdaFunctionURLEvent> & { httpMethod?: string };
  return loose.requestContext?.http?.method ?? loose.httpMethod;
}

const EMPTY = (statusCode: number): APIGatewayProxyStructuredResultV2 => ({ statusCode, body: '' });

/** A slash command shows this body to the person; a click ignores it. Nothing was started. */
const TRY_AGAIN: APIGatewayProxyStructuredResultV2 = {
  statusCode: 200,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ response_type: 'ephemeral', text: ':warning: starfish could not take this request right now. Nothing was started; try again in a minute.' }),
};

/** What the guard's verdict answers by itself: refusals, retries, Slack's SSL check. */
function answerOf(verdict: Exclude<Verdict, { kind: 'accept' }>, logger: Pick<BoltLogger, 'info'>): APIGatewayProxyStructuredResultV2 {
  if (verdict.kind === 'acknowledge') {
    logger.info(`Slack request acknowledged, not processed: ${verdict.reason}`);
    return EMPTY(200);
  }
  logger.info(`Slack request refused with ${verdict.status}: ${verdict.reason}`);
  return EMPTY(verdict.status);
}

/**
 * The backend's configuration is wrong (a ConfigError), but the Slack credentials are good: a
 * signed request can still be told why nothing works, instead of Slack's "dispatch_failed".
 */
class Misconfigured extends Error {
  constructor(
    readonly signingSecret: string,
    readonly identity: SlackIdentity,
    problem: ConfigError,
  ) {
    super(problem.message);
  }
}

/** The url_verification handshake's answer, as Bolt gives it; undefined for any other body. */
function handshakeAnswer(body: string): APIGatewayProxyStructuredResultV2 | undefined {
  const parsed = z.object({ type: z.literal('url_verification'), challenge: z.string() }).safeParse(JSON.parse(body));
  return parsed.success ? { statusCode: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ challenge: parsed.data.challenge }) } : undefined;
}

/**
 * A signed slash command sees why; a click or an event is acknowledged (Slack shows nothing for
 * them); the events URL handshake is answered, so that setting up the Slack app is not stopped by
 * a setting its first command will name.
 */
function misconfiguredAnswer(m: Misconfigured, event: LambdaFunctionURLEvent, logger: Pick<BoltLogger, 'error' | 'info'> = console): APIGatewayProxyStructuredResultV2 {
  const body = bodyOf(event);
  const verdict = checkSlackRequest({ method: methodOf(event), headers: event.headers, body }, { signingSecret: m.signingSecret, identity: m.identity });
  logger.error(`starfish is misconfigured, so this request was not processed: ${m.message}`);
  if (verdict.kind !== 'accept') return answerOf(verdict, logger);
  // The guard has read a JSON body as an Events API callback or the handshake.
  if (verdict.contentType !== SLACK_FORM) return handshakeAnswer(body) ?? EMPTY(200);
  if (!new URLSearchParams(body).has('command')) return EMPTY(200);
  // The configuration's values are shown as typed, never as markup.
  const text = `:warning: starfish is not set up correctly, so it took nothing: ${escapeMrkdwn(m.message.slice(0, 1_500))} A lab admin can fix it (docs/deploy.md, "Day 2").`;
  return { statusCode: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ response_type: 'ephemeral', text }) };
}

export function createHandler(options: SlackHandlerOptions = {}): SlackLambdaHandler {
  let ready: Promise<Ready> | undefined;

  async function init(): Promise<Ready> {
    const env = options.env ?? process.env;
    const { signingSecret, botToken } = await (options.credentials ?? slackCredentials)(env);
    const slackApiUrl = env.SLACK_API_URL || undefined;
    const logLevel = LOG_LEVELS[env.LOG_LEVEL ?? 'warn'] ?? LogLevel.WARN;
    // The listeners answer through it before the HTTP response: on Slack's clock, like their client.
    const chat = new SlackChat({ token: botToken, slackApiUrl, ...ON_SLACKS_CLOCK });
    // A malformed SLACK_TEAM_ID or SLACK_APP_ID is told like any other wrong setting (then no id is
    // checked: a request signed with this app's secret is Slack's, for this app).
    let identity: SlackIdentity = {};
    let backend: SlackBackend;
    try {
      identity = identityFrom(options, env);
      backend = await (options.createBackend ?? awsBackend)(chat, env);
    } catch (error) {
      throw error instanceof ConfigError ? new Misconfigured(signingSecret, identity, error) : error;
    }
    const receiver = new AwsLambdaReceiver({ signingSecret, logLevel });
    createSlackApp({ receiver, token: botToken, slackApiUrl, dispatchDeps: backend.dispatchDeps, chat, logLevel, identity });
    if (!identity.teamId || !identity.appId) receiver.logger.warn('SLACK_TEAM_ID or SLACK_APP_ID is not set: requests signed with this signing secret are taken from any workspace or app id.');
    return { bolt: await receiver.start(), signingSecret, identity, store: backend.dispatchDeps.store, logger: receiver.logger };
  }

  /** The guard, the claim, then Bolt; a request Bolt never sees is answered here. */
  async function handleGuarded(r: Ready, event: LambdaFunctionURLEvent, context?: Context): Promise<APIGatewayProxyStructuredResultV2> {
    const body = bodyOf(event);
    const verdict = checkSlackRequest({ method: methodOf(event), headers: event.headers, body }, { signingSecret: r.signingSecret, identity: r.identity });
    if (verdict.kind !== 'accept') return answerOf(verdict, r.logger);
    let claim: 'first' | 'replay';
    try {
      claim = await claimSlackRequest(r.store, verdict.signature);
    } catch (error) {
      r.logger.error(`could not claim a Slack request, so it was not processed: ${(error as Error).message}`);
      return TRY_AGAIN;
    }
    if (claim === 'replay') {
      r.logger.warn('Slack request refused: the same signed request was already processed (a replay)');
      return EMPTY(200);
    }
    // Bolt gets the checked body as text and only the headers it reads, in one spelling.
    const headers = { 'content-type': verdict.contentType, 'x-slack-signature': verdict.signature, 'x-slack-request-timestamp': verdict.timestamp };
    return r.bolt({ ...event, headers, body, isBase64Encoded: false }, context);
  }

  /**
   * A failed initialisation is retried on the next invocation (a secret read can fail once), but
   * not a Misconfigured one: the environment it was read from is the container's for its life, so
   * every request would redo the credentials, the SDK imports and the parse to fail the same way.
   */
  async function initialised(): Promise<Ready> {
    const current = (ready ??= init());
    try {
      return await current;
    } catch (error) {
      if (ready === current && !(error instanceof Misconfigured)) ready = undefined;
      throw error;
    }
  }

  const handle = async (event: LambdaFunctionURLEvent, context?: Context): Promise<APIGatewayProxyStructuredResultV2> => {
    let r: Ready;
    try {
      r = await initialised();
    } catch (error) {
      if (error instanceof Misconfigured) return misconfiguredAnswer(error, event);
      throw error;
    }
    return handleGuarded(r, event, context);
  };
  return Object.assign(handle, {
    prewarm: () =>
      initialised().then(
        () => undefined,
        () => undefined, // the invocation retries and reports it
      ),
  });
}

export const handler = createHandler();

// On Lambda, do the first request's work in the INIT phase (a full vCPU whatever the memory
// setting, and already done for provisioned concurrency) instead of on Slack's 3-second clock.
// Elsewhere (tests, the bench's cold-import figure) importing this module does nothing more.
if (process.env.AWS_LAMBDA_FUNCTION_NAME && process.env.STARFISH_SLACK_PREWARM !== 'false') await handler.prewarm();
