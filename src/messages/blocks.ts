/**
 * Block Kit builders: pure functions from run state to messages. The console renders the same
 * messages as text (./text.ts), so what a lab sees locally is what Slack shows.
 *
 * Everything a manifest, a summary or a failure carries may have been written by a job, a recipe
 * or a person (run names, gene names, reasons, URLs, even ids): each piece is escaped and cut
 * where it enters the message (`untrusted`, `mention`, `link` in ./message.ts). Numbers are
 * formatted here; markup (bold labels, our links, our mentions) is the builders' own. Every
 * mrkdwn object is `verbatim`, so Slack adds no links or mentions of its own to what it shows.
 */
import type { ActionsBlock, Button, ContextBlock, KnownBlock, MrkdwnElement, PlainTextElement, SectionBlock } from '@slack/types';
import type { Message } from './message.js';
import { LIMITS, clip, link, mention, scrub, summarizeLines, untrusted, untrustedPlain, withoutBroadcasts } from './message.js';
import { TERMINAL, type FovFailure, type Progress, type RunManifest, type RunStatus } from '../run/manifest.js';
import type { ResultsSummary } from '../run/results.js';
import { actualCost, billedCost, duration, estimateText, moneyOn, recordedCompute } from '../run/cost.js';
import { formatRanges } from '../run/fov-ranges.js';
import { RETRY_FIXES } from '../run/failure-kind.js';

export const ACTIONS = { approve: 'approve_run', reject: 'reject_run', cancel: 'cancel_run', retry: 'retry_run' } as const;

const STATUS_LABEL: Record<RunStatus, string> = {
  planned: ':memo: Planned (dry run, nothing submitted)',
  'awaiting-approval': ':hourglass: Waiting for approval',
  rejected: ':no_entry: Rejected',
  expired: ':alarm_clock: Approval expired',
  submitting: ':rocket: Submitting',
  running: ':gear: Running',
  merging: ':twisted_rightwards_arrows: Merging results',
  succeeded: ':white_check_mark: Succeeded',
  'partially-failed': ':warning: Finished with failed FOVs',
  failed: ':x: Failed',
  cancelled: ':octagonal_sign: Cancelled',
};

const n = (x: number) => x.toLocaleString('en-US');
const plain = (text: string): PlainTextElement => ({ type: 'plain_text', text });
const md = (text: string): MrkdwnElement => ({ type: 'mrkdwn', text: withoutBroadcasts(text), verbatim: true });
/** A run id as shown: ours by construction, but read back from a manifest, so escaped like the rest. */
const id = (runId: string) => untrusted(runId, 40);
const section = (text: string): SectionBlock => ({ type: 'section', text: md(clip(text, LIMITS.sectionText)) });
const context = (...texts: string[]): ContextBlock => ({ type: 'context', elements: texts.slice(0, LIMITS.contextElements).map((t) => md(clip(t, LIMITS.sectionText))) });

function button(text: string, action: string, value: string, style?: Button['style']): Button {
  return { type: 'button', text: plain(text), action_id: action, value, ...(style ? { style } : {}) };
}

/** process-fov's reasons start "process-fov: FOV 17: …"; the message names the FOV already. */
export function reasonWithoutFov(f: Pick<FovFailure, 'fov' | 'reason'>): string {
  return f.reason.replace(/^process-fov: /, '').replace(new RegExp(`^FOV ${f.fov}: `), '');
}

function progressBar(p: Progress, width = 20): string {
  const done = p.succeeded + p.failed;
  const ratio = p.total === 0 ? 0 : done / p.total;
  const filled = Math.min(width, Math.round(ratio * width));
  return `${'█'.repeat(filled)}${'░'.repeat(width - filled)} ${Math.floor(ratio * 100)}%`;
}

/** "3 succeeded · 1 failed of 4 FOVs": a count of ended FOVs read as if all had succeeded. */
export function progressLine(m: RunManifest): string {
  const p = m.progress;
  const ended = [`${n(p.succeeded)} succeeded`];
  if (p.failed) ended.push(`${n(p.failed)} failed`);
  const parts = [`${ended.join(' · ')} of ${n(p.total)} FOVs`];
  if (p.running) parts.push(`${n(p.running)} running`);
  if (p.waiting) parts.push(`${n(p.waiting)} waiting`);
  const left = eta(m);
  if (left) parts.push(left);
  return `${progressBar(p)}  ${parts.join(' · ')}`;
}

/**
 * "≈ 12 min left at 40 FOVs/min": the FOVs still to end at the rate observed so far, counted
 * from the round's first ended FOV (container start-up is not a rate), else from its submission,
 * up to the manifest's last update (when this progress was read).
 */
const ETA_MIN_MINUTES = 0.5;

function eta(m: RunManifest): string | undefined {
  const p = m.progress;
  const ended = p.succeeded + p.failed;
  const left = p.total - ended;
  if (TERMINAL.has(m.status) || ended === 0 || left <= 0) return undefined;
  const since = p.firstEndedAt ?? m.submissions.at(-1)?.submittedAt;
  const counted = p.firstEndedAt ? ended - 1 : ended;
  const minutes = since ? (Date.parse(m.updatedAt) - Date.parse(since)) / 60_000 : NaN;
  // A rate over less than half a minute is noise ("≈ 0 s left at 30,000 FOVs/min"): none yet.
  if (!(minutes >= ETA_MIN_MINUTES) || counted <= 0) return undefined;
  const perMinute = counted / minutes;
  // A slow run's rate keeps one significant digit rather than reading "0.0 FOVs/min".
  const rate = perMinute >= 10 ? n(Math.round(perMinute)) : perMinute >= 0.1 ? perMinute.toFixed(1) : perMinute.toPrecision(1);
  return `≈ ${duration((left / perMinute) * 60)} left at ${rate} FOVs/min`;
}

/** Header text is plain_text: Slack parses no markup in it, so it is scrubbed and cut, not escaped. */
function title(m: RunManifest): string {
  return clip(`starfish run ${untrustedPlain(m.runId, 40)}${m.request.name ? ` · ${untrustedPlain(m.request.name, 80)}` : ''}`, LIMITS.headerText);
}

function requestFields(m: RunManifest): string {
  return [
    `*Experiment* ${untrusted(m.request.experiment, 1000)}`,
    `*Recipe* ${untrusted(m.request.recipe ?? m.inputs.recipe, 1000)} (copied at launch: retries run this copy)`,
    `*FOVs* ${n(m.plan.fovCount)} of ${n(m.plan.experimentFovCount)} (${untrusted(m.plan.fovs || 'none', 300)}) in ${m.plan.units.length} ${m.plan.units.length === 1 ? 'job' : 'jobs'}`,
    `*Queue* ${untrusted(m.queue, 64)} · *Requested by* ${mention(m.requester.userId)}`,
    ...(m.estimate ? [`*Estimate* ${estimateText({ fovs: m.plan.fovCount, ...m.estimate })}`] : []),
  ].join('\n');
}

const decider = (userId: string | undefined) => (userId ? mention(userId) : 'someone');
const when = (time: string | undefined) => untrusted(time ?? 'an unknown time', 40);

function decisionLine(m: RunManifest): string | undefined {
  const a = m.approval;
  // A dry run is asked for to learn what the real one would take, approval included.
  if (m.status === 'planned') {
    return a.reasons.length ? `Without dry-run this run would need approval: ${a.reasons.map((r) => untrusted(r, 300)).join('; ')}.` : 'Without dry-run this run would start at once: the policy needs no approval for it.';
  }
  if (!a.required) return undefined;
  if (a.decision === 'approved') return `Approved by ${decider(a.decidedBy)} at ${when(a.decidedAt)}`;
  if (a.decision === 'rejected') return `Rejected by ${decider(a.decidedBy)} at ${when(a.decidedAt)}${a.reason ? `: “${untrusted(a.reason, 300)}”` : ''}`;
  if (a.decision === 'expired') return `Approval expired at ${when(a.decidedAt)}`;
  return `Needs approval: ${a.reasons.map((r) => untrusted(r, 300)).join('; ')}. Expires ${when(a.expiresAt)}.`;
}

/**
 * The lifecycle (src/lifecycle/decide.ts) writes statusReason: its own sentences, which name
 * the person who cancelled or retried, and failure reasons that quote what a job or AWS said.
 * Only those two sentences of its own keep their mention; anything else is shown escaped, so a
 * job's `<@U0ADMIN>` or `<!channel>` does nothing.
 */
const OWN_REASONS = [/^(cancelled by )<@([A-Za-z0-9._-]{1,64})>$/, /^(retry \d+: \d+ FOVs? rerun at the request of )<@([A-Za-z0-9._-]{1,64})>$/];

function statusReasonText(reason: string): string {
  for (const form of OWN_REASONS) {
    const own = form.exec(reason);
    if (own) return `${own[1]}${mention(own[2]!)}`;
  }
  return untrusted(reason, 500);
}

/** What can be done to the run now, as buttons: approve or reject it, cancel it, retry its failed FOVs. */
export function runActions(m: RunManifest): ActionsBlock | undefined {
  if (m.status === 'awaiting-approval') {
    return {
      type: 'actions',
      block_id: `approval:${m.runId}`,
      elements: [button('Approve', ACTIONS.approve, m.runId, 'primary'), button('Reject', ACTIONS.reject, m.runId, 'danger')],
    };
  }
  if (m.status === 'running' || m.status === 'submitting' || m.status === 'merging') {
    const cancel = button('Cancel run', ACTIONS.cancel, m.runId, 'danger');
    cancel.confirm = {
      title: plain('Cancel this run?'),
      text: md(`This terminates every job of run ${id(m.runId)}.`),
      confirm: plain('Cancel run'),
      deny: plain('Keep running'),
    };
    return { type: 'actions', block_id: `run:${m.runId}`, elements: [cancel] };
  }
  if ((m.status === 'partially-failed' || m.status === 'failed') && m.submissions.length) {
    // What `/starfish retry` does, one click away: the failed FOVs again, with the recipe copy.
    const retry = button('Retry failed FOVs', ACTIONS.retry, m.runId, 'primary');
    retry.confirm = {
      title: plain('Retry the failed FOVs?'),
      text: md(`This reruns the failed FOVs of run ${id(m.runId)} with the recipe as it was at launch, then merges again. A recipe or data error fails the same way: see the advice in the thread.`),
      confirm: plain('Retry'),
      deny: plain('Not now'),
    };
    return { type: 'actions', block_id: `retry:${m.runId}`, elements: [retry] };
  }
  return undefined;
}

/** The run's one root message: request, plan, live progress, status and its buttons. */
export function rootMessage(m: RunManifest): Message {
  const status = `${STATUS_LABEL[m.status]}${m.statusReason ? ` — ${statusReasonText(m.statusReason)}` : ''}`;
  const blocks: KnownBlock[] = [{ type: 'header', text: plain(title(m)) }, section(requestFields(m))];
  const decision = decisionLine(m);
  if (decision) blocks.push(context(decision));
  if (m.submissions.length) blocks.push(section(`\`${progressLine(m)}\``));
  if (m.results) blocks.push(context(`Results: ${n(m.results.spotsTotal)} spots from ${n(m.results.fovsProcessed)}/${n(m.plan.fovCount)} FOVs${m.results.fovsMissing.length ? ` (${n(m.results.fovsMissing.length)} missing)` : ''}`));
  blocks.push(section(`*Status* ${status}`));
  const actions = runActions(m);
  if (actions) blocks.push(actions);
  blocks.push(context(`run id \`${id(m.runId)}\` · /starfish status ${id(m.runId)}`));
  const text = `starfish run ${id(m.runId)}: ${STATUS_LABEL[m.status].replace(/^:[a-z_]+: /, '')}${m.submissions.length ? ` — ${progressLine(m)}` : ''}`;
  return { text: clip(text, LIMITS.fallbackText), blocks };
}

/**
 * One digest of newly failed FOVs, posted in the run's thread. Long digests are split over
 * several sections (3,000 characters each, 50 blocks a message) so that every FOV is named;
 * only past that does it point to /starfish status.
 */
export function failureDigest(m: RunManifest, failures: FovFailure[], totalFailed: number): Message {
  const runId = m.runId;
  const lines = failures.map((f) => `• FOV ${f.fov}${f.logLink ? ` ${link(f.logLink, 'log')}` : ''} — ${untrusted(reasonWithoutFov(f), 160)}`);
  const head = `:warning: ${failures.length} FOV${failures.length === 1 ? '' : 's'} failed${totalFailed > failures.length ? ` (${totalFailed} in all so far)` : ''}`;
  const blocks: KnownBlock[] = [section(`*${head}* in run ${id(runId)}`)];
  const sections = chunkLines(lines, LIMITS.sectionText, LIMITS.blocksPerMessage - 3);
  for (const text of sections.chunks) blocks.push(section(text));
  if (sections.left) blocks.push(context(`…and ${sections.left} more failed FOVs: \`/starfish status ${id(runId)}\` lists them all.`));
  blocks.push(context(...failureAdvice(m, failures)));
  return {
    text: clip(`${head} in run ${id(runId)}: FOV ${formatRanges(failures.map((f) => f.fov))}`, LIMITS.fallbackText),
    blocks,
  };
}

/**
 * What to do about failed FOVs, by the kind of failure the executor reported: a retry runs the
 * same recipe on the same data and queue, so it is offered only for what it can fix.
 */
export function failureAdvice(m: RunManifest, failures: ReadonlyArray<Pick<FovFailure, 'fov' | 'kind'>>): string[] {
  const fovs = (kind: (k: NonNullable<FovFailure['kind']>) => boolean) => formatRanges(failures.filter((f) => kind(f.kind ?? 'unknown')).map((f) => f.fov));
  const experiment = untrusted(m.request.experiment, 300);
  const advice: string[] = [];
  const recipe = fovs((k) => k === 'recipe');
  if (recipe) {
    const list = clip(recipe, 300);
    advice.push(`FOV ${list}: the recipe or the data failed (the reason says which), so a plain retry fails the same way. Fixed the recipe? \`/starfish run ${experiment} fovs=${list} recipe=…\` Fixed the data in place? \`/starfish retry ${id(m.runId)}\``);
  }
  const memory = fovs((k) => k === 'memory');
  if (memory) advice.push(`FOV ${clip(memory, 300)}: out of memory; run them on a queue with more memory: \`/starfish run ${experiment} fovs=${clip(memory, 300)} queue=…\``);
  const retryable = fovs((k) => RETRY_FIXES.has(k));
  if (retryable) {
    const all = !recipe && !memory;
    advice.push(`FOV ${clip(retryable, 300)}: ${all ? '' : 'interrupted, reclaimed or timed out; '}\`/starfish retry ${id(m.runId)}\` reruns ${all ? 'them' : `every failed FOV of the run, these included`}.`);
  }
  return advice;
}

/** Packs whole lines into at most `maxChunks` texts of at most `size` characters. */
function chunkLines(lines: string[], size: number, maxChunks: number): { chunks: string[]; left: number } {
  const chunks: string[] = [];
  let current = '';
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (current && current.length + 1 + line.length > size) {
      chunks.push(current);
      current = '';
      if (chunks.length === maxChunks) return { chunks, left: lines.length - i };
    }
    current = current ? `${current}\n${line}` : line;
  }
  if (current) chunks.push(current);
  return { chunks, left: 0 };
}

export interface ResultLinks {
  spotsCsv: { url: string; download: string };
  summaryJson: { url: string; download: string };
  spotsPng: { url: string; download: string };
  /**
   * False when the merge wrote no spots.png (a run of more than PANEL_FOVS FOVs gets overview.png,
   * in `more`, alone): then it is not linked. Absent: linked, as before the merge skipped it.
   */
  spotsPngWritten?: boolean;
  /** The result files a newer merge also writes (the gene × FOV matrix, the FOV quality table, the overview), those present. */
  more?: Array<{ name: string; url: string; download: string }>;
}

/** The failures behind missing FOVs; a FOV missing without a reported failure is advised as unknown. */
function missingFailures(m: RunManifest, missing: readonly number[]): Array<Pick<FovFailure, 'fov' | 'kind'>> {
  const latest = new Map(m.failures.map((f) => [f.fov, f.kind]));
  return missing.map((fov) => ({ fov, kind: latest.get(fov) }));
}

export function resultsMessage(m: RunManifest, summary: ResultsSummary, links: ResultLinks): Message {
  const genes = Object.entries(summary.counts_per_gene)
    .sort((a, b) => b[1] - a[1])
    .map(([gene, count]) => `${untrusted(gene, 80)} ${n(count)}`);
  const missing = summary.fovs_missing.length
    ? `\n:warning: ${summary.fovs_missing.length} FOV${summary.fovs_missing.length === 1 ? '' : 's'} missing from the results: ${clip(formatRanges(summary.fovs_missing), 2400)}\n${failureAdvice(m, missingFailures(m, summary.fovs_missing)).join('\n')}`
    : '';
  const head = `:tada: Results of run ${id(m.runId)}: ${n(summary.spots_total)} spots from ${n(summary.fovs_processed)}/${n(summary.fovs_expected)} FOVs`;
  return {
    text: head,
    blocks: [
      section(`*${head}*${missing}`),
      ...costSection(m, summary),
      ...recipeSection(m, summary),
      section(`*Spots per gene*\n${summarizeLines(genes.map((g) => `• ${g}`), 1500, 'more genes (see summary.json)')}`),
      // One section a file: a presigned URL with a session token is ~1,600 characters.
      section('*Files*'),
      section(fileLine('spots.csv', links.spotsCsv)),
      section(fileLine('summary.json', links.summaryJson)),
      ...(links.spotsPngWritten === false ? [] : [section(fileLine('spots.png', links.spotsPng))]),
      ...(links.more ?? []).map((file) => section(fileLine(file.name, file))),
    ],
  };
}

/**
 * What the run took and cost, saying which is measured and which is modeled: the FOVs' time is
 * what the jobs recorded (summary.json "compute"), the duration is the run's own timestamps, the
 * start-up per container and the price are the model the run was estimated with.
 */
function costSection(m: RunManifest, summary: ResultsSummary): SectionBlock[] {
  const lines: string[] = [];
  const started = m.submissions[0]?.submittedAt;
  const took = started ? (Date.parse(m.updatedAt) - Date.parse(started)) / 1000 : NaN;
  if (took >= 0) lines.push(`*Duration* ${duration(took)} from submission to results (measured)`);
  lines.push(...computeLines(summary));
  const cost = costLine(m, summary);
  if (cost) lines.push(cost);
  return lines.length ? [section(lines.join('\n'))] : [];
}

/**
 * Which recipe made the results: the start of the sha256 the launcher took of the recipe copy
 * the jobs ran (runs/<id>/inputs), and the settings it declares (its PARAMETERS, from summary.json).
 */
function recipeSection(m: RunManifest, summary: ResultsSummary): SectionBlock[] {
  // The hash is the launcher's (of the recipe copy the jobs ran); summary.json is written by a
  // job, so its parameters are shown only when it names that same recipe.
  const sha256 = m.inputs.recipeSha256;
  const r = summary.recipe;
  if (!sha256) return [];
  const head = `*Recipe* sha256 \`${untrusted(sha256.slice(0, 12), 12)}…\``;
  if (r && r.sha256 !== sha256) return [section(`${head} (summary.json names another recipe, \`${untrusted(r.sha256.slice(0, 12), 12)}…\`: its parameters are not shown)`)];
  const settings = Object.entries(r?.parameters ?? {}).map(([key, value]) => `• ${untrusted(key, 64)} = ${untrusted(String(value), 80)}`);
  if (!settings.length) return [section(head)];
  return [section(`${head}, with these parameters:\n${summarizeLines(settings, LIMITS.sectionText - 100, 'more parameters (see summary.json)')}`)];
}

/** What the jobs measured (summary.json "compute"), when they did. */
function computeLines(summary: ResultsSummary): string[] {
  const c = summary.compute;
  if (!c) return [];
  const memory = c.peak_rss_mib ? ` · peak memory per FOV median ${n(Math.round(c.peak_rss_mib.p50))} MiB, max ${n(Math.round(c.peak_rss_mib.max))} MiB` : '';
  const lines = [`*Compute* ${duration(c.wall_seconds)} of FOV work over ${n(c.fovs ?? summary.fovs_processed)} FOVs, ${duration(c.cpu_seconds)} of CPU (measured by the jobs)${memory}`];
  if (c.slowest?.length) lines.push(`*Slowest FOVs* ${c.slowest.map((s) => `FOV ${s.fov} ${duration(s.wall_seconds)}`).join(', ')}`);
  return lines;
}

/** The actual cost from the measured time and the modeled start-ups, beside the estimate; the estimate alone without timings. */
function costLine(m: RunManifest, summary: ResultsSummary): string | undefined {
  const e = m.estimate;
  if (!e) return undefined;
  if (e.price.platform === 'local') return '*Cost* no cloud cost: it ran on this machine';
  const ran = m.results?.containers;
  if (ran?.containers) {
    const billed = billedCost(e.price, ran);
    return `*Cost* ${moneyOn(e.price, billed.usd)}: ${n(ran.containers)} ${ran.containers === 1 ? 'container' : 'containers'} ran ${duration(ran.seconds)} in all (AWS Batch's start and stop of each, start-ups included), at the price the run was estimated with; estimated at launch ${moneyOn(e.price, e.usd)}`;
  }
  const compute = recordedCompute(summary);
  if (!compute) return `*Cost* estimated at launch ${moneyOn(e.price, e.usd)}; this run's jobs recorded no timings, so nothing was measured`;
  const actual = actualCost(e.price, compute, e.children);
  const starts = `${n(e.children)} container ${e.children === 1 ? 'start' : 'starts'} of ${duration(e.price.startupSeconds)}`;
  return `*Cost* ${moneyOn(e.price, actual.usd)}: the measured FOV time plus ${starts} (modeled), at the price the run was estimated with; estimated at launch ${moneyOn(e.price, e.usd)}`;
}

const fileLine = (name: string, file: { url: string; download: string }) => `• ${name} — \`${untrusted(file.url, 1000)}\` · ${link(file.download, 'download')}`;

export function failedRunMessage(runId: string, reason: string, logLink?: string): Message {
  const text = `:x: Run ${id(runId)} failed: ${untrusted(reason, 500)}`;
  return { text, blocks: [section(`${text}${logLink ? ` — ${link(logLink, 'log')}` : ''}`)] };
}

/**
 * A notice composed by its caller, in mrkdwn: whoever puts untrusted text in it escapes that
 * piece (escapeMrkdwn). Here it is only scrubbed of control characters and kept from notifying
 * a whole channel (withoutBroadcasts).
 */
export function noticeMessage(text: string): Message {
  const clean = scrub(text, true);
  return { text: clip(withoutBroadcasts(clean), LIMITS.fallbackText), blocks: [section(clean)] };
}

export function errorMessage(text: string): Message {
  return { ...noticeMessage(`:warning: ${text}`), refusal: true };
}

export function statusMessage(m: RunManifest): Message {
  const root = rootMessage(m);
  const failures = m.failures.filter((f) => f.round === (m.submissions.at(-1)?.round ?? 0));
  const blocks = root.blocks.filter((b) => b.type !== 'actions');
  if (failures.length) {
    blocks.push(section(`*Failed FOVs*\n${summarizeLines(failures.map((f) => `• FOV ${f.fov}: ${untrusted(reasonWithoutFov(f), 200)}${f.logLink ? ` — ${link(f.logLink, 'log')}` : ''}`), LIMITS.sectionText, 'more')}`));
  }
  if (m.results) blocks.push(section(`*Results* ${n(m.results.spotsTotal)} spots · ${untrusted(m.inputs.output, 1000)}/results/`));
  return { text: root.text, blocks };
}

/** One run in a line: id, name, state, FOVs, who, when. */
export function runLine(m: RunManifest): string {
  return `\`${id(m.runId)}\`${m.request.name ? ` ${untrusted(m.request.name, 64)}` : ''} — ${STATUS_LABEL[m.status]} — ${n(m.plan.fovCount)} FOVs — ${mention(m.requester.userId)} — ${untrusted(m.createdAt.slice(0, 16).replace('T', ' '), 16)}`;
}

export function listMessage(manifests: RunManifest[]): Message {
  if (!manifests.length) return noticeMessage('No runs yet. Start one with `/starfish run &lt;experiment.json&gt;`.');
  const lines = manifests.map((m) => `• ${runLine(m)}`);
  return { text: `${manifests.length} recent runs`, blocks: [section(`*Recent runs*\n${summarizeLines(lines, LIMITS.sectionText, 'older runs')}`)] };
}
