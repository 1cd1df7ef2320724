/**
 * The Chat port on the Slack Web API. One WebClient per process; `slackApiUrl` points it at a
 * stand-in (tests) or an Enterprise Grid / GovSlack host.
 *
 * Retries are the WebClient's own (p-retry underneath):
 * - 429: with `rejectRateLimitedCalls: false` (the default, kept explicit here) the client pauses
 *   its request queue for the Retry-After seconds Slack sent, then retries the call;
 * - any other non-200 status (5xx) and network errors are retried with `retryConfig`'s backoff;
 * - Slack's `ok: false` answers (e.g. channel_not_found) are platform errors and are not retried.
 * The library's default policy (10 retries over about 30 minutes) outlives a Lambda, so the
 * default here is 5 retries within about half a minute, plus whatever Retry-After asks for.
 * A 5xx after Slack did post the message can make a retried post appear twice; Slack gives no
 * idempotency key for chat.postMessage, so that rare duplicate is accepted.
 */
import { webApi } from '@slack/bolt';
import type { Chat, MessageRef } from '../ports.js';
import type { Message } from '../messages/message.js';

export type WebClient = webApi.WebClient;
const DEFAULT_RETRY: webApi.RetryOptions = { retries: 5, factor: 2, minTimeout: 1_000, maxTimeout: 15_000, randomize: true };

export interface SlackClientOptions {
  token: string;
  /** e.g. http://127.0.0.1:3999/api/ ; Slack's own when unset. */
  slackApiUrl?: string | undefined;
  retryConfig?: webApi.RetryOptions;
  /** Per-request timeout in ms (0 = none); a hung connection is then retried. */
  timeout?: number;
  /** A 429 fails the call at once instead of waiting out Retry-After. */
  rejectRateLimitedCalls?: boolean;
  logLevel?: webApi.LogLevel;
}

function createWebClient(options: SlackClientOptions): WebClient {
  return new webApi.WebClient(options.token, {
    ...(options.slackApiUrl ? { slackApiUrl: options.slackApiUrl } : {}),
    retryConfig: options.retryConfig ?? DEFAULT_RETRY,
    rejectRateLimitedCalls: options.rejectRateLimitedCalls ?? false,
    timeout: options.timeout ?? 10_000,
    logLevel: options.logLevel ?? webApi.LogLevel.ERROR,
  });
}

/**
 * For calls made before Slack's HTTP request is answered (AwsLambdaReceiver answers when the
 * listener returns; a trigger_id expires after 3 seconds): no waiting out a 429's Retry-After, no
 * backoff, and a Slack that does not answer is given up on after 2 seconds.
 */
export const ON_SLACKS_CLOCK = { rejectRateLimitedCalls: true, retryConfig: { retries: 0 }, timeout: 2_000 } as const;

export class SlackChat implements Chat {
  readonly client: WebClient;

  constructor(clientOrOptions: WebClient | SlackClientOptions) {
    this.client = clientOrOptions instanceof webApi.WebClient ? clientOrOptions : createWebClient(clientOrOptions);
  }

  async post(channel: string, message: Message): Promise<MessageRef> {
    const res = await this.client.chat.postMessage({ channel, text: message.text, blocks: message.blocks });
    return refOf(res, channel);
  }

  async update(ref: MessageRef, message: Message): Promise<void> {
    await this.client.chat.update({ channel: ref.channel, ts: ref.ts, text: message.text, blocks: message.blocks });
  }

  async reply(ref: MessageRef, message: Message): Promise<MessageRef> {
    const res = await this.client.chat.postMessage({ channel: ref.channel, thread_ts: ref.ts, text: message.text, blocks: message.blocks });
    return refOf(res, ref.channel);
  }

  async ephemeral(channel: string, user: string, message: Message, responseUrl?: string): Promise<void> {
    if (responseUrl) {
      // Valid for 30 minutes after the command; works where chat.postEphemeral gets not_in_channel.
      const res = await fetch(responseUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ response_type: 'ephemeral', replace_original: false, text: message.text, blocks: message.blocks }),
      }).catch(() => undefined);
      if (res?.ok) return;
    }
    await this.client.chat.postEphemeral({ channel, user, text: message.text, blocks: message.blocks });
  }

  /** files.uploadV2 = files.getUploadURLExternal, a POST of the bytes, files.completeUploadExternal. */
  async upload(ref: MessageRef, file: { filename: string; title: string; bytes: Buffer }): Promise<void> {
    await this.client.filesUploadV2({ channel_id: ref.channel, thread_ts: ref.ts, filename: file.filename, title: file.title, file: file.bytes });
  }
}

function refOf(res: { channel?: string; ts?: string }, channel: string): MessageRef {
  if (!res.ts) throw new Error(`Slack accepted the message in ${channel} but returned no ts`);
  return { channel: res.channel ?? channel, ts: res.ts };
}

/** Members of a Slack user group (e.g. S0123ABCD); needs the usergroups:read scope. */
export async function userGroupMembers(client: WebClient, usergroup: string): Promise<string[]> {
  const res = await client.usergroups.users.list({ usergroup });
  return res.users ?? [];
}

/**
 * `CoreDeps.approverGroupMembers` for a policy's approverGroup, cached for `ttlMs` so a burst of
 * clicks costs one usergroups.users.list call. A failed lookup is not cached.
 */
export function approverGroupResolver(client: WebClient, usergroup: string, ttlMs = 60_000, now: () => number = Date.now): () => Promise<string[]> {
  let cached: { at: number; members: Promise<string[]> } | undefined;
  return () => {
    if (cached && now() - cached.at < ttlMs) return cached.members;
    const members = userGroupMembers(client, usergroup);
    const entry = { at: now(), members };
    cached = entry;
    members.catch(() => {
      if (cached === entry) cached = undefined;
    });
    return members;
  };
}
