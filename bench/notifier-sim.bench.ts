/**
 * A 10,000-FOV run on simulated AWS Batch: 5% of FOVs fail, ~60,000 "Batch Job State Change"
 * events over two simulated hours, delivered the way SQS → Lambda delivers them (batches of up
 * to 100, a 30 s batching window, some duplicates, out of order within a batch) through the
 * real notifier and the real Slack adapter, against the Web API stand-in on loopback, which
 * counts every Slack API call.
 *
 *   npx tsx bench/notifier-sim.bench.ts [--runs 3]
 */
import { performance } from 'node:perf_hooks';
import { loadManifest } from '../src/run/manifest-store.js';
import { PRODUCTION_SETTINGS } from '../src/core.js';
import { launchedRun } from '../test/notifier/harness.js';
import type { BatchJobEvent } from '../src/run/batch-event.js';
import type { BatchStatus, Chat } from '../src/ports.js';
import { RecordingChat, batchEvents as ev, mergeWrote, summaryJson } from '../test/helpers/memory-adapters.js';
import { machine, median } from './machine.js';
import { SlackChat } from '../src/slack/slack-chat.js';
import { SlackStandIn } from '../test/slack/stand-in.js';

const FOVS = 10_000;
const FAIL_RATE = 0.05;
const HOURS = 2;
const MAX_BATCH = 100;
const WINDOW_MS = 30_000;

function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

export interface SimResult {
  events: number;
  invocations: number;
  slackCalls: number;
  slackByMethod: Record<string, number>;
  msPerEvent: number;
  failedFovs: number;
  failedNamed: number;
  finalMessage: string;
  finalCorrect: boolean;
}

type CountingChat = Chat & { count(): Record<string, number>; texts(): string; lastRoot?: string | undefined; close?(): Promise<void> };
type Run = Awaited<ReturnType<typeof launchedRun<CountingChat>>>;
type SimJob = ReturnType<Run['batch']['byName']>;
type Random = () => number;

interface TimelineItem {
  t: number;
  event: BatchJobEvent;
  child?: { index: number; status: BatchStatus };
}

/** The FOVs that will fail: FAIL_RATE of them, drawn first so that a seed always picks the same ones. */
function pickFailing(random: Random): Set<number> {
  const failing = new Set<number>();
  while (failing.size < FOVS * FAIL_RATE) failing.add(Math.floor(random() * FOVS));
  return failing;
}

/** Each child: PENDING, RUNNABLE, STARTING, RUNNING, then SUCCEEDED or FAILED; 1,000 at a time; a fifth of the ends duplicated. */
function childEvents(i: number, start: number, array: SimJob, failing: Set<number>, random: Random): TimelineItem[] {
  const span = HOURS * 3600_000;
  const slot = Math.floor(i / 1000);
  const begin = start + (slot * span) / 10 + random() * 60_000;
  const end = begin + span / 10 - 120_000 - random() * 60_000;
  const steps: Array<[number, BatchStatus]> = [
    [start + random() * 2_000, 'SUBMITTED'],
    [start + 2_000 + random() * 5_000, 'PENDING'],
    [begin - 60_000, 'RUNNABLE'],
    [begin - 20_000, 'STARTING'],
    [begin, 'RUNNING'],
    [end, failing.has(i) ? 'FAILED' : 'SUCCEEDED'],
  ];
  const items: TimelineItem[] = steps.map(([t, status]) => {
    const event = status === 'FAILED' ? ev.child(array, i, 'FAILED', `process-fov: FOV ${i}: recipe raised ValueError: no spots found in round ${i % 4}`, t) : ev.child(array, i, status, undefined, t);
    return { t, event, child: { index: i, status } };
  });
  if (random() < 0.2) items.push({ t: end + 1, event: ev.child(array, i, failing.has(i) ? 'FAILED' : 'SUCCEEDED', 'duplicate', end + 1) });
  return items;
}

/** Every event Batch would send for the run, in time order: the children, the array's own, and the merge failing on its dependency. */
function timelineOf(start: number, array: SimJob, merge: SimJob, failing: Set<number>, random: Random): TimelineItem[] {
  const timeline: TimelineItem[] = [];
  for (let i = 0; i < FOVS; i++) timeline.push(...childEvents(i, start, array, failing, random));
  const arrayEnd = start + HOURS * 3600_000;
  timeline.push({ t: start + 1_000, event: ev.parent(array, 'PENDING', {}, start + 1_000) });
  timeline.push({ t: start + 120_000, event: ev.parent(array, 'RUNNING', {}, start + 120_000) });
  timeline.push({ t: arrayEnd, event: ev.parent(array, 'FAILED', {}, arrayEnd) });
  timeline.push({ t: arrayEnd + 1_000, event: ev.job(merge, 'FAILED', 'Dependent Job failed', arrayEnd + 1_000) });
  return timeline.sort((a, b) => a.t - b.t);
}

/** The truth DescribeJobs reports, advanced as time passes: a child that has ended stays ended. */
function childTruth() {
  const childStatus = new Array<BatchStatus>(FOVS).fill('SUBMITTED');
  const summary: Partial<Record<BatchStatus, number>> = { SUBMITTED: FOVS };
  const apply = (index: number, status: BatchStatus) => {
    const before = childStatus[index]!;
    if (before === 'SUCCEEDED' || before === 'FAILED') return;
    summary[before] = (summary[before] ?? 0) - 1;
    summary[status] = (summary[status] ?? 0) + 1;
    childStatus[index] = status;
  };
  return { summary, apply };
}

/** Delivers event batches to the real notifier as one SQS-triggered invocation each, shuffled, timing only the notifier. */
function notifierInvoker(run: Run, random: Random) {
  const stats = { invocations: 0, busyMs: 0, delivered: 0 };
  const deliver = async (events: BatchJobEvent[]) => {
    stats.invocations++;
    stats.delivered += events.length;
    const t0 = performance.now();
    const outcome = await run.notifier.handleBatch(events.sort(() => random() - 0.5));
    stats.busyMs += performance.now() - t0;
    if (outcome.failedEventIds.length) throw new Error(`notifier failed ${outcome.failedEventIds.length} events`);
  };
  return { stats, deliver };
}

/**
 * Takes the next SQS batch off the timeline: up to MAX_BATCH events within WINDOW_MS of the
 * first, updating what DescribeJobs says as each event's change happens.
 */
function nextBatch(timeline: TimelineItem[], from: number, run: Run, jobs: { array: SimJob; merge: SimJob }, truth: ReturnType<typeof childTruth>): { chunk: BatchJobEvent[]; next: number } {
  const { batch } = run;
  const first = timeline[from]!.t;
  const chunk: BatchJobEvent[] = [];
  let i = from;
  while (i < timeline.length && chunk.length < MAX_BATCH && timeline[i]!.t <= first + WINDOW_MS) {
    const item = timeline[i++]!;
    if (item.child) truth.apply(item.child.index, item.child.status);
    if (item.event.detail.jobId === jobs.array.jobId) batch.set(jobs.array, item.event.detail.status, { ...truth.summary });
    if (item.event.detail.jobId === jobs.merge.jobId) batch.set(jobs.merge, 'FAILED', undefined, 'Dependent Job failed');
    chunk.push(item.event);
  }
  batch.set(jobs.array, batch.jobs.get(jobs.array.jobId)!.status, { ...truth.summary });
  return { chunk, next: i };
}

/** The notifier has submitted the salvage merge; it succeeds 5 minutes after the last batch. */
async function finishSalvage(run: Run, failing: Set<number>, now: number, deliver: (events: BatchJobEvent[]) => Promise<void>): Promise<void> {
  run.advance(now - run.now());
  const salvage = run.batch.byName(/-merge-partial$/);
  await mergeWrote(run.store, run.runId, summaryJson(FOVS, [...failing].sort((a, b) => a - b), { ACTB: 400_000, GAPDH: 250_000, VIM: 120_000 }), Buffer.alloc(50_000));
  run.batch.set(salvage, 'SUCCEEDED');
  await deliver([ev.job(salvage, 'RUNNING', undefined, now - 200_000), ev.job(salvage, 'SUCCEEDED', undefined, now)]);
  await run.reconciler.run();
}

async function resultOf(run: Run, chat: CountingChat, failing: Set<number>, stats: { invocations: number; busyMs: number; delivered: number }): Promise<SimResult> {
  const m = (await loadManifest(run.store, run.runId))!.manifest;
  const named = new Set([...chat.texts().matchAll(/FOV (\d+)\b/g)].map((x) => Number(x[1])));
  const counts = chat.count();
  await chat.close?.();
  const finalMessage = chat.lastRoot ?? '';
  return {
    events: stats.delivered,
    invocations: stats.invocations,
    slackCalls: Object.values(counts).reduce((a, b) => a + b, 0),
    slackByMethod: counts,
    msPerEvent: stats.busyMs / stats.delivered,
    failedFovs: failing.size,
    failedNamed: [...failing].filter((f) => named.has(f)).length,
    finalMessage,
    finalCorrect: m.status === 'partially-failed' && /Finished with failed FOVs/.test(finalMessage) && /9,500 succeeded · 500 failed of 10,000 FOVs/.test(finalMessage),
  };
}

export async function simulate(seed = 1, makeChat: () => Promise<CountingChat> | CountingChat = recordingChat): Promise<SimResult> {
  const random = rng(seed);
  const chat = await makeChat();
  const run = await launchedRun(FOVS, PRODUCTION_SETTINGS, { chat, start: Date.parse('2026-11-25T08:00:00Z') });
  const start = run.now();
  const jobs = { array: run.batch.byName(/-fov$/), merge: run.batch.byName(/-merge$/) };
  const failing = pickFailing(random);
  const timeline = timelineOf(start, jobs.array, jobs.merge, failing, random);
  const truth = childTruth();
  const { stats, deliver } = notifierInvoker(run, random);

  let now = start;
  let nextReconcile = start + 300_000;
  for (let i = 0; i < timeline.length; ) {
    const first = timeline[i]!.t;
    const { chunk, next } = nextBatch(timeline, i, run, jobs, truth);
    i = next;
    // The invocation sees the batch a little after its last event.
    const last = chunk.at(-1)!;
    now = Math.max(now, last.time ? Date.parse(last.time) : first) + 2_000;
    run.advance(now - run.now());
    await deliver(chunk);
    // The reconciler runs every 5 minutes and flushes what was held back.
    if (now >= nextReconcile) {
      await run.reconciler.run();
      nextReconcile += 300_000;
    }
  }
  await finishSalvage(run, failing, now + 300_000, deliver);
  return resultOf(run, chat, failing, stats);
}

function recordingChat() {
  const chat = new RecordingChat() as RecordingChat & { count(): Record<string, number>; texts(): string; lastRoot?: string };
  chat.count = () => {
    const out: Record<string, number> = {};
    for (const c of chat.calls) if (c.method !== 'ephemeral') out[c.method] = (out[c.method] ?? 0) + 1;
    return out;
  };
  chat.texts = () => chat.text();
  Object.defineProperty(chat, 'lastRoot', { get: () => chat.of('update').at(-1)?.message?.text });
  return chat;
}

/** The real Slack adapter (SlackChat, @slack/web-api) against the Web API stand-in on loopback. */
async function slackStandInChat(): Promise<CountingChat> {
  const standIn = await SlackStandIn.start();
  const chat = new SlackChat({ token: 'xoxb-bench', slackApiUrl: standIn.apiUrl }) as SlackChat & CountingChat;
  const ok = () => standIn.calls.filter((c) => c.status === 200);
  chat.count = () => {
    const out: Record<string, number> = {};
    for (const c of ok()) if (c.method !== 'chat.postEphemeral') out[c.method] = (out[c.method] ?? 0) + 1;
    return out;
  };
  chat.texts = () => ok().map((c) => `${String(c.body.text ?? '')}\n${JSON.stringify(c.body.blocks ?? '')}`).join('\n');
  Object.defineProperty(chat, 'lastRoot', { get: () => String(ok().filter((c) => c.method === 'chat.update').at(-1)?.body.text ?? '') });
  chat.close = () => standIn.close();
  return chat;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const runs = Number(process.argv[process.argv.indexOf('--runs') + 1]) || 3;
  const results: SimResult[] = [];
  for (let r = 0; r < runs; r++) results.push(await simulate(r + 1, slackStandInChat));
  const last = results.at(-1)!;
  console.log(
    JSON.stringify({
      benchmark: 'notifier-simulation',
      machine: machine(),
      runs,
      fovs: FOVS,
      events: last.events,
      invocations: last.invocations,
      slackCalls: median(results.map((x) => x.slackCalls)),
      slackByMethod: last.slackByMethod,
      msPerEventMedian: Number(median(results.map((x) => x.msPerEvent)).toFixed(4)),
      failedFovs: last.failedFovs,
      failedNamed: last.failedNamed,
      finalCorrect: results.every((x) => x.finalCorrect),
      finalMessage: last.finalMessage,
    }),
  );
}
