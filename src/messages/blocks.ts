/**
 * Block Kit builders: pure functions from run state to messages. The console renders the same
 * messages as text (./text.ts), so what a lab sees locally is what Slack shows.
 */
import type { Button, ContextBlock, KnownBlock, MrkdwnElement, PlainTextElement, SectionBlock } from '@slack/types';
import type { Message } from './message.js';
import { LIMITS, clip, escapeMrkdwn as esc, summarizeLines } from './message.js';
import type { FovFailure, Progress, RunManifest, RunStatus } from '../run/manifest.js';
import type { ResultsSummary } from '../run/results.js';
import { formatRanges } from '../run/fov-ranges.js';

export const ACTIONS = { approve: 'approve_run', reject: 'reject_run', cancel: 'cancel_run' } as const;

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
const md = (text: string): MrkdwnElement => ({ type: 'mrkdwn', text });
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

function progressLine(p: Progress): string {
  const parts = [`${n(p.succeeded + p.failed)}/${n(p.total)} FOVs done`];
  if (p.failed) parts.push(`${n(p.failed)} failed`);
  if (p.running) parts.push(`${n(p.running)} running`);
  if (p.waiting) parts.push(`${n(p.waiting)} waiting`);
  return `${progressBar(p)}  ${parts.join(' · ')}`;
}

function title(m: RunManifest): string {
  return clip(`starfish run ${m.runId}${m.request.name ? ` · ${m.request.name}` : ''}`, LIMITS.headerText);
}

function requestFields(m: RunManifest): string {
  return [
    `*Experiment* ${esc(m.request.experiment)}`,
    `*Recipe* ${esc(m.request.recipe ?? m.inputs.recipe)} (copied at launch: retries run this copy)`,
    `*FOVs* ${n(m.plan.fovCount)} of ${n(m.plan.experimentFovCount)} (${m.plan.fovs || 'none'}) in ${m.plan.units.length} ${m.plan.units.length === 1 ? 'job' : 'jobs'}`,
    `*Queue* ${m.queue} · *Requested by* <@${m.requester.userId}>`,
  ].join('\n');
}

function decisionLine(m: RunManifest): string | undefined {
  const a = m.approval;
  if (!a.required) return undefined;
  if (a.decision === 'approved') return `Approved by <@${a.decidedBy}> at ${a.decidedAt}`;
  if (a.decision === 'rejected') return `Rejected by <@${a.decidedBy}> at ${a.decidedAt}`;
  if (a.decision === 'expired') return `Approval expired at ${a.decidedAt}`;
  return `Needs approval: ${a.reasons.join('; ')}. Expires ${a.expiresAt}.`;
}

/** The run's one root message: request, plan, live progress, status and its buttons. */
export function rootMessage(m: RunManifest): Message {
  const status = `${STATUS_LABEL[m.status]}${m.statusReason ? ` — ${m.statusReason}` : ''}`; // statusReason is ours, may hold <@user>
  const blocks: KnownBlock[] = [{ type: 'header', text: plain(title(m)) }, section(requestFields(m))];
  const decision = decisionLine(m);
  if (decision) blocks.push(context(decision));
  if (m.submissions.length) blocks.push(section(`\`${progressLine(m.progress)}\``));
  if (m.results) blocks.push(context(`Results: ${n(m.results.spotsTotal)} spots from ${n(m.results.fovsProcessed)}/${n(m.plan.fovCount)} FOVs${m.results.fovsMissing.length ? ` (${n(m.results.fovsMissing.length)} missing)` : ''}`));
  blocks.push(section(`*Status* ${status}`));
  if (m.status === 'awaiting-approval') {
    blocks.push({
      type: 'actions',
      block_id: `approval:${m.runId}`,
      elements: [button('Approve', ACTIONS.approve, m.runId, 'primary'), button('Reject', ACTIONS.reject, m.runId, 'danger')],
    });
  } else if (m.status === 'running' || m.status === 'submitting' || m.status === 'merging') {
    const cancel = button('Cancel run', ACTIONS.cancel, m.runId, 'danger');
    cancel.confirm = {
      title: plain('Cancel this run?'),
      text: md(`This terminates every job of run ${m.runId}.`),
      confirm: plain('Cancel run'),
      deny: plain('Keep running'),
    };
    blocks.push({ type: 'actions', block_id: `run:${m.runId}`, elements: [cancel] });
  }
  blocks.push(context(`run id \`${m.runId}\` · /starfish status ${m.runId}`));
  const text = `starfish run ${m.runId}: ${STATUS_LABEL[m.status].replace(/^:[a-z_]+: /, '')}${m.submissions.length ? ` — ${progressLine(m.progress)}` : ''}`;
  return { text: clip(text, LIMITS.fallbackText), blocks };
}

/**
 * One digest of newly failed FOVs, posted in the run's thread. Long digests are split over
 * several sections (3,000 characters each, 50 blocks a message) so that every FOV is named;
 * only past that does it point to /starfish status.
 */
export function failureDigest(runId: string, failures: FovFailure[], totalFailed: number): Message {
  const lines = failures.map((f) => `• FOV ${f.fov}${f.logLink ? ` <${f.logLink}|log>` : ''} — ${esc(clip(reasonWithoutFov(f), 160))}`);
  const head = `:warning: ${failures.length} FOV${failures.length === 1 ? '' : 's'} failed${totalFailed > failures.length ? ` (${totalFailed} in all so far)` : ''}`;
  const blocks: KnownBlock[] = [section(`*${head}* in run ${runId}`)];
  const sections = chunkLines(lines, LIMITS.sectionText, LIMITS.blocksPerMessage - 2);
  for (const text of sections.chunks) blocks.push(section(text));
  if (sections.left) blocks.push(context(`…and ${sections.left} more failed FOVs: \`/starfish status ${runId}\` lists them all.`));
  return {
    text: clip(`${head} in run ${runId}: FOV ${formatRanges(failures.map((f) => f.fov))}`, LIMITS.fallbackText),
    blocks,
  };
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
}

export function resultsMessage(m: RunManifest, summary: ResultsSummary, links: ResultLinks): Message {
  const genes = Object.entries(summary.counts_per_gene)
    .sort((a, b) => b[1] - a[1])
    .map(([gene, count]) => `${gene} ${n(count)}`);
  const missing = summary.fovs_missing.length
    ? `\n:warning: ${summary.fovs_missing.length} FOV${summary.fovs_missing.length === 1 ? '' : 's'} missing from the results: ${clip(formatRanges(summary.fovs_missing), 2400)} — \`/starfish retry ${m.runId}\` reruns them.`
    : '';
  const head = `:tada: Results of run ${m.runId}: ${n(summary.spots_total)} spots from ${n(summary.fovs_processed)}/${n(summary.fovs_expected)} FOVs`;
  return {
    text: head,
    blocks: [
      section(`*${head}*${missing}`),
      section(`*Spots per gene*\n${summarizeLines(genes.map((g) => `• ${g}`), 1500, 'more genes (see summary.json)')}`),
      // One section a file: a presigned URL with a session token is ~1,600 characters.
      section('*Files*'),
      section(`• spots.csv — \`${links.spotsCsv.url}\` · <${links.spotsCsv.download}|download>`),
      section(`• summary.json — \`${links.summaryJson.url}\` · <${links.summaryJson.download}|download>`),
      section(`• spots.png — \`${links.spotsPng.url}\` · <${links.spotsPng.download}|download>`),
    ],
  };
}

export function failedRunMessage(runId: string, reason: string, logLink?: string): Message {
  const text = `:x: Run ${runId} failed: ${esc(reason)}`;
  return { text, blocks: [section(`${text}${logLink ? ` — <${logLink}|log>` : ''}`)] };
}

export function noticeMessage(text: string): Message {
  return { text: clip(text, LIMITS.fallbackText), blocks: [section(text)] };
}

export function errorMessage(text: string): Message {
  return { ...noticeMessage(`:warning: ${text}`), refusal: true };
}

export function statusMessage(m: RunManifest): Message {
  const root = rootMessage(m);
  const failures = m.failures.filter((f) => f.round === (m.submissions.at(-1)?.round ?? 0));
  const blocks = root.blocks.filter((b) => b.type !== 'actions');
  if (failures.length) {
    blocks.push(section(`*Failed FOVs*\n${summarizeLines(failures.map((f) => `• FOV ${f.fov}: ${esc(clip(reasonWithoutFov(f), 200))}${f.logLink ? ` — <${f.logLink}|log>` : ''}`), LIMITS.sectionText, 'more')}`));
  }
  if (m.results) blocks.push(section(`*Results* ${n(m.results.spotsTotal)} spots · ${m.inputs.output}/results/`));
  return { text: root.text, blocks };
}

export function listMessage(manifests: RunManifest[]): Message {
  if (!manifests.length) return noticeMessage('No runs yet. Start one with `/starfish run &lt;experiment.json&gt;`.');
  const lines = manifests.map(
    (m) =>
      `• \`${m.runId}\`${m.request.name ? ` ${m.request.name}` : ''} — ${STATUS_LABEL[m.status]} — ${n(m.plan.fovCount)} FOVs — <@${m.requester.userId}> — ${m.createdAt.slice(0, 16).replace('T', ' ')}`,
  );
  return { text: `${manifests.length} recent runs`, blocks: [section(`*Recent runs*\n${summarizeLines(lines, LIMITS.sectionText, 'older runs')}`)] };
}
