/**
 * Slack's own surfaces, through the production endpoint (request guard, Bolt, listeners) and the
 * real local core: the launch form (`/starfish run` alone → views.open; view_submission checked
 * field by field), the Reject button's reason form, and the App Home tab (app_home_opened →
 * views.publish) with its buttons. Every view the stand-in receives is checked against Slack's
 * documented limits (./view-limits.ts).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createManifest, listManifests, loadManifest } from '../../src/run/manifest-store.js';
import { ACTIONS, errorMessage } from '../../src/messages/blocks.js';
import { LAUNCH_ACTION } from '../../src/messages/home-view.js';
import { LAUNCH_CALLBACK, launchModal, plainError, readLaunchForm } from '../../src/slack/launch-modal.js';
import { REJECT_CALLBACK } from '../../src/slack/reject-modal.js';
import { homePublisher } from '../../src/slack/home.js';
import type { WebClient } from '../../src/slack/slack-chat.js';
import type { Logger } from '@slack/bolt';
import type { RunManifest } from '../../src/run/manifest.js';
import type { Policy } from '../../src/run/policy.js';
import { ALICE, APPROVER, BOB, CHANNEL, MALLORY, OTHER_CHANNEL, startHarness, textOf, waitFor, type Harness } from './harness.js';
import { APP_ID, post, postSigned, signedJsonHeaders, slashBody } from './signing.js';
import { viewLimitProblems } from './view-limits.js';
import { manifest as fixtureManifest } from '../messages/fixtures.js';

let h: Harness;

beforeAll(async () => {
  h = await startHarness({
    policy: {
      approval: { fovThreshold: 1, approvers: [APPROVER] },
      access: { channels: [CHANNEL], runners: [ALICE, BOB, APPROVER] },
      queues: { default: 'local', allowed: ['local', 'local-big'] },
      recipes: [{ name: 'ISS (starfish docs)', url: 's3://lab-data/recipes/iss.py' }],
    },
  });
});

afterAll(async () => {
  await h?.close();
});

beforeEach(() => {
  h.standIn.reset();
});

type View = Record<string, unknown> & { blocks: Array<Record<string, unknown>> };
const opened = () => h.standIn.ok('views.open').map((c) => c.body.view as View);
const published = () => h.standIn.ok('views.publish');
const runIds = async () => new Set((await listManifests(h.system.store, 500)).map((m) => m.runId));

/** The state Slack sends for the launch form, from what a person filled in. */
function launchValues(fields: { channel?: string; experiment?: string; recipe?: string; recipeUrl?: string; fovs?: string; queue?: string; name?: string; dryRun?: boolean }) {
  const input = (value: string | undefined) => ({ value: { type: 'plain_text_input', value: value ?? null } });
  const select = (value: string | undefined) => ({ value: { type: 'static_select', selected_option: value ? { text: { type: 'plain_text', text: value }, value } : null } });
  return {
    channel: { value: { type: 'conversations_select', selected_conversation: fields.channel ?? null } },
    experiment: input(fields.experiment),
    recipe: select(fields.recipe),
    recipe_url: input(fields.recipeUrl),
    fovs: input(fields.fovs),
    queue: select(fields.queue),
    name: input(fields.name),
    dry_run: { value: { type: 'checkboxes', selected_options: fields.dryRun ? [{ text: { type: 'plain_text', text: 'Dry run' }, value: 'dry-run' }] : [] } },
  };
}

/** The value the launch form's recipe menu gives the lab recipe whose label starts with `label`, under `policy`. */
function recipeMenuValue(policy: Policy, label: string): string {
  const block = launchModal(policy, {}).blocks.find((b) => b.block_id === 'recipe') as unknown as { element: { options: Array<{ text: { text: string }; value: string }> } };
  const found = block.element.options.find((o) => o.text.text.startsWith(label));
  if (!found) throw new Error(`no recipe option ${label}`);
  return found.value;
}

const responseUrls = (channel: string) => [{ block_id: 'channel', action_id: 'value', channel_id: channel, response_url: h.standIn.responseUrl(`form-${channel}`) }];

describe('the launch form: /starfish run with nothing after it', () => {
  it('opens a modal with the trigger of the command, the channel preselected and the lab own choices, within Block Kit limits', async () => {
    const body = slashBody({ text: 'run', userId: ALICE, channel: CHANNEL, responseUrl: h.standIn.responseUrl('open') });
    const res = await postSigned(h.url, body, {});
    expect(res.status).toBe(200);
    expect(res.body).toBe('');
    const call = await waitFor('views.open', () => h.standIn.ok('views.open')[0]);
    expect(call.body.trigger_id).toBe(new URLSearchParams(body).get('trigger_id'));
    const view = call.body.view as View;
    expect(view.callback_id).toBe(LAUNCH_CALLBACK);
    expect(viewLimitProblems(view)).toEqual([]);
    const byId = Object.fromEntries(view.blocks.map((b) => [b.block_id, b]));
    expect((byId.channel!.element as Record<string, unknown>).initial_conversation).toBe(CHANNEL);
    expect((byId.channel!.element as Record<string, unknown>).response_url_enabled).toBe(true);
    const recipeOptions = (byId.recipe!.element as { options: Array<{ text: { text: string } }> }).options.map((o) => o.text.text);
    expect(recipeOptions).toEqual(['Lab default (recipe.py)', 'ISS (starfish docs) (iss.py)']);
    const queues = (byId.queue!.element as { options: Array<{ value: string }>; initial_option: { value: string } }).options.map((o) => o.value);
    expect(queues).toEqual(['local', 'local-big']);
    expect(JSON.stringify(byId.fovs)).toContain('first=16');
    // Nothing was started by opening a form.
    await h.system.bus.drain();
    expect(h.standIn.ok('chat.postMessage')).toHaveLength(0);
  });

  it('typed in a direct message, preselects no channel (the menu lists channels only)', () => {
    const view = launchModal(h.system.dispatchDeps.policy, { channel: 'D0DIRECT01' });
    const channel = view.blocks.find((b) => b.block_id === 'channel') as unknown as { element: Record<string, unknown> };
    expect(channel.element.initial_conversation).toBeUndefined();
    expect(viewLimitProblems(view as unknown as View)).toEqual([]);
  });

  it('is not opened for someone who may not start runs there: the typed refusal instead', async () => {
    const res = await h.slash('run', MALLORY);
    expect(res.json().text).toContain('You are not on the list of people who may start runs');
    const elsewhere = await h.slash('run', ALICE, OTHER_CHANNEL);
    expect(elsewhere.json().text).toContain('starfish does not take commands in this channel');
    expect(h.standIn.calls.filter((c) => c.method === 'views.open')).toHaveLength(0);
  });

  it('when Slack does not open it (an expired trigger), the person is told to type the run, with an example', async () => {
    h.standIn.inject('views.open', { status: 200, error: 'expired_trigger_id' });
    expect((await h.slash('run', ALICE)).status).toBe(200);
    const told = await waitFor('the answer via response_url', () => h.standIn.ok('response_url')[0]);
    expect(textOf(told.body)).toContain('The form to start a run did not open; type the run instead. Example: /starfish run s3://');
  });

  it('when Slack does not answer views.open, the bot gives up on it (a trigger lives 3 seconds) and says how to type the run', async () => {
    // Answered after 6 s: past the trigger's life; without a timeout the form would open late and nobody would be told.
    h.standIn.inject('views.open', { delayMs: 6_000 });
    expect((await h.slash('run', ALICE)).status).toBe(200);
    const told = await waitFor('the answer via response_url', () => h.standIn.ok('response_url')[0]);
    expect(textOf(told.body)).toContain('The form to start a run did not open; type the run instead.');
  }, 20_000);

  it('a submission with several mistakes is answered with every error on its own field, and nothing starts', async () => {
    const before = await runIds();
    const res = await h.submit({
      callbackId: LAUNCH_CALLBACK,
      userId: ALICE,
      values: launchValues({ channel: OTHER_CHANNEL, experiment: 'http://lab.example.org/experiment.json', fovs: '2 FOVs', queue: 'gpu-huge', name: 'bad name!' }),
    });
    expect(res.status).toBe(200);
    const answer = res.json() as { response_action: string; errors: Record<string, string> };
    expect(answer.response_action).toBe('errors');
    expect(Object.keys(answer.errors).sort()).toEqual(['channel', 'experiment', 'fovs', 'name']);
    expect(answer.errors.channel).toContain(`starfish does not take commands in this channel. Ask in channel ${CHANNEL}`);
    expect(answer.errors.experiment).toContain('is not an s3:// or https:// URL');
    expect(answer.errors.fovs).toContain('fovs=2 is FOV 2');
    expect(answer.errors.fovs).toContain('first=16');
    expect(answer.errors.name).toContain('Example: name=mouse-brain-2');
    // Errors are plain text: no mrkdwn entities or channel markup left in them.
    expect(JSON.stringify(answer.errors)).not.toMatch(/&lt;|<#/);
    await h.system.bus.drain();
    expect(await runIds()).toEqual(before);
  });

  it('a channel that is not a channel id (a crafted submission) is refused on the channel field, even where the policy takes any channel', () => {
    const { policy } = h.system.dispatchDeps;
    const anyChannel = { ...h.system.dispatchDeps, policy: { ...policy, access: { ...policy.access, channels: [] } } };
    const form = (channel: string) => readLaunchForm(anyChannel, ALICE, launchValues({ channel, experiment: h.experiment, queue: 'local' }));
    for (const crafted of ['C0LAB0001><!channel>', 'D0DIRECT01', 'general']) {
      expect(form(crafted), crafted).toEqual({ ok: false, errors: { channel: 'Choose a channel from the menu: that is not a channel.' } });
    }
    expect(form(OTHER_CHANNEL)).toMatchObject({ ok: true, channel: OTHER_CHANNEL });
  });

  it('a queue outside the lab list (a crafted submission) is refused on the queue field', async () => {
    const res = await h.submit({ callbackId: LAUNCH_CALLBACK, userId: ALICE, values: launchValues({ channel: CHANNEL, experiment: h.experiment, queue: 'gpu-huge' }) });
    expect((res.json() as { errors: Record<string, string> }).errors).toEqual({ queue: expect.stringContaining('queue=gpu-huge is not one of this lab') });
  });

  it('a recipe from the menu and a typed recipe URL at once: asked to choose one', async () => {
    const iss = recipeMenuValue(h.system.dispatchDeps.policy, 'ISS');
    const res = await h.submit({ callbackId: LAUNCH_CALLBACK, userId: ALICE, values: launchValues({ channel: CHANNEL, experiment: h.experiment, recipe: iss, recipeUrl: 's3://lab-data/recipes/other.py' }) });
    expect((res.json() as { errors: Record<string, string> }).errors).toEqual({ recipe_url: 'Choose a recipe from the menu or give its URL here, not both.' });
    const stale = await h.submit({ callbackId: LAUNCH_CALLBACK, userId: ALICE, values: launchValues({ channel: CHANNEL, experiment: h.experiment, recipe: 'recipe:7' }) });
    expect((stale.json() as { errors: Record<string, string> }).errors).toEqual({ recipe: "That recipe is no longer on the lab's list; choose again." });
  });

  it("a recipe chosen in a form opened before the lab's list changed is refused, never swapped for the recipe now in its place", async () => {
    const dir = path.dirname(h.system.dispatchDeps.policy.defaultRecipe!);
    const [a, b, c] = ['a.py', 'b.py', 'c.py'].map((f) => path.join(dir, f));
    const asOpened: Policy = { ...h.system.dispatchDeps.policy, recipes: [{ name: 'Recipe A', url: a! }, { name: 'Recipe B', url: b! }] };
    const chosenB = recipeMenuValue(asOpened, 'Recipe B');
    const values = launchValues({ channel: CHANNEL, experiment: h.experiment, queue: 'local', recipe: chosenB });
    // Unchanged list: B is run.
    const same = readLaunchForm({ ...h.system.dispatchDeps, policy: asOpened }, ALICE, values);
    expect(same.ok && same.request.recipe).toBe(b);
    // The admin replaced A and moved B: the form's choice no longer names the recipe at its place.
    const edited: Policy = { ...asOpened, recipes: [{ name: 'Recipe C', url: c! }, { name: 'Recipe A', url: a! }] };
    const stale = readLaunchForm({ ...h.system.dispatchDeps, policy: edited }, ALICE, values);
    expect(stale).toEqual({ ok: false, errors: { recipe: "That recipe is no longer on the lab's list; choose again." } });
  });

  it('when the lab lists more than 100 queues, the default is still offered and preselected', () => {
    const many = Array.from({ length: 120 }, (_, i) => `queue-${String(i).padStart(3, '0')}`);
    const view = launchModal({ ...h.system.dispatchDeps.policy, queues: { default: 'queue-110', allowed: many } }, { channel: CHANNEL });
    const queue = view.blocks.find((b) => b.block_id === 'queue') as unknown as { element: { options: Array<{ value: string }>; initial_option?: { value: string } } };
    expect(queue.element.options.map((o) => o.value)).toContain('queue-110');
    expect(queue.element.initial_option?.value).toBe('queue-110');
    expect(viewLimitProblems(view as unknown as View)).toEqual([]);
  });

  it('a lab with no default recipe: the recipe is required, on the field the person can fill in', () => {
    const bare: Policy = { ...h.system.dispatchDeps.policy, defaultRecipe: undefined, recipes: [] };
    const view = launchModal(bare, { channel: CHANNEL });
    const byId = Object.fromEntries(view.blocks.map((b) => [b.block_id, b as unknown as { optional?: boolean; label: { text: string } }]));
    expect(byId.recipe).toBeUndefined();
    expect(byId.recipe_url).toMatchObject({ optional: false, label: { text: 'Recipe' } });
    expect(viewLimitProblems(view as unknown as View)).toEqual([]);
    const values = launchValues({ channel: CHANNEL, experiment: h.experiment, queue: 'local' });
    expect(readLaunchForm({ ...h.system.dispatchDeps, policy: bare }, ALICE, values)).toEqual({ ok: false, errors: { recipe_url: expect.stringContaining('give one. Example: s3://') } });
    // With the lab's recipes listed but no default, the menu is where to choose.
    const listed: Policy = { ...bare, recipes: [{ name: 'ISS', url: 's3://lab-data/recipes/iss.py' }] };
    const initial = (launchModal(listed, {}).blocks.find((b) => b.block_id === 'recipe') as unknown as { element: { initial_option?: unknown } }).element.initial_option;
    expect(initial).toBeUndefined();
    expect(readLaunchForm({ ...h.system.dispatchDeps, policy: listed }, ALICE, values)).toEqual({ ok: false, errors: { recipe: expect.stringContaining("choose one of the lab's recipes") } });
  });

  it('the FOVs field takes what people type there: spaces, or the typed command own fovs= spelling', () => {
    const fovsOf = (fovs: string) => {
      const form = readLaunchForm(h.system.dispatchDeps, ALICE, launchValues({ channel: CHANNEL, experiment: h.experiment, queue: 'local', fovs }));
      return form.ok ? form.request.fovs : form.errors;
    };
    expect(fovsOf('first = 16')).toEqual({ kind: 'first', count: 16 });
    expect(fovsOf('0 - 15, 20')).toEqual({ kind: 'list', ranges: [[0, 15], [20, 20]] });
    expect(fovsOf('fovs=0-3')).toEqual({ kind: 'list', ranges: [[0, 3]] });
    expect(fovsOf('2 FOVs')).toEqual({ fovs: expect.stringContaining('fovs=2 is FOV 2') });
  });

  it('a valid submission closes the form, starts the run it describes in the chosen channel, and answers there once', async () => {
    const before = await runIds();
    const res = await h.submit({
      callbackId: LAUNCH_CALLBACK,
      userId: ALICE,
      values: launchValues({ channel: CHANNEL, experiment: h.experiment, fovs: 'first=1', queue: 'local', name: 'from-the-form' }),
      responseUrls: responseUrls(CHANNEL),
    });
    expect(res.status).toBe(200);
    expect(res.body).toBe('');
    const run = await waitFor('the run from the form', async () => (await listManifests(h.system.store, 500)).find((m) => !before.has(m.runId) && m.message !== undefined));
    expect(run.request).toMatchObject({ experiment: h.experiment, fovs: { kind: 'first', count: 1 }, queue: 'local', name: 'from-the-form', dryRun: false });
    expect(run.requester).toMatchObject({ userId: ALICE, channel: CHANNEL });
    expect(run.plan.fovCount).toBe(1);
    const root = await waitFor('the root message', () => h.standIn.ok('chat.postMessage').find((c) => textOf(c.body).includes(`starfish run ${run.runId}`)));
    expect(root.body.channel).toBe(CHANNEL);
    const notices = h.standIn.ok('response_url').filter((c) => textOf(c.body).includes('to plan the run'));
    expect(notices).toHaveLength(1);
  });

  it('without a response_url (a form opened from the Home tab) the answer comes by chat.postEphemeral, once', async () => {
    const before = await runIds();
    const res = await h.submit({ callbackId: LAUNCH_CALLBACK, userId: ALICE, values: launchValues({ channel: CHANNEL, experiment: h.experiment, queue: 'local', dryRun: true }) });
    expect(res.body).toBe('');
    await waitFor('the planned run', async () => (await listManifests(h.system.store, 500)).find((m) => !before.has(m.runId) && m.status === 'planned'));
    const told = h.standIn.ok('chat.postEphemeral').filter((c) => c.body.user === ALICE && textOf(c.body).includes('to plan the run'));
    expect(told).toHaveLength(1);
    expect(told[0]!.body.channel).toBe(CHANNEL);
  });

  it('without a response_url, for a channel the bot is not in: the form says to invite it, and nothing is submitted', async () => {
    h.standIn.inject('chat.postEphemeral', { status: 200, error: 'not_in_channel' });
    h.standIn.inject('chat.postMessage', { status: 200, error: 'not_in_channel' });
    const before = await runIds();
    const res = await h.submit({ callbackId: LAUNCH_CALLBACK, userId: ALICE, values: launchValues({ channel: CHANNEL, experiment: h.experiment, queue: 'local', fovs: 'first=1' }) });
    expect(res.json()).toEqual({ response_action: 'errors', errors: { channel: expect.stringContaining('Invite it with /invite @starfish, then Start again') } });
    await h.system.bus.drain();
    await h.system.settle();
    const run = (await listManifests(h.system.store, 500)).find((m) => !before.has(m.runId));
    expect(run === undefined || run.submissions.length === 0).toBe(true);
    expect(h.executor.runs.filter((r) => r === run?.runId)).toHaveLength(0);
    // The line above holds trivially when no manifest was found: no run begun by this test ran at all.
    expect(h.executor.runs.filter((r) => !before.has(r))).toEqual([]);
  });

  it('a dry run from the form plans and submits nothing', async () => {
    const before = await runIds();
    await h.submit({ callbackId: LAUNCH_CALLBACK, userId: ALICE, values: launchValues({ channel: CHANNEL, experiment: h.experiment, queue: 'local', dryRun: true }) });
    const run = await waitFor('the planned run', async () => (await listManifests(h.system.store, 500)).find((m) => !before.has(m.runId) && m.status === 'planned'));
    expect(run.request.dryRun).toBe(true);
    expect(h.executor.runs).not.toContain(run.runId);
  });
});

/** Asks for a run that needs approval (2 FOVs over a 1-FOV threshold) and returns its id. */
async function pendingRun(userId: string): Promise<string> {
  const before = await runIds();
  await h.slash(`run ${h.experiment}`, userId);
  const m = await waitFor('the run waiting for approval', async () => (await listManifests(h.system.store, 500)).find((x) => !before.has(x.runId) && x.status === 'awaiting-approval' && x.message));
  return m.runId;
}

describe('the Reject button asks why', () => {
  it('opens a reason form for that run; submitting it rejects the run with the reason, told to the requester, escaped', async () => {
    const runId = await pendingRun(BOB);
    expect((await h.click(ACTIONS.reject, runId, APPROVER)).status).toBe(200);
    const view = await waitFor('the reason form', () => opened()[0]);
    expect(view.callback_id).toBe(REJECT_CALLBACK);
    expect(viewLimitProblems(view)).toEqual([]);
    // Nothing is decided by opening the form.
    expect((await loadManifest(h.system.store, runId))?.manifest.status).toBe('awaiting-approval');
    const reason = 'use the spot queue for runs this size <!channel>';
    const res = await h.submit({ callbackId: REJECT_CALLBACK, userId: APPROVER, privateMetadata: view.private_metadata as string, values: { reason: { value: { type: 'plain_text_input', value: reason } } } });
    expect(res.status).toBe(200);
    expect(res.body).toBe('');
    const rejected = await waitFor('the rejection', async () => {
      const m = (await loadManifest(h.system.store, runId))?.manifest;
      return m?.status === 'rejected' ? m : undefined;
    });
    expect(rejected.approval).toMatchObject({ decision: 'rejected', decidedBy: APPROVER, reason });
    const told = await waitFor('the requester told', () => h.standIn.ok('chat.postMessage').find((c) => c.body.thread_ts && textOf(c.body).includes(`<@${BOB}>`) && textOf(c.body).includes('spot queue')));
    expect(textOf(told.body)).not.toContain('<!channel>');
    expect(h.executor.runs).not.toContain(runId);
  });

  it('a reason form for someone who is not an approver rejects nothing: the launcher refuses it once', async () => {
    const runId = await pendingRun(BOB);
    await h.click(ACTIONS.reject, runId, ALICE);
    const view = await waitFor('the reason form', () => opened()[0]);
    await h.submit({ callbackId: REJECT_CALLBACK, userId: ALICE, privateMetadata: view.private_metadata as string, values: { reason: { value: { type: 'plain_text_input', value: 'no' } } } });
    const refusal = await waitFor('the refusal', () => h.standIn.ok('chat.postEphemeral').find((c) => c.body.user === ALICE));
    expect(textOf(refusal.body)).toContain('You are not an approver for starfish runs');
    expect(h.standIn.ok('chat.postEphemeral').filter((c) => c.body.user === ALICE)).toHaveLength(1);
    expect((await loadManifest(h.system.store, runId))?.manifest.status).toBe('awaiting-approval');
  });

  it('a submission whose run reference was tampered with is answered on the form, and nothing is rejected', async () => {
    const res = await h.submit({ callbackId: REJECT_CALLBACK, userId: APPROVER, privateMetadata: '{"runId":"../../etc","channel":"C0LAB00001"}', values: { reason: { value: { type: 'plain_text_input', value: 'x' } } } });
    expect(res.json()).toEqual({ response_action: 'errors', errors: { reason: expect.stringContaining('use /starfish reject <run id> <reason> instead') } });
  });
});

describe('the App Home tab', () => {
  const homeOf = async (user: string) => {
    const res = await h.event({ type: 'app_home_opened', user, channel: 'D0HOME0001', tab: 'home', event_ts: `${Date.now() / 1000}` });
    expect(res.status).toBe(200);
    const call = await waitFor(`the Home of ${user}`, () => published().find((c) => c.body.user_id === user));
    const view = call.body.view as View;
    expect(view.type).toBe('home');
    expect(viewLimitProblems(view)).toEqual([]);
    return view;
  };
  const buttonsOf = (view: View) =>
    view.blocks.flatMap((b) => [...((b.elements as Array<Record<string, unknown>> | undefined) ?? []), ...(b.accessory ? [b.accessory as Record<string, unknown>] : [])]).filter((e) => e.type === 'button').map((e) => [e.action_id, e.value]);

  it("shows a person's runs with their state, an approver the runs waiting for them with Approve/Reject, and a Start button", async () => {
    const runId = await pendingRun(BOB);
    const bobs = await homeOf(BOB);
    expect(JSON.stringify(bobs.blocks)).toContain(runId);
    expect(JSON.stringify(bobs.blocks)).toContain('Waiting for approval');
    // Bob's own run waits for someone else: no Approve button of his.
    expect(buttonsOf(bobs)).toEqual([[LAUNCH_ACTION, 'launch']]);
    h.standIn.reset();
    const approvers = await homeOf(APPROVER);
    expect(JSON.stringify(approvers.blocks)).toContain('Waiting for your approval');
    expect(buttonsOf(approvers)).toEqual(expect.arrayContaining([[ACTIONS.approve, runId], [ACTIONS.reject, runId]]));
  });

  it("where the policy allows self-approval, shows an approver's own waiting run under Waiting for your approval, with Approve", async () => {
    const runId = await pendingRun(APPROVER);
    const { policy } = h.system.dispatchDeps;
    const views: View[] = [];
    const client = { views: { publish: async (args: { view: View }) => (views.push(args.view), { ok: true }) } } as unknown as WebClient;
    const publishFor = (allowSelfApproval: boolean) => homePublisher({ ...h.system.dispatchDeps, policy: { ...policy, approval: { ...policy.approval, allowSelfApproval } } })(client, APPROVER, console as unknown as Logger);
    await publishFor(true);
    expect(JSON.stringify(views[0]!.blocks)).toContain('Waiting for your approval');
    expect(buttonsOf(views[0]!)).toEqual(expect.arrayContaining([[ACTIONS.approve, runId], [ACTIONS.reject, runId]]));
    await publishFor(false);
    expect(buttonsOf(views[1]!)).not.toContainEqual([ACTIONS.approve, runId]);
  });

  it("shows the runs of the channels the person runs in, never another channel's", async () => {
    const mine = await pendingRun(ALICE);
    const elsewhere: RunManifest = fixtureManifest({ runId: '261126-zz01', requester: { userId: BOB, channel: OTHER_CHANNEL }, createdAt: new Date().toISOString() });
    await createManifest(h.system.store, elsewhere);
    // Alice once ran in the other channel (before the policy took commands only in CHANNEL):
    // her own run is hers to see, that channel's other runs are not.
    const hersThere: RunManifest = fixtureManifest({ runId: '261126-zz02', status: 'succeeded', requester: { userId: ALICE, channel: OTHER_CHANNEL }, createdAt: new Date().toISOString() });
    await createManifest(h.system.store, hersThere);
    const view = await homeOf(ALICE);
    const text = JSON.stringify(view.blocks);
    expect(text).toContain(mine);
    expect(text).toContain('261126-zz02');
    expect(text).toContain(`Recent in <#${CHANNEL}>`);
    expect(text).not.toContain(`Recent in <#${OTHER_CHANNEL}>`);
    expect(text).not.toContain('261126-zz01');
  });

  it('stays within 100 blocks however many runs there are', async () => {
    const now = Date.now();
    for (let i = 0; i < 40; i++) {
      const status = (['running', 'partially-failed', 'succeeded', 'awaiting-approval'] as const)[i % 4]!;
      const submissions = status === 'awaiting-approval' ? [] : [{ round: 0, submittedAt: new Date(now).toISOString(), fovs: '0-3', arrays: [] }];
      await createManifest(h.system.store, fixtureManifest({ runId: `261126-m${String(i).padStart(3, '0')}`, status, submissions, requester: { userId: i % 2 ? ALICE : BOB, channel: CHANNEL }, createdAt: new Date(now - i * 1000).toISOString() }));
    }
    const view = await homeOf(APPROVER);
    expect(view.blocks.length).toBeLessThanOrEqual(100);
    const alices = await homeOf(ALICE);
    expect(alices.blocks.length).toBeLessThanOrEqual(100);
  });

  it('opening the Messages tab publishes nothing; another workspace is refused before Bolt', async () => {
    await h.event({ type: 'app_home_opened', user: ALICE, channel: 'D0HOME0001', tab: 'messages', event_ts: '1.0' });
    const stranger = await h.event({ type: 'app_home_opened', user: ALICE, channel: 'D0HOME0001', tab: 'home', event_ts: '1.0' }, { teamId: 'T0EVIL', appId: APP_ID });
    expect(stranger.status).toBe(403);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(published()).toHaveLength(0);
  });

  it('someone who may not start runs sees no Start button, and a click on an older one explains instead of opening the form', async () => {
    const view = await homeOf(MALLORY);
    expect(buttonsOf(view)).toEqual([]);
    expect(JSON.stringify(view.blocks)).not.toContain('Start a run');
    expect((await h.homeClick(LAUNCH_ACTION, 'launch', MALLORY)).status).toBe(200);
    const told = await waitFor('the explanation', () => opened()[0]);
    expect(told.callback_id).not.toBe(LAUNCH_CALLBACK);
    expect(told.submit).toBeUndefined();
    expect(JSON.stringify(told.blocks)).toContain('You are not on the list of people who may start runs');
    expect(viewLimitProblems(told)).toEqual([]);
  });

  it('a rate-limited views.publish is not waited out (Retry-After: 30 would outlive Slack 3 seconds): one attempt, answered 200', async () => {
    h.standIn.inject('views.publish', { status: 429, retryAfter: 30 });
    const res = await h.event({ type: 'app_home_opened', user: ALICE, channel: 'D0HOME0001', tab: 'home', event_ts: `${Date.now() / 1000}` });
    expect(res.status).toBe(200);
    expect(h.standIn.calls.filter((c) => c.method === 'views.publish').map((c) => c.status)).toEqual([429]);
  });

  it("a rate-limited answer to a click is not waited out either (the listeners' chat is on Slack's clock)", async () => {
    h.standIn.inject('chat.postEphemeral', { status: 429, retryAfter: 30 });
    expect((await h.click(ACTIONS.cancel, 'not-a-run-id', ALICE)).status).toBe(200);
    expect(h.standIn.calls.filter((c) => c.method === 'chat.postEphemeral').map((c) => c.status)).toEqual([429]);
  });

  it('when Slack does not open the form from the Start button, the tab says to type the run instead', async () => {
    h.standIn.inject('views.open', { status: 200, error: 'expired_trigger_id' });
    expect((await h.homeClick(LAUNCH_ACTION, 'launch', ALICE)).status).toBe(200);
    const redrawn = await waitFor('the redrawn Home tab', () => published().find((c) => c.body.user_id === ALICE));
    expect(JSON.stringify((redrawn.body.view as View).blocks[1])).toContain('The form to start a run did not open; type the run in the lab channel instead. Example: /starfish run s3://');
  });

  it('the Start a run button opens the launch form, with the channel left to choose', async () => {
    expect((await h.homeClick(LAUNCH_ACTION, 'launch', ALICE)).status).toBe(200);
    const view = await waitFor('the launch form', () => opened()[0]);
    expect(view.callback_id).toBe(LAUNCH_CALLBACK);
    expect(JSON.stringify(view.blocks)).not.toContain('initial_conversation');
  });

  it("a Cancel click in the Home tab cancels the run in its own channel, and the tab says so where the person is looking", async () => {
    const hold = path.join(h.home, 'hold');
    await writeFile(hold, '');
    try {
      const runId = await pendingRun(ALICE);
      await h.click(ACTIONS.approve, runId, APPROVER);
      await waitFor('the run running', async () => (await loadManifest(h.system.store, runId))?.manifest.status === 'running');
      expect((await h.homeClick(ACTIONS.cancel, runId, ALICE)).status).toBe(200);
      await waitFor('the cancelled run', async () => (await loadManifest(h.system.store, runId))?.manifest.status === 'cancelled');
      const note = await waitFor('the thread note', () => h.standIn.ok('chat.postMessage').find((c) => c.body.thread_ts && textOf(c.body).includes(`Run ${runId} cancelled by <@${ALICE}>`)));
      expect(note.body.channel).toBe(CHANNEL);
      const redrawn = published().find((c) => c.body.user_id === ALICE && JSON.stringify(c.body.view).includes(`You asked to cancel run ${runId}`))!;
      expect(JSON.stringify((redrawn.body.view as View).blocks[1])).toContain(`its message in <#${CHANNEL}> shows what happened`);
      expect(viewLimitProblems(redrawn.body.view as View)).toEqual([]);
    } finally {
      await rm(hold, { force: true });
    }
  });
});

describe('the Retry failed FOVs button', () => {
  it('is on a run whose FOVs failed; a click reruns them once, and the run ends succeeded', async () => {
    const fail = path.join(h.home, 'fail');
    await writeFile(fail, '');
    let runId: string;
    try {
      runId = await pendingRun(ALICE);
      await h.click(ACTIONS.approve, runId, APPROVER);
      await waitFor('the run ended with failed FOVs', async () => ['failed', 'partially-failed'].includes((await loadManifest(h.system.store, runId))?.manifest.status ?? ''), 20_000);
    } finally {
      await rm(fail, { force: true });
    }
    const failed = await waitFor('the root message with its Retry button', () =>
      h.standIn.ok('chat.update').find((c) => textOf(c.body).includes(`starfish run ${runId}`) && JSON.stringify(c.body.blocks).includes(ACTIONS.retry)),
    );
    expect(viewLimitProblems({ type: 'message', blocks: failed.body.blocks as [] })).toEqual([]);
    const submitted = h.executor.fovSubmits;
    expect((await h.click(ACTIONS.retry, runId, ALICE)).status).toBe(200);
    const done = await waitFor('the retried run', async () => {
      const m = (await loadManifest(h.system.store, runId))?.manifest;
      return m?.status === 'succeeded' ? m : undefined;
    }, 20_000);
    expect(done.submissions).toHaveLength(2);
    expect(h.executor.fovSubmits).toBe(submitted + 1);
    // One answer to the click: the launcher's, to the clicker.
    expect(h.standIn.ok('chat.postEphemeral').filter((c) => c.body.user === ALICE && textOf(c.body).includes(runId))).toHaveLength(1);
  });
});

describe('the events URL handshake', () => {
  it("answers Slack's url_verification with its challenge", async () => {
    const body = JSON.stringify({ token: 'deprecated-verification-token', challenge: '3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P', type: 'url_verification' });
    const res = await post(h.url, body, signedJsonHeaders(body));
    expect(res.status).toBe(200);
    expect(res.body).toContain('3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P');
  });
});

describe('a Home tab click, where the policy lets anyone manage others\' runs', () => {
  let h2: Harness;
  beforeAll(async () => {
    h2 = await startHarness({
      policy: {
        approval: { fovThreshold: 1, approvers: [APPROVER] },
        access: { channels: [CHANNEL, OTHER_CHANNEL], runners: [ALICE, BOB, APPROVER], othersRuns: 'anyone' },
        queues: { default: 'local', allowed: ['local'] },
      },
    });
  });
  afterAll(async () => {
    await h2?.close();
  });

  it("acts only on the clicker's own runs: a Cancel for another person's run, decided in that run's channel, cancels nothing", async () => {
    const bobs: RunManifest = fixtureManifest({ runId: '261126-bb01', status: 'awaiting-approval', requester: { userId: BOB, channel: OTHER_CHANNEL }, createdAt: new Date().toISOString() });
    await createManifest(h2.system.store, bobs);
    // The Home tab shows Cancel on one's own runs only; a click naming Bob's run is not one Slack
    // builds from Alice's Home, so it reaches neither the run nor that channel.
    expect((await h2.homeClick(ACTIONS.cancel, bobs.runId, ALICE)).status).toBe(200);
    await h2.system.bus.drain();
    expect((await loadManifest(h2.system.store, bobs.runId))?.manifest.status).toBe('awaiting-approval');
    expect(h2.standIn.calls.filter((c) => c.body.channel === OTHER_CHANNEL)).toEqual([]);
    // Typed in that channel, where the policy lets her, the same cancel is hers to make.
    await h2.slash(`cancel ${bobs.runId}`, ALICE, OTHER_CHANNEL);
    await waitFor('the cancel typed in the run channel', async () => (await loadManifest(h2.system.store, bobs.runId))?.manifest.status === 'cancelled');
  });
});

describe('a refusal shown on a form field', () => {
  it('is plain text, whether a check\'s reason or a whole answer: no :warning:, entities or channel markup', () => {
    const refusal = errorMessage('starfish does not take commands in this channel. Ask in <#C0LAB0001>. Example: /starfish reject 261125-k3f9 &lt;reason&gt;').text;
    expect(plainError(refusal)).toBe('starfish does not take commands in this channel. Ask in channel C0LAB0001. Example: /starfish reject 261125-k3f9 <reason>');
  });
});
