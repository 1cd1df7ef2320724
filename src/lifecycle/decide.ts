/**
 * A run's decisions as one pure function: (manifest, fact, clock) → (next manifest, effects).
 * Every rule about a run lives here; the workers only read, call this, compare-and-swap the
 * result and perform the effects. Chat effects are claimed in the next manifest (a flag, a key,
 * a timestamp) so that whoever stores it first is the only one who sends; `giveBack` returns a
 * claim whose effect failed.
 */
import { TERMINAL, type RunManifest, type RunStatus } from '../run/manifest.js';
import { formatRanges, expandRanges } from '../run/fov-ranges.js';
import type { DecideContext, Decision, Effect, Fact } from './types.js';
import { escapeMrkdwn } from '../messages/message.js';
import { observeBatch } from './observe.js';

const none: Decision = { next: undefined, effects: [] };
const plural = (n: number) => (n === 1 ? '' : 's');

export function decide(m: RunManifest, fact: Fact, ctx: DecideContext): Decision {
  switch (fact.type) {
    case 'batch':
      return observeBatch(m, fact, ctx);
    case 'decision':
      return decideApproval(m, fact, ctx);
    case 'cancel':
      return cancel(m, fact.by);
    case 'retry':
      return retry(m, fact.by);
    case 'submitted':
      return recordSubmission(m, fact.submission);
    case 'submit-failed':
      return failSubmission(m, fact);
    case 'salvage-submitted':
      return recordSalvage(m, fact);
    case 'message-posted':
      return messagePosted(m, fact.ref);
    case 'post-failed':
      return postFailed(m, fact.reason);
    case 'delivered':
      return m.notify.deliveringSince === fact.since ? { next: { ...m, notify: { ...m.notify, deliveringSince: undefined } }, effects: [] } : none;
    case 'tick':
      return expire(m, ctx.now) ?? none;
  }
}

/** An approval request past its time becomes expired; undefined while it is still open. */
function expire(m: RunManifest, now: number): Decision | undefined {
  if (m.status !== 'awaiting-approval' || !m.approval.expiresAt || Date.parse(m.approval.expiresAt) > now) return undefined;
  const next: RunManifest = { ...m, status: 'expired', approval: { ...m.approval, decision: 'expired', decidedAt: new Date(now).toISOString() } };
  return { next, effects: [{ type: 'update-root' }] };
}

function decideApproval(m: RunManifest, fact: Extract<Fact, { type: 'decision' }>, ctx: DecideContext): Decision {
  const expired = expire(m, ctx.now);
  if (expired) return { ...expired, effects: [...expired.effects, answer(`The approval request for run ${m.runId} has expired. Start it again with /starfish run.`)] };
  if (m.status !== 'awaiting-approval') {
    const by = m.approval.decidedBy ? ` by <@${m.approval.decidedBy}>` : '';
    return { next: undefined, effects: [answer(`Run ${m.runId} is already ${m.approval.decision ?? m.status}${by}; nothing to do.`)] };
  }
  const approval = { ...m.approval, decision: fact.decision, decidedBy: fact.by, decidedAt: new Date(ctx.now).toISOString(), ...(fact.reason ? { reason: fact.reason } : {}) };
  // The requester hears of the decision where they look for their run: its thread, with a mention.
  const told = (text: string): Effect[] => (fact.by === m.requester.userId ? [] : [{ type: 'notice', text: `<@${m.requester.userId}>, ${text}` }]);
  if (fact.decision === 'rejected') {
    return {
      next: { ...m, status: 'rejected', approval },
      effects: [{ type: 'update-root' }, ...told(`run ${m.runId} was rejected by <@${fact.by}>${fact.reason ? `: “${escapeMrkdwn(fact.reason)}”` : ''}; nothing was submitted.`), done(`You rejected run ${m.runId}.`)],
    };
  }
  const pendingSubmission = { round: 0, fovs: m.plan.fovs };
  // Submit first: a failing chat call must not leave an approved run without its jobs.
  return {
    next: { ...m, status: 'submitting', pendingSubmission, approval },
    effects: [
      { type: 'submit-round', ...pendingSubmission },
      ...told(`run ${m.runId} was approved by <@${fact.by}>; its jobs are being submitted.`),
      done(`You approved run ${m.runId}; its jobs are being submitted.`),
    ],
  };
}

/** Every job of every round, including a salvage merge. */
function jobsOf(m: RunManifest): string[] {
  return m.submissions.flatMap((s) => [...s.arrays.map((a) => a.jobId), ...(s.merge ? [s.merge.jobId] : []), ...(s.salvageMerge ? [s.salvageMerge.jobId] : [])]);
}

function cancel(m: RunManifest, by: string): Decision {
  const terminate = (reason: string): Effect => ({ type: 'terminate', jobIds: jobsOf(m), reason, ...(m.pendingSubmission ? { pendingRound: m.pendingSubmission.round } : {}) });
  if (m.status === 'cancelled') {
    // A TerminateJob that failed the first time is retried.
    return { next: undefined, effects: [terminate(`starfish: cancelled by ${by}`), answer(`Run ${m.runId} was already cancelled; its jobs have been terminated again to be sure.`)] };
  }
  if (TERMINAL.has(m.status)) return { next: undefined, effects: [answer(`Run ${m.runId} has already ended (${m.status}); there is nothing to cancel.`)] };
  const next: RunManifest = { ...m, status: 'cancelled', statusReason: `cancelled by <@${by}>`, progress: { ...m.progress, running: 0, waiting: 0 } };
  return {
    next,
    effects: [
      terminate(`starfish: cancelled by ${by}`),
      { type: 'update-root' },
      { type: 'notice', text: `:octagonal_sign: Run ${m.runId} cancelled by <@${by}>.` },
      done(`Run ${m.runId} is cancelled; its jobs are being terminated.`),
    ],
  };
}

/** The states a retry starts from: finished, with failures. */
export const RETRYABLE: ReadonlySet<RunStatus> = new Set(['partially-failed', 'failed']);

/**
 * The FOVs a retry reruns: what Batch reported failed in the last round, never what a job wrote;
 * a run that failed before any FOV ran (e.g. the merge itself failed) is retried whole.
 */
export function fovsToRetry(m: RunManifest): string {
  const lastRound = m.submissions.at(-1)?.round;
  const failed = m.failures.filter((f) => f.round === lastRound).map((f) => f.fov);
  return failed.length ? formatRanges(failed) : m.plan.fovs;
}

function retry(m: RunManifest, by: string): Decision {
  if (!RETRYABLE.has(m.status)) return { next: undefined, effects: [answer(`Run ${m.runId} is ${m.status}; retry reruns the failed FOVs of a run that has finished with failures.`)] };
  if (!m.submissions.length) {
    return { next: undefined, effects: [answer(`Run ${m.runId} never started (${escapeMrkdwn(m.statusReason ?? 'nothing was submitted')}); start a new run with /starfish run.`)] };
  }
  const fovs = fovsToRetry(m);
  const count = expandRanges(fovs).length;
  const round = (m.submissions.at(-1)?.round ?? -1) + 1;
  const next: RunManifest = {
    ...m,
    status: 'submitting',
    statusReason: `retry ${round}: ${count} FOV${plural(count)} rerun at the request of <@${by}>`,
    pendingSubmission: { round, fovs },
    notify: { ...m.notify, resultsPosted: false, stuckWarnedAt: undefined },
  };
  return {
    next,
    effects: [
      { type: 'submit-round', round, fovs },
      { type: 'notice', text: `:rocket: Retrying ${count} FOV${plural(count)} (${fovs}) of run ${m.runId}, requested by <@${by}>.` },
      done(`Retrying ${count} FOV${plural(count)} (${fovs}) of run ${m.runId}.`),
    ],
  };
}

function recordSubmission(m: RunManifest, submission: Extract<Fact, { type: 'submitted' }>['submission']): Decision {
  const jobIds = [...submission.arrays.map((a) => a.jobId), ...(submission.merge ? [submission.merge.jobId] : [])];
  // Cancelled while the jobs were being submitted: the cancel could not see them.
  if (m.status === 'cancelled') return { next: undefined, effects: [{ type: 'terminate', jobIds, reason: `starfish: run ${m.runId} was cancelled` }] };
  if (m.submissions.some((s) => s.round === submission.round)) return none;
  const total = expandRanges(submission.fovs).length;
  const next: RunManifest = {
    ...m,
    status: 'running',
    pendingSubmission: undefined,
    submissions: [...m.submissions, submission],
    progress: { total, succeeded: 0, failed: 0, running: 0, waiting: total },
  };
  return { next, effects: [{ type: 'update-root' }] };
}

function failSubmission(m: RunManifest, fact: Extract<Fact, { type: 'submit-failed' }>): Decision {
  const { reason, terminated, leftover } = fact;
  const cleanup = leftover
    ? `; terminating the jobs already submitted failed too (${leftover.error}): check ${leftover.jobIds.join(', ')}`
    : terminated
      ? `; the ${terminated} job(s) already submitted were terminated`
      : '';
  const next: RunManifest = {
    ...m,
    pendingSubmission: undefined,
    // The thread is told here; no later event may announce another ending.
    notify: { ...m.notify, resultsPosted: true },
    status: 'failed',
    statusReason: `could not submit the jobs (${reason})${cleanup}`,
  };
  const told = `Run ${m.runId} was not started: AWS Batch refused a job (${escapeMrkdwn(reason)})${leftover ? escapeMrkdwn(cleanup) : '. Nothing is left running.'}`;
  return { next, effects: [{ type: 'update-root' }, { type: 'notice', text: told, tone: 'error' }] };
}

function recordSalvage(m: RunManifest, fact: Extract<Fact, { type: 'salvage-submitted' }>): Decision {
  if (m.status === 'cancelled') return { next: undefined, effects: [{ type: 'terminate', jobIds: [fact.job.jobId], reason: `starfish: run ${m.runId} was cancelled` }] };
  const sub = m.submissions.find((s) => s.round === fact.round);
  if (!sub || sub.salvageMerge) return none;
  const submissions = m.submissions.map((s) => (s === sub ? { ...s, salvageMerge: fact.job } : s));
  return { next: { ...m, submissions, status: 'merging' }, effects: [] };
}

function messagePosted(m: RunManifest, ref: { channel: string; ts: string }): Decision {
  if (m.message) return none;
  const next = { ...m, message: ref };
  const pending = m.status === 'submitting' ? m.pendingSubmission : undefined;
  return { next, effects: pending ? [{ type: 'submit-round', ...pending }] : [] };
}

function postFailed(m: RunManifest, reason: string): Decision {
  // Typically not_in_channel: nothing was submitted, so the run ends here with how to fix it.
  const next: RunManifest = { ...m, status: 'failed', pendingSubmission: undefined, statusReason: `could not post the run's message in the channel (${reason})` };
  return {
    next,
    effects: [answer(`Run ${m.runId} was not started: I could not post its message in this channel (${escapeMrkdwn(reason)}). Invite me with \`/invite @starfish\` and run the command again.`)],
  };
}

const answer = (text: string): Effect => ({ type: 'answer', text, refusal: true });
const done = (text: string): Effect => ({ type: 'answer', text, refusal: false });
