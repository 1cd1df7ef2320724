/**
 * Requests as Slack sends them: form-encoded bodies signed with v0 HMAC-SHA256 over
 * `v0:${timestamp}:${body}` with the app's signing secret (X-Slack-Signature, X-Slack-Request-Timestamp).
 * Computed here independently of Bolt, so the tests check Bolt's verification, not reuse it.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { request } from 'node:http';
import type { LambdaFunctionURLEvent } from 'aws-lambda';

export const SIGNING_SECRET = '8f742231b10e8888abcd99yyyzzz85a5';
export const BOT_TOKEN = 'xoxb-0000000000-test-token';

export const nowSeconds = () => Math.floor(Date.now() / 1000);

/** The workspace and Slack app the requests below come from (the deployment's, unless a test says otherwise). */
export const TEAM_ID = 'T0LAB';
export const APP_ID = 'A0STARFISH';

/** Slack gives every command and click its own trigger_id, so no two real requests have one body. */
const triggerId = () => `${Date.now()}.${randomBytes(6).toString('hex')}`;

function signature(secret: string, timestamp: number, body: string): string {
  return `v0=${createHmac('sha256', secret).update(`v0:${timestamp}:${body}`).digest('hex')}`;
}

/** A function URL event (payload 2.0, as an API Gateway HTTP API's), as a Slack POST arrives at the function. */
export function functionUrlEvent(body: string, headers: Record<string, string>, base64 = false, method = 'POST'): LambdaFunctionURLEvent {
  const userAgent = 'Slackbot 1.0 (+https://api.slack.com/robots)';
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: '/slack/events',
    rawQueryString: '',
    headers: { ...headers, host: 'abc123.lambda-url.us-east-1.on.aws', 'user-agent': userAgent },
    requestContext: {
      accountId: 'anonymous',
      apiId: 'abc123',
      domainName: 'abc123.lambda-url.us-east-1.on.aws',
      domainPrefix: 'abc123',
      http: { method, path: '/slack/events', protocol: 'HTTP/1.1', sourceIp: '3.0.0.1', userAgent },
      requestId: 'r-1',
      routeKey: '$default',
      stage: '$default',
      time: '25/Nov/2026:10:00:00 +0000',
      timeEpoch: 1_795_600_800_000,
    },
    body: base64 ? Buffer.from(body).toString('base64') : body,
    isBase64Encoded: base64,
  };
}

export function signedHeaders(body: string, options: { secret?: string; timestamp?: number } = {}): Record<string, string> {
  const timestamp = options.timestamp ?? nowSeconds();
  return {
    'content-type': 'application/x-www-form-urlencoded',
    'x-slack-request-timestamp': String(timestamp),
    'x-slack-signature': signature(options.secret ?? SIGNING_SECRET, timestamp, body),
  };
}

export interface SlashOptions {
  text: string;
  userId: string;
  channel: string;
  responseUrl: string;
  command?: string;
  teamId?: string;
  appId?: string;
}

export function slashBody(o: SlashOptions): string {
  return new URLSearchParams({
    token: 'deprecated-verification-token',
    team_id: o.teamId ?? TEAM_ID,
    team_domain: 'lab',
    channel_id: o.channel,
    channel_name: 'starfish',
    user_id: o.userId,
    user_name: o.userId.toLowerCase(),
    command: o.command ?? '/starfish',
    text: o.text,
    api_app_id: o.appId ?? APP_ID,
    is_enterprise_install: 'false',
    response_url: o.responseUrl,
    trigger_id: triggerId(),
  }).toString();
}

export interface ClickOptions {
  actionId: string;
  value: string;
  userId: string;
  channel: string;
  responseUrl: string;
  messageTs?: string;
  teamId?: string;
  appId?: string;
}

/** A block_actions payload for a button in a message, as Slack posts it (payload=<json>). */
export function clickBody(o: ClickOptions): string {
  const payload = {
    type: 'block_actions',
    user: { id: o.userId, username: o.userId.toLowerCase(), team_id: o.teamId ?? TEAM_ID },
    api_app_id: o.appId ?? APP_ID,
    token: 'deprecated-verification-token',
    container: { type: 'message', message_ts: o.messageTs ?? '1700000001.000001', channel_id: o.channel, is_ephemeral: false },
    trigger_id: triggerId(),
    team: { id: o.teamId ?? TEAM_ID, domain: 'lab' },
    channel: { id: o.channel, name: 'starfish' },
    message: { type: 'message', ts: o.messageTs ?? '1700000001.000001', text: 'starfish run' },
    response_url: o.responseUrl,
    actions: [
      {
        action_id: o.actionId,
        block_id: `approval:${o.value}`,
        text: { type: 'plain_text', text: 'Approve' },
        value: o.value,
        type: 'button',
        action_ts: `${nowSeconds()}.000000`,
      },
    ],
  };
  return new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
}

/** A block_actions payload for a button in the App Home tab: a view container, no channel. */
export function homeClickBody(o: Omit<ClickOptions, 'channel' | 'responseUrl' | 'messageTs'>): string {
  const team = o.teamId ?? TEAM_ID;
  const payload = {
    type: 'block_actions',
    user: { id: o.userId, username: o.userId.toLowerCase(), team_id: team },
    api_app_id: o.appId ?? APP_ID,
    token: 'deprecated-verification-token',
    container: { type: 'view', view_id: 'V0HOME0001' },
    trigger_id: triggerId(),
    team: { id: team, domain: 'lab' },
    view: { id: 'V0HOME0001', team_id: team, type: 'home', blocks: [], private_metadata: '', callback_id: '', state: { values: {} }, hash: '1.hash', app_id: o.appId ?? APP_ID, bot_id: 'B0BOT' },
    actions: [{ action_id: o.actionId, block_id: `home:${o.value}`, text: { type: 'plain_text', text: 'Button' }, value: o.value, type: 'button', action_ts: `${nowSeconds()}.000000` }],
  };
  return new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
}

export interface SubmissionOptions {
  callbackId: string;
  userId: string;
  /** view.state.values: block id → action id → the element's value, as Slack reports it. */
  values: Record<string, Record<string, Record<string, unknown>>>;
  privateMetadata?: string;
  /** The response_urls Slack adds for a conversations_select with response_url_enabled. */
  responseUrls?: Array<{ block_id: string; action_id: string; channel_id: string; response_url: string }>;
  teamId?: string;
  appId?: string;
}

/** A view_submission payload (https://docs.slack.dev/reference/interaction-payloads/view-interactions-payload). */
export function viewSubmissionBody(o: SubmissionOptions): string {
  const team = o.teamId ?? TEAM_ID;
  const payload = {
    type: 'view_submission',
    team: { id: team, domain: 'lab' },
    user: { id: o.userId, username: o.userId.toLowerCase(), name: o.userId.toLowerCase(), team_id: team },
    api_app_id: o.appId ?? APP_ID,
    token: 'deprecated-verification-token',
    trigger_id: triggerId(),
    view: {
      id: 'V0MODAL001',
      team_id: team,
      type: 'modal',
      blocks: [],
      private_metadata: o.privateMetadata ?? '',
      callback_id: o.callbackId,
      state: { values: o.values },
      hash: '1700000000.abcdef',
      title: { type: 'plain_text', text: 'starfish' },
      clear_on_close: false,
      notify_on_close: false,
      close: null,
      submit: { type: 'plain_text', text: 'Submit' },
      previous_view_id: null,
      root_view_id: 'V0MODAL001',
      app_id: o.appId ?? APP_ID,
      external_id: '',
      app_installed_team_id: team,
      bot_id: 'B0BOT',
    },
    response_urls: o.responseUrls ?? [],
    is_enterprise_install: false,
    enterprise: null,
  };
  return new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
}

/** An Events API callback as Slack posts it: JSON, signed like the forms. */
export function eventBody(event: Record<string, unknown>, o: { teamId?: string; appId?: string } = {}): string {
  return JSON.stringify({
    token: 'deprecated-verification-token',
    team_id: o.teamId ?? TEAM_ID,
    api_app_id: o.appId ?? APP_ID,
    event,
    type: 'event_callback',
    event_id: `Ev${randomBytes(5).toString('hex').toUpperCase()}`,
    event_time: nowSeconds(),
    authorizations: [{ enterprise_id: null, team_id: o.teamId ?? TEAM_ID, user_id: 'U0BOT', is_bot: true, is_enterprise_install: false }],
    is_ext_shared_channel: false,
  });
}

export function signedJsonHeaders(body: string): Record<string, string> {
  return { ...signedHeaders(body), 'content-type': 'application/json' };
}

export interface HttpResult {
  status: number;
  body: string;
  json(): Record<string, unknown>;
}

/** One POST over a fresh loopback connection (node:http, no pooling surprises). */
export function post(url: string, body: string, headers: Record<string, string>): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, body: text, json: () => JSON.parse(text) as Record<string, unknown> });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

export const postSigned = (url: string, body: string, options: { secret?: string; timestamp?: number } = {}) => post(url, body, signedHeaders(body, options));
