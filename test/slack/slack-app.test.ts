/**
 * The Slack endpoint end to end on loopback (the production handler: request guard, replay claim,
 * Bolt, the listeners): signed requests in, the real local core behind it, every Slack Web API
 * call recorded by the stand-in. The attacks on the endpoint itself are in endpoint.test.ts.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createManifest, listManifests, loadManifest } from '../../src/run/manifest-store.js';
import type { RunManifest } from '../../src/run/manifest.js';
import { manifest as fixtureManifest } from '../messages/fixtures.js';
import { ACTIONS } from '../../src/messages/blocks.js';
import { RUN_ID } from '../../src/command/grammar.js';
import { REJECT_CALLBACK } from '../../src/slack/reject-modal.js';
import {
  ALICE,
  APPROVER,
  APPROVER2,
  APPROVER_GROUP,
  BOB,
  CHANNEL,
  GROUPIE,
  MALLORY,
  OTHER_CHANNEL,
  startGroupHarness,
  startHarness,
  textOf,
  waitFor,
  type Harness,
} from './harness.js';
import { nowSeconds, post, signedHeaders, slashBody } from './signing.js';

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
});

afterAll(async () => {
  await h?.close();
});

beforeEach(() => {
  h.standIn.reset();
});

/** Asks for a run as `userId` and returns its id once the root message is posted. */
async function requestRun(userId: string, extra = ''): Promise<string> {
  const before = new Set((await listManifests(h.system.store, 500)).map((m) => m.runId));
  const res = await h.slash(`run ${h.experiment}${extra ? ` ${extra}` : ''}`, userId);
  expect(res.status).toBe(200);
  expect(res.json().text).toMatch(/Reading .*experiment\.json to plan the run/);
  const manifest = await waitFor('the run manifest with its message', async () =>
    (await listManifests(h.system.store, 500)).find((m) => !before.has(m.runId) && m.message !== undefined),
  );
  return manifest.runId;
}

const rootPost = (runId: string) => h.standIn.ok('chat.postMessage').find((c) => !c.body.thread_ts && textOf(c.body).includes(`starfish run ${runId}`));
const updatesOf = (runId: string) => h.standIn.ok('chat.update').filter((c) => textOf(c.body).includes(runId));
const ephemeralsTo = (userId: string) => h.standIn.ok('chat.postEphemeral').filter((c) => c.body.user === userId);

describe('request verification (v0 signatures)', () => {
  const help = () => slashBody({ text: 'help', userId: ALICE, channel: CHANNEL, responseUrl: h.standIn.responseUrl('verify') });

  it('acknowledges a correctly signed slash command with 200 and the help text', async () => {
    const body = help();
    const res = await post(h.url, body, signedHeaders(body));
    expect(res.status).toBe(200);
    const answer = res.json();
    expect(answer.response_type).toBe('ephemeral');
    expect(textOf(answer)).toContain('/starfish run');
  });

  it('refuses a forged signature with 401 and reaches no handler', async () => {
    const body = help();
    const res = await post(h.url, body, signedHeaders(body, { secret: 'not-the-signing-secret' }));
    expect(res.status).toBe(401);
    const bogus = { ...signedHeaders(body), 'x-slack-signature': `v0=${'0'.repeat(64)}` };
    expect((await post(h.url, body, bogus)).status).toBe(401);
  });

  it('refuses a correctly signed request whose timestamp is more than 5 minutes old', async () => {
    const body = help();
    const res = await post(h.url, body, signedHeaders(body, { timestamp: nowSeconds() - 6 * 60 }));
    expect(res.status).toBe(401);
  });

  it('refuses a body changed after signing', async () => {
    const signed = slashBody({ text: 'help', userId: ALICE, channel: CHANNEL, responseUrl: h.standIn.responseUrl('t') });
    const tampered = slashBody({ text: `run ${h.experiment}`, userId: ALICE, channel: CHANNEL, responseUrl: h.standIn.responseUrl('t') });
    const res = await post(h.url, tampered, signedHeaders(signed));
    expect(res.status).toBe(401);
    const runsBefore = (await listManifests(h.system.store, 500)).length;
    await h.system.bus.drain();
    expect((await listManifests(h.system.store, 500)).length).toBe(runsBefore);
  });

  it('acknowledges a correctly signed button click with 200 (empty body)', async () => {
    const res = await h.click(ACTIONS.approve, '261125-zzzz', APPROVER);
    expect(res.status).toBe(200);
    expect(res.body).toBe('');
    // The launcher answers the clicker: there is no such run.
    const eph = await waitFor('the ephemeral answer', () => ephemeralsTo(APPROVER)[0]);
    expect(textOf(eph.body)).toContain('There is no run 261125-zzzz');
  });

  it('refuses a forged button click with 401', async () => {
    const res = await post(h.url, 'payload=%7B%7D', signedHeaders('payload=%7B%7D', { secret: 'wrong' }));
    expect(res.status).toBe(401);
  });
});

describe('slash commands and buttons through Slack', () => {
  it('help: the ack body is the help message, ephemeral, and nothing is posted to the channel', async () => {
    const res = await h.slash('help run', ALICE);
    expect(res.status).toBe(200);
    expect(res.json().response_type).toBe('ephemeral');
    expect(textOf(res.json())).toContain('fovs=');
    expect(h.standIn.ok('chat.postMessage')).toHaveLength(0);
  });

  it('run requested: the root message is posted in the channel with Approve/Reject buttons carrying the run id', async () => {
    const runId = await requestRun(ALICE);
    const root = await waitFor('the root message', () => rootPost(runId));
    expect(root.body.channel).toBe(CHANNEL);
    expect(root.auth).toBe('Bearer xoxb-0000000000-test-token');
    const text = textOf(root.body);
    expect(text).toContain('Waiting for approval');
    expect(text).toContain('2 FOVs is above the 1-FOV threshold');
    expect(text).toContain(`<@${ALICE}>`);
    const actions = (root.body.blocks as Array<{ type: string; elements?: Array<{ action_id: string; value: string }> }>).find((b) => b.type === 'actions');
    expect(actions?.elements?.map((e) => [e.action_id, e.value])).toEqual([
      [ACTIONS.approve, runId],
      [ACTIONS.reject, runId],
    ]);
    expect(h.executor.runs).not.toContain(runId);
  });

  it('approved: chat.update names the approver, the jobs are submitted once, results and spots.png arrive in the thread', async () => {
    const runId = await requestRun(ALICE);
    const root = await waitFor('the root message', () => rootPost(runId));
    const res = await h.click(ACTIONS.approve, runId, APPROVER);
    expect(res.status).toBe(200);
    const approved = await waitFor('the update naming the approver', () => updatesOf(runId).find((c) => textOf(c.body).includes(`Approved by <@${APPROVER}>`)));
    expect(approved.body.ts).toMatch(/^\d+\.\d+$/);
    expect(approved.body.channel).toBe(CHANNEL);
    const results = await waitFor(
      'the results in the thread',
      () => h.standIn.ok('chat.postMessage').find((c) => c.body.thread_ts !== undefined && textOf(c.body).includes(`Results of run ${runId}`)),
      20_000,
    );
    expect(textOf(results.body)).toContain('20 spots from 2/2 FOVs');
    const complete = await waitFor('the spots.png upload', () => h.standIn.ok('files.completeUploadExternal')[0]);
    expect(complete.body.channel_id).toBe(CHANNEL);
    expect(complete.body.thread_ts).toBe(results.body.thread_ts);
    expect(h.standIn.ok('files.getUploadURLExternal')[0]?.body.filename).toBe(`${runId}-spots.png`);
    expect(h.standIn.ok('upload')[0]?.body.file).toMatch(/^F\d+$/);
    expect(h.executor.runs.filter((r) => r === runId)).toHaveLength(1);
    const final = await waitFor('succeeded', async () => {
      const m = (await loadManifest(h.system.store, runId))?.manifest;
      return m?.status === 'succeeded' ? m : undefined;
    });
    expect(final.approval.decidedBy).toBe(APPROVER);
    expect(updatesOf(runId).some((c) => textOf(c.body).includes('Succeeded'))).toBe(true);
    // every update edits the root message in place
    expect(updatesOf(runId).every((c) => c.body.ts === results.body.thread_ts && c.body.channel === root.body.channel)).toBe(true);
    // A run that succeeded offers no retry; a Retry click (from an older message) gets one answer saying why not.
    expect(JSON.stringify(updatesOf(runId).at(-1)!.body.blocks)).not.toContain(ACTIONS.retry);
    expect((await h.click(ACTIONS.retry, runId, ALICE)).status).toBe(200);
    const answer = await waitFor('the answer to the Retry click', () => h.standIn.ok('chat.postEphemeral').find((c) => c.body.user === ALICE && textOf(c.body).includes(`Run ${runId} is succeeded`)));
    expect(textOf(answer.body)).toContain('retry reruns the failed FOVs of a run that has finished with failures');
    expect(h.executor.runs.filter((r) => r === runId)).toHaveLength(1);
  });

  it('rejected: chat.update shows who rejected, and nothing is submitted', async () => {
    const runId = await requestRun(BOB);
    await waitFor('the root message', () => rootPost(runId));
    // The Reject button asks for a reason first (views.test.ts); the form left empty rejects without one.
    expect((await h.click(ACTIONS.reject, runId, APPROVER2)).status).toBe(200);
    const form = await waitFor('the reason form', () => h.standIn.ok('views.open')[0]);
    const privateMetadata = (form.body.view as { private_metadata: string }).private_metadata;
    expect((await h.submit({ callbackId: REJECT_CALLBACK, userId: APPROVER2, privateMetadata, values: { reason: { value: { type: 'plain_text_input', value: null } } } })).status).toBe(200);
    const update = await waitFor('the rejection', () => updatesOf(runId).find((c) => textOf(c.body).includes(`Rejected by <@${APPROVER2}>`)));
    expect(textOf(update.body)).toContain(':no_entry: Rejected');
    expect(JSON.stringify(update.body.blocks)).not.toContain(ACTIONS.approve);
    await h.system.bus.drain();
    expect(h.executor.runs).not.toContain(runId);
  });

  it('cancelled: the Cancel button of a running run stops it; the message and the thread say who cancelled', async () => {
    const hold = path.join(h.home, 'hold');
    await writeFile(hold, '');
    try {
      const runId = await requestRun(ALICE);
      await h.click(ACTIONS.approve, runId, APPROVER);
      const running = await waitFor('the running message with its Cancel button', () =>
        updatesOf(runId).find((c) => JSON.stringify(c.body.blocks).includes(ACTIONS.cancel) && textOf(c.body).includes(':gear: Running')),
      );
      expect(textOf(running.body)).toMatch(/\d+ succeeded .*of \d+ FOVs/);
      expect((await h.click(ACTIONS.cancel, runId, ALICE)).status).toBe(200);
      await waitFor('the cancelled message', () => updatesOf(runId).find((c) => textOf(c.body).includes(':octagonal_sign: Cancelled')));
      const note = await waitFor('the thread note', () =>
        h.standIn.ok('chat.postMessage').find((c) => c.body.thread_ts && textOf(c.body).includes(`Run ${runId} cancelled by <@${ALICE}>`)),
      );
      expect(note.body.channel).toBe(CHANNEL);
      expect((await loadManifest(h.system.store, runId))?.manifest.status).toBe('cancelled');
    } finally {
      await rm(hold, { force: true });
    }
  });

  it('status and list: acknowledged at once, answered through response_url, ephemeral', async () => {
    const runId = await requestRun(ALICE);
    const list = await h.slash('list', ALICE);
    expect(list.status).toBe(200);
    expect(list.body).toBe('');
    const listed = await waitFor('the list via response_url', () => h.standIn.ok('response_url').find((c) => textOf(c.body).includes('Recent runs')));
    expect(listed.body.response_type).toBe('ephemeral');
    expect(textOf(listed.body)).toContain(runId);
    const status = await h.slash(`status ${runId}`, ALICE);
    expect(status.body).toBe('');
    const answered = await waitFor('the status via response_url', () => h.standIn.ok('response_url').find((c) => textOf(c.body).includes('Waiting for approval')));
    expect(answered.body.response_type).toBe('ephemeral');
    // status answers carry no buttons
    expect(JSON.stringify(answered.body.blocks)).not.toContain(ACTIONS.approve);
  });
});

describe('refusals come back to the person, ephemerally', () => {
  it('bad input: the ack body says what is wrong and suggests the command', async () => {
    const res = await h.slash(`rnu ${h.experiment}`, ALICE);
    expect(res.status).toBe(200);
    expect(res.json().response_type).toBe('ephemeral');
    expect(res.json().text).toMatch(/^:warning: "rnu" is not a starfish command; did you mean "run"\?/);
    const bad = await h.slash(`run ${h.experiment} fovs=3-1`, ALICE);
    expect(bad.json().text).toContain(':warning: fovs=3-1');
    await h.system.bus.drain();
    expect(h.standIn.calls.filter((c) => c.method === 'chat.postMessage')).toHaveLength(0);
  });

  it('user not allowed: someone outside access.runners cannot start a run', async () => {
    const before = (await listManifests(h.system.store, 500)).length;
    const res = await h.slash(`run ${h.experiment}`, MALLORY);
    expect(res.status).toBe(200);
    expect(res.json().response_type).toBe('ephemeral');
    expect(res.json().text).toContain('You are not on the list of people who may start runs');
    await h.system.bus.drain();
    expect((await listManifests(h.system.store, 500)).length).toBe(before);
  });

  it('channel not allowed: commands and the Cancel button outside access.channels are refused', async () => {
    const res = await h.slash(`run ${h.experiment}`, ALICE, OTHER_CHANNEL);
    expect(res.json().text).toContain(`starfish does not take commands in this channel. Ask in <#${CHANNEL}>`);
    const click = await h.click(ACTIONS.cancel, '261125-abcd', ALICE, OTHER_CHANNEL);
    expect(click.status).toBe(200);
    const eph = await waitFor('the ephemeral refusal', () => ephemeralsTo(ALICE)[0]);
    expect(eph.body.channel).toBe(OTHER_CHANNEL);
    expect(textOf(eph.body)).toContain('does not take commands in this channel');
  });

  it('approver not in policy: the click is refused ephemerally and the run keeps waiting', async () => {
    const runId = await requestRun(BOB);
    expect((await h.click(ACTIONS.approve, runId, ALICE)).status).toBe(200);
    const eph = await waitFor('the refusal', () => ephemeralsTo(ALICE)[0]);
    expect(eph.body.channel).toBe(CHANNEL);
    expect(textOf(eph.body)).toContain('You are not an approver for starfish runs');
    expect((await loadManifest(h.system.store, runId))?.manifest.status).toBe('awaiting-approval');
    expect(h.executor.runs).not.toContain(runId);
  });

  it('requester approving their own run is refused (allowSelfApproval is false)', async () => {
    const runId = await requestRun(APPROVER);
    await h.click(ACTIONS.approve, runId, APPROVER);
    const eph = await waitFor('the refusal', () => ephemeralsTo(APPROVER)[0]);
    expect(textOf(eph.body)).toContain(`You requested run ${runId}; another approver has to approve it.`);
    expect((await loadManifest(h.system.store, runId))?.manifest.status).toBe('awaiting-approval');
  });

  it('a channel the bot is not in: the requester is told through response_url how to fix it, and nothing runs', async () => {
    h.standIn.inject('chat.postMessage', { status: 200, error: 'not_in_channel' });
    const before = new Set((await listManifests(h.system.store, 500)).map((m) => m.runId));
    await h.slash(`run ${h.experiment}`, ALICE);
    const answer = await waitFor('the answer through response_url', () => h.standIn.ok('response_url').find((c) => textOf(c.body).includes('Invite me')));
    expect(answer.body.response_type).toBe('ephemeral');
    expect(textOf(answer.body)).toMatch(/was not started: I could not post its message in this channel \(.*not_in_channel.*\)\. Invite me with `\/invite @starfish`/);
    const run = (await listManifests(h.system.store, 500)).find((m) => !before.has(m.runId))!;
    expect(run.status).toBe('failed');
    expect(h.executor.runs).not.toContain(run.runId);
  });

  it('a button carrying no run id is refused without reaching the bus', async () => {
    await h.click(ACTIONS.approve, 'not-a-run', APPROVER);
    const eph = await waitFor('the refusal', () => ephemeralsTo(APPROVER)[0]);
    expect(textOf(eph.body)).toContain('This button carries no run id');
  });
});

describe('50 concurrent Approve clicks', () => {
  it('submit the run exactly once; every clicker gets one answer: the decider that they approved, the others that it is already approved', async () => {
    const runId = await requestRun(ALICE);
    expect(RUN_ID.test(runId)).toBe(true);
    const submitsBefore = h.executor.fovSubmits;
    const mergesBefore = h.executor.mergeSubmits;
    const clickers = Array.from({ length: 50 }, (_, i) => (i % 2 ? APPROVER : APPROVER2));
    const acks = await Promise.all(clickers.map((u) => h.click(ACTIONS.approve, runId, u)));
    expect(acks.map((a) => a.status)).toEqual(Array(50).fill(200));
    const told = await waitFor('49 "already approved" answers', () => {
      const e = h.standIn.ok('chat.postEphemeral').filter((c) => textOf(c.body).includes(`Run ${runId} is already approved`));
      return e.length >= 49 ? e : undefined;
    }, 20_000);
    expect(told).toHaveLength(49);
    await h.system.settle();
    expect(h.executor.fovSubmits - submitsBefore).toBe(1);
    expect(h.executor.mergeSubmits - mergesBefore).toBe(1);
    expect(h.executor.runs.filter((r) => r === runId)).toHaveLength(1);
    const m = (await loadManifest(h.system.store, runId))!.manifest;
    expect(m.submissions).toHaveLength(1);
    // The decider is the one who is not among the 49 told "already approved by <@decider>".
    expect(told.every((c) => textOf(c.body).includes(`by <@${m.approval.decidedBy}>`))).toBe(true);
    const decider = h.standIn.ok('chat.postEphemeral').filter((c) => c.body.user === m.approval.decidedBy && textOf(c.body).includes(`You approved run ${runId}`));
    expect(decider).toHaveLength(1);
    expect(h.standIn.ok('chat.postEphemeral')).toHaveLength(50);
  });
});

describe('approver group (usergroups.users.list)', () => {
  let g: Harness;
  beforeAll(async () => {
    g = await startGroupHarness();
  });
  afterAll(async () => {
    await g?.close();
  });

  it('a member of the approver group may approve; the group is resolved through Slack', async () => {
    await g.slash(`run ${g.experiment}`, ALICE);
    const m = await waitFor('the run', async () => (await listManifests(g.system.store, 10)).find((x) => x.message));
    await g.click(ACTIONS.approve, m.runId, GROUPIE);
    await waitFor('approved by the group member', () => g.standIn.ok('chat.update').find((c) => textOf(c.body).includes(`Approved by <@${GROUPIE}>`)));
    const lookups = g.standIn.ok('usergroups.users.list');
    expect(lookups.length).toBeGreaterThanOrEqual(1);
    expect(lookups[0]!.body.usergroup).toBe(APPROVER_GROUP);
    await g.system.settle();
  });

  it('someone outside both the approvers and the group is refused', async () => {
    await g.slash(`run ${g.experiment}`, BOB);
    const m = await waitFor('the run', async () => (await listManifests(g.system.store, 10)).find((x) => x.message && x.requester.userId === BOB));
    await g.click(ACTIONS.approve, m.runId, ALICE);
    const eph = await waitFor('the refusal', () => g.standIn.ok('chat.postEphemeral').find((c) => c.body.user === ALICE));
    expect(textOf(eph.body)).toContain(`<!subteam^${APPROVER_GROUP}>`);
  });

  // The Home tab reads the group through its own cache (src/slack/home.ts), apart from the launcher's: counted from here.
  it('the Home tab shows a member the runs waiting for them, reading the group once however often Home tabs are opened', async () => {
    g.standIn.reset();
    const pending: RunManifest = fixtureManifest({ runId: '261126-gg01', status: 'awaiting-approval', submissions: [], requester: { userId: ALICE, channel: CHANNEL }, createdAt: new Date().toISOString() });
    await createManifest(g.system.store, pending);
    for (const user of [GROUPIE, ALICE, BOB, GROUPIE]) {
      await g.event({ type: 'app_home_opened', user, channel: 'D0HOME0001', tab: 'home', event_ts: `${Date.now() / 1000}` });
    }
    const groupies = await waitFor('the Home tabs', () => {
      const calls = g.standIn.ok('views.publish').filter((c) => c.body.user_id === GROUPIE);
      return calls.length === 2 ? calls : undefined;
    });
    for (const call of groupies) expect(JSON.stringify(call.body.view)).toContain('Waiting for your approval');
    expect(g.standIn.calls.filter((c) => c.method === 'usergroups.users.list')).toHaveLength(1);
  });
});

