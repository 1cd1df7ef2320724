/**
 * The Slack Lambda: API Gateway (or a function URL) → Bolt's AwsLambdaReceiver → the thin
 * listeners of src/slack/app.ts → EventBridge. It never does slow work: `run` and the buttons
 * publish one event and return; status and list read S3 and answer through response_url.
 *
 * Credentials: STARFISH_SLACK_SECRET_ARN names a Secrets Manager JSON secret
 * {"signingSecret": "…", "botToken": "xoxb-…"}, read once per container (src/aws/secrets.ts);
 * without it, SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN from the environment (development stacks).
 *
 * Cold start: this module loads only Bolt and the listeners. The AWS backend (S3 and EventBridge
 * SDKs, policy, config) and Secrets Manager are imported on the first invocation and kept for the
 * container's life; a failed initialisation is retried on the next invocation.
 */
import { AwsLambdaReceiver, LogLevel } from '@slack/bolt';
import type { APIGatewayProxyStructuredResultV2, Context, LambdaFunctionURLEvent } from 'aws-lambda';
import type { DispatchDeps } from '../command/dispatcher.js';
import type { Chat } from '../ports.js';
import { ConfigError } from '../config.js';
import { createSlackApp } from '../slack/app.js';
import { SlackChat } from '../slack/slack-chat.js';

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
}

type AwsHandler = Awaited<ReturnType<AwsLambdaReceiver['start']>>;

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

const LOG_LEVELS: Record<string, LogLevel> = { debug: LogLevel.DEBUG, trace: LogLevel.DEBUG, info: LogLevel.INFO, warn: LogLevel.WARN, error: LogLevel.ERROR, fatal: LogLevel.ERROR };

export function createHandler(options: SlackHandlerOptions = {}): SlackLambdaHandler {
  let ready: Promise<AwsHandler> | undefined;

  async function init(): Promise<AwsHandler> {
    const env = options.env ?? process.env;
    const { signingSecret, botToken } = await (options.credentials ?? slackCredentials)(env);
    const slackApiUrl = env.SLACK_API_URL || undefined;
    const logLevel = LOG_LEVELS[env.LOG_LEVEL ?? 'warn'] ?? LogLevel.WARN;
    const chat = new SlackChat({ token: botToken, slackApiUrl });
    const backend = await (options.createBackend ?? awsBackend)(chat, env);
    const receiver = new AwsLambdaReceiver({ signingSecret, logLevel });
    createSlackApp({ receiver, token: botToken, slackApiUrl, dispatchDeps: backend.dispatchDeps, chat, logLevel });
    return receiver.start();
  }

  async function initialised(): Promise<AwsHandler> {
    const current = (ready ??= init());
    try {
      return await current;
    } catch (error) {
      if (ready === current) ready = undefined;
      throw error;
    }
  }

  const handle = async (event: LambdaFunctionURLEvent, context?: Context): Promise<APIGatewayProxyStructuredResultV2> => (await initialised())(event, context);
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
