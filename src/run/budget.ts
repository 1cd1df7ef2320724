/**
 * The estimate a run is launched with, and what the policy says about its money: approval above
 * a cost threshold, and rolling budgets per requester and per channel (24 hours, 30 days),
 * charged with each run's estimate at launch and with its actual cost once its jobs' timings are
 * known. Pure: the launcher gives it the recent manifests and the clock.
 */
import type { RunEstimate, RunManifest } from './manifest.js';
import type { Policy } from './policy.js';
import type { PackingInput } from './plan.js';
import { actualCost, billedCost, dollars, DEFAULT_SECONDS_PER_FOV, estimateCost, parallelChildren, queuePrice, secondsPerFov } from './cost.js';

const DAY_MS = 24 * 3_600_000;
/** The longest budget window. */
const MONTH_MS = 30 * DAY_MS;
/** Without a monthly budget, a week of runs is enough history for seconds per FOV. */
const HISTORY_MS = 7 * DAY_MS;

/**
 * How far back the launcher reads runs (one read per run): 30 days when a monthly budget needs
 * them, else a week, the timing history of a recipe in use.
 */
export function historyWindowMs(policy: Policy): number {
  const b = policy.cost?.budgets;
  return b?.requester?.monthUsd !== undefined || b?.channel?.monthUsd !== undefined ? MONTH_MS : HISTORY_MS;
}

export interface EstimateInput {
  queue: string;
  fovCount: number;
  recipeSha256: string;
  /** FOVs per array child; 1 until the planner packs FOVs into chunks. */
  fovsPerChild?: number;
}

function recipeSecondsPerFov(policy: Policy, recent: readonly RunManifest[], sha256: string) {
  const past = recent.map((m) => ({ recipeSha256: m.inputs.recipeSha256, compute: m.results?.compute }));
  return secondsPerFov(past, sha256, policy.cost?.defaultSecondsPerFov ?? DEFAULT_SECONDS_PER_FOV);
}

/** The run's estimate: seconds per FOV from this lab's runs of the same recipe, else the default. */
export function estimateRun(policy: Policy, recent: readonly RunManifest[], input: EstimateInput): RunEstimate {
  const price = queuePrice(policy.cost, input.queue);
  const perFov = recipeSecondsPerFov(policy, recent, input.recipeSha256);
  const f = estimateCost(price, input.fovCount, perFov.seconds, input.fovsPerChild ?? 1);
  return {
    secondsPerFov: perFov.seconds,
    source: perFov.source,
    historyRuns: perFov.runs,
    fovsPerChild: f.fovsPerChild,
    children: f.children,
    billedSeconds: f.billedSeconds,
    vcpuHours: f.vcpuHours,
    usd: f.usd,
    wallSeconds: f.wallSeconds,
    parallel: f.parallel,
    price,
  };
}

/** A child runs at least this long by default, so that its start-up is a small part of it. */
const MIN_CHILD_SECONDS = 300;

/**
 * What the planner packs FOVs by: this recipe's seconds per FOV and the queue's start-up and
 * width; undefined when FOVs are not packed. Unless the lab says (cost.packFovs), they are packed
 * once this recipe's time per FOV has been measured on the lab's runs: packing from a guess could
 * give each child hours of work.
 */
export function packingInput(policy: Policy, recent: readonly RunManifest[], queue: string, sha256: string): PackingInput | undefined {
  const price = queuePrice(policy.cost, queue);
  const perFov = recipeSecondsPerFov(policy, recent, sha256);
  const pack = policy.cost?.packFovs ?? perFov.source === 'history';
  if (!pack) return undefined;
  return {
    secondsPerFov: perFov.seconds,
    startupSeconds: price.startupSeconds,
    parallelChildren: parallelChildren(price),
    minChildSeconds: policy.cost?.minChildSeconds ?? MIN_CHILD_SECONDS,
  };
}

/** What the run cost when its jobs' timings are known, else what it was estimated at. */
function chargeOf(m: RunManifest): number {
  if (!m.estimate) return 0;
  const ran = m.results?.containers;
  if (ran?.containers) return billedCost(m.estimate.price, ran).usd;
  const compute = m.results?.compute;
  return compute ? actualCost(m.estimate.price, compute, m.estimate.children).usd : m.estimate.usd;
}

/** Runs that spend money: not dry runs, not rejected or expired before anything ran. */
const charged = (m: RunManifest) => !m.request.dryRun && m.status !== 'rejected' && m.status !== 'expired' && m.status !== 'planned';

export interface Who {
  userId: string;
  channel: string;
}

export interface CostVerdict {
  /** Approval reasons with the numbers: the cost threshold, budgets when the lab asks for approval. */
  approval: string[];
  /** Set when a budget is exceeded and the lab refuses such runs. */
  refusal?: string;
  /** The exceeded budgets, with the numbers (spent, this run, budget). */
  over: string[];
}

/** The cost threshold and the budgets, for a run of `estimate` asked by `who` at `now`. */
export function costVerdict(policy: Policy, estimate: RunEstimate, recent: readonly RunManifest[], who: Who, now: number): CostVerdict {
  const cost = policy.cost;
  const approval: string[] = [];
  if (cost?.approvalAboveUsd !== undefined && estimate.usd > cost.approvalAboveUsd) {
    approval.push(`the estimated cost ${dollars(estimate.usd)} is above this lab's ${dollars(cost.approvalAboveUsd)} approval threshold`);
  }
  const over = overBudget(policy, estimate.usd, recent, who, now);
  if (over.length && cost?.budgets?.overBudget === 'refuse') {
    return { approval, over, refusal: `This run would go over budget: ${over.join('; ')}. Nothing was launched. Ask for fewer FOVs (e.g. first=100), wait for the budget to roll over, or ask a lab admin to raise it (policy cost.budgets).` };
  }
  return { approval: [...approval, ...over.map((o) => `over budget: ${o}`)], over };
}

/**
 * A retry reruns FOVs, so it spends money too: priced like the run (its seconds per FOV, queue and
 * packing at launch) for the FOVs it reruns, and checked against the budgets of whoever asks for
 * it. Over budget, only an approver or a lab admin may retry (the budget's "approval"), whatever
 * the lab does with new runs. Undefined when the retry may go ahead.
 */
export function retryBudgetRefusal(policy: Policy, m: RunManifest, fovCount: number, recent: readonly RunManifest[], who: Who & { trusted: boolean }, now: number): string | undefined {
  if (!m.estimate || who.trusted || !policy.cost?.budgets) return undefined;
  const usd = estimateCost(m.estimate.price, fovCount, m.estimate.secondsPerFov, m.estimate.fovsPerChild).usd;
  const over = overBudget(policy, usd, recent, who, now, 'this retry');
  if (!over.length) return undefined;
  return `Retrying run ${m.runId} would go over budget: ${over.join('; ')}. Nothing was rerun. An approver or a lab admin may retry it (/starfish retry ${m.runId}), or retry once the budget has rolled over.`;
}

/** One line per exceeded budget: "<@U1>'s 24-hour budget: $8.00 spent + $3.00 this run = $11.00, above $10.00". */
function overBudget(policy: Policy, thisRun: number, recent: readonly RunManifest[], who: Who, now: number, what = 'this run'): string[] {
  const budgets = policy.cost?.budgets;
  if (!budgets) return [];
  const scopes = [
    { name: `<@${who.userId}>'s`, limits: budgets.requester, mine: (m: RunManifest) => m.requester.userId === who.userId },
    { name: `<#${who.channel}>'s`, limits: budgets.channel, mine: (m: RunManifest) => m.requester.channel === who.channel },
  ];
  const windows = [
    { label: '24-hour', ms: DAY_MS, limit: (b: NonNullable<typeof budgets.requester>) => b.dayUsd },
    { label: '30-day', ms: MONTH_MS, limit: (b: NonNullable<typeof budgets.requester>) => b.monthUsd },
  ];
  const lines: string[] = [];
  for (const scope of scopes) {
    for (const window of windows) {
      const limit = scope.limits && window.limit(scope.limits);
      if (limit === undefined) continue;
      const spent = recent.filter((m) => charged(m) && scope.mine(m) && Date.parse(m.createdAt) >= now - window.ms).reduce((sum, m) => sum + chargeOf(m), 0);
      if (spent + thisRun > limit) {
        lines.push(`${scope.name} ${window.label} budget: ${dollars(spent)} spent + ${dollars(thisRun)} ${what} = ${dollars(spent + thisRun)}, above ${dollars(limit)}`);
      }
    }
  }
  return lines;
}
