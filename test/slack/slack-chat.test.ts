/** SlackChat (the Chat port on the Slack Web API) against the stand-in: calls, retries, uploads. */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { approverGroupResolver, SlackChat, userGroupMembers } from '../../src/slack/slack-chat.js';
import { errorMessage, noticeMessage } from '../../src/messages/blocks.js';
import { SlackStandIn } from './stand-in.js';
import { BOT_TOKEN } from './signing.js';
import { FAST_RETRY } from './harness.js';

let standIn: SlackStandIn;
let chat: SlackChat;

beforeAll(async () => {
  standIn = await SlackStandIn.start();
  chat = new SlackChat({ token: BOT_TOKEN, slackApiUrl: standIn.apiUrl, retryConfig: FAST_RETRY });
});
afterAll(async () => {
  await standIn.close();
});
beforeEach(() => standIn.reset());

describe('SlackChat calls', () => {
  it('post, update, reply and ephemeral send text and blocks to the right method, with the bot token', async () => {
    const ref = await chat.post('C0LAB00001', noticeMessage('hello'));
    expect(ref.channel).toBe('C0LAB00001');
    expect(ref.ts).toMatch(/^\d+\.\d+$/);
    await chat.update(ref, noticeMessage('hello again'));
    const reply = await chat.reply(ref, noticeMessage('in the thread'));
    await chat.ephemeral('C0LAB00001', 'U0ALICE001', errorMessage('only for you'));
    expect(standIn.calls.map((c) => c.method)).toEqual(['chat.postMessage', 'chat.update', 'chat.postMessage', 'chat.postEphemeral']);
    expect(standIn.calls.every((c) => c.auth === `Bearer ${BOT_TOKEN}`)).toBe(true);
    const [post, update, threaded, eph] = standIn.calls;
    expect(post!.body).toMatchObject({ channel: 'C0LAB00001', text: 'hello', blocks: [{ type: 'section', text: { type: 'mrkdwn', text: 'hello' } }] });
    expect(update!.body).toMatchObject({ channel: 'C0LAB00001', ts: ref.ts, text: 'hello again' });
    expect(threaded!.body).toMatchObject({ channel: 'C0LAB00001', thread_ts: ref.ts });
    expect(reply.ts).not.toBe(ref.ts);
    expect(eph!.body).toMatchObject({ channel: 'C0LAB00001', user: 'U0ALICE001', text: ':warning: only for you' });
  });

  it('upload is files.uploadV2: getUploadURLExternal, the bytes to the upload URL, completeUploadExternal in the thread', async () => {
    const ref = { channel: 'C0LAB00001', ts: '1700000001.000001' };
    const bytes = Buffer.from('89504e470d0a1a0a', 'hex');
    await chat.upload(ref, { filename: '261125-k3f9-spots.png', title: 'Decoded spots, run 261125-k3f9', bytes });
    expect(standIn.calls.map((c) => c.method)).toEqual(['files.getUploadURLExternal', 'upload', 'files.completeUploadExternal']);
    const [getUrl, upload, complete] = standIn.calls;
    expect(getUrl!.body).toMatchObject({ filename: '261125-k3f9-spots.png', length: String(bytes.length) });
    expect(upload!.body.bytes).toBeGreaterThanOrEqual(bytes.length);
    expect(complete!.body).toMatchObject({ channel_id: 'C0LAB00001', thread_ts: ref.ts });
    expect(complete!.body.files).toEqual([{ id: upload!.body.file, title: 'Decoded spots, run 261125-k3f9' }]);
  });
});

describe('SlackChat retries', () => {
  it('a 429 is retried after the Retry-After seconds, then succeeds', async () => {
    standIn.inject('chat.postMessage', { status: 429, retryAfter: 1 });
    const started = Date.now();
    const ref = await chat.post('C0LAB00001', noticeMessage('rate limited once'));
    expect(ref.ts).toBeTruthy();
    const attempts = standIn.calls.filter((c) => c.method === 'chat.postMessage');
    expect(attempts.map((c) => c.status)).toEqual([429, 200]);
    // Retry-After: 1 → the second attempt waits at least ~1 s (a little slack for timer granularity)
    expect(attempts[1]!.at - attempts[0]!.at).toBeGreaterThanOrEqual(950);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
  });

  it('a 500 is retried with backoff, then succeeds (update), and so are two 503s (reply)', async () => {
    standIn.inject('chat.update', { status: 500 });
    await chat.update({ channel: 'C0LAB00001', ts: '1.2' }, noticeMessage('after a 500'));
    expect(standIn.calls.filter((c) => c.method === 'chat.update').map((c) => c.status)).toEqual([500, 200]);
    standIn.inject('chat.postMessage', { status: 503 }, 2);
    await chat.reply({ channel: 'C0LAB00001', ts: '1.2' }, noticeMessage('after two 503s'));
    expect(standIn.calls.filter((c) => c.method === 'chat.postMessage').map((c) => c.status)).toEqual([503, 503, 200]);
  });

  it('gives up after the configured retries, with the HTTP error', async () => {
    standIn.inject('chat.postEphemeral', { status: 500 }, 10);
    await expect(chat.ephemeral('C0LAB00001', 'U0ALICE001', noticeMessage('x'))).rejects.toThrow(/500/);
    expect(standIn.calls.filter((c) => c.method === 'chat.postEphemeral')).toHaveLength(FAST_RETRY.retries + 1);
  });

  it("a Slack platform error (ok: false) is not retried", async () => {
    await expect(userGroupMembers(chat.client, 'S0NOSUCH')).rejects.toThrow(/no_such_subteam/);
    expect(standIn.calls.filter((c) => c.method === 'usergroups.users.list')).toHaveLength(1);
  });
});

describe('approver group members (usergroups.users.list)', () => {
  it('resolves the members once per TTL; a failed lookup is not cached', async () => {
    standIn.groups.set('S0APPROVERS', ['U0A', 'U0B']);
    let now = 1_000;
    const members = approverGroupResolver(chat.client, 'S0APPROVERS', 60_000, () => now);
    expect(await members()).toEqual(['U0A', 'U0B']);
    expect(await members()).toEqual(['U0A', 'U0B']);
    expect(standIn.ok('usergroups.users.list')).toHaveLength(1);
    now += 61_000;
    standIn.groups.set('S0APPROVERS', ['U0C']);
    expect(await members()).toEqual(['U0C']);
    expect(standIn.ok('usergroups.users.list')).toHaveLength(2);

    standIn.groups.delete('S0APPROVERS');
    now += 61_000;
    await expect(members()).rejects.toThrow(/no_such_subteam/);
    standIn.groups.set('S0APPROVERS', ['U0D']);
    expect(await members()).toEqual(['U0D']);
  });
});
