/**
 * Requests as Slack sends them: form-encoded bodies signed with v0 HMAC-SHA256 over
 * `v0:${timestamp}:${body}` with the app's signing secret (X-Slack-Signature, X-Slack-Request-Timestamp).
 * Computed here independently of Bolt, so the tests check Bolt's verification, not reuse it.
 */
import { createHmac } from 'node:crypto';
import { request } from 'node:http';

export const SIGNING_SECRET = '8f742231b10e8888abcd99yyyzzz85a5';
export const BOT_TOKEN = 'xoxb-0000000000-test-token';

export const nowSeconds = () => Math.floor(Date.now() / 1000);

function signature(secret: string, timestamp: number, body: string): string {
  return `v0=${createHmac('sha256', secret).update(`v0:${timestamp}:${body}`).digest('hex')}`;
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
}

export function slashBody(o: SlashOptions): string {
  return new URLSearchParams({
    token: 'deprecated-verification-token',
    team_id: 'T0LAB',
    team_domain: 'lab',
    channel_id: o.channel,
    channel_name: 'starfish',
    user_id: o.userId,
    user_name: o.userId.toLowerCase(),
    command: o.command ?? '/starfish',
    text: o.text,
    api_app_id: 'A0STARFISH',
    is_enterprise_install: 'false',
    response_url: o.responseUrl,
    trigger_id: '1.2.3',
  }).toString();
}

export interface ClickOptions {
  actionId: string;
  value: string;
  userId: string;
  channel: string;
  responseUrl: string;
  messageTs?: string;
}

/** A block_actions payload for a button in a message, as Slack posts it (payload=<json>). */
export function clickBody(o: ClickOptions): string {
  const payload = {
    type: 'block_actions',
    user: { id: o.userId, username: o.userId.toLowerCase(), team_id: 'T0LAB' },
    api_app_id: 'A0STARFISH',
    token: 'deprecated-verification-token',
    container: { type: 'message', message_ts: o.messageTs ?? '1700000001.000001', channel_id: o.channel, is_ephemeral: false },
    trigger_id: '1.2.3',
    team: { id: 'T0LAB', domain: 'lab' },
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
