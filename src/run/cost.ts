/**
 * The price model and the cost of a run: what a run will cost before it is launched (from the
 * history of the same recipe, else a default per FOV), and what it cost once its FOV jobs have
 * recorded their timings (summary.json's "compute").
 *
 * Prices live in code as defaults for us-east-1 (docs/aws.md names their source and date); a lab
 * overrides any field per queue in its policy (`cost.queues`), which stays small because the
 * policy travels in the Lambdas' 4 KB environment.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { ResultsSummary } from './results.js';

const PLATFORMS = ['fargate', 'fargate-spot', 'ec2', 'local'] as const;
type Platform = (typeof PLATFORMS)[number];

const PLATFORM_LABEL: Record<Platform, string> = { fargate: 'Fargate', 'fargate-spot': 'Fargate Spot', ec2: 'EC2', local: 'this machine' };

/** What one queue's FOV jobs take and cost. */
export const queuePriceSchema = z
  .object({
    platform: z.enum(PLATFORMS),
    /** vCPUs and memory of the queue's FOV job definition (infra/stack.ts). */
    vcpus: z.number().positive().max(192),
    memoryGiB: z.number().positive().max(1024),
    /** US dollars per vCPU-hour and per GB-hour of memory (EC2: the instance's price spread over what a job takes). */
    vcpuHourUsd: z.number().nonnegative().max(100),
    gbHourUsd: z.number().nonnegative().max(100),
    /** Billing is per second with this minimum per job (Fargate: 60 s). */
    minimumBilledSeconds: z.number().nonnegative().max(3600),
    /** Image pull and container start of one job, billed but doing no FOV work. */
    startupSeconds: z.number().nonnegative().max(3600),
    /** The most vCPUs the queue's compute environment runs at once (starfish:maxVcpus). */
    maxVcpus: z.number().int().positive().max(100_000),
  })
  .strict();
export type QueuePrice = z.infer<typeof queuePriceSchema>;

/**
 * Defaults for us-east-1, Linux x86, as listed on 2026-06 (docs/aws.md, "What a run costs"):
 * Fargate $0.04048 per vCPU-hour and $0.004445 per GB-hour, per second with a one-minute minimum
 * (aws.amazon.com/fargate/pricing); Fargate Spot varies, up to 70 % off, taken at 70 % off; the
 * highmem queue's r6i.4xlarge at $1.008 an hour for 128 GiB, spread over memory since a 60 GiB
 * job is what fills it (aws.amazon.com/ec2/pricing/on-demand). Job sizes and maxVcpus are
 * infra/stack.ts's defaults (starfish:fovJob, starfish:maxVcpus).
 */
export const DEFAULT_QUEUE_PRICES: Readonly<Record<string, QueuePrice>> = {
  spot: { platform: 'fargate-spot', vcpus: 1, memoryGiB: 4, vcpuHourUsd: 0.012144, gbHourUsd: 0.0013335, minimumBilledSeconds: 60, startupSeconds: 45, maxVcpus: 256 },
  ondemand: { platform: 'fargate', vcpus: 1, memoryGiB: 4, vcpuHourUsd: 0.04048, gbHourUsd: 0.004445, minimumBilledSeconds: 60, startupSeconds: 45, maxVcpus: 64 },
  highmem: { platform: 'ec2', vcpus: 4, memoryGiB: 60, vcpuHourUsd: 0, gbHourUsd: 0.007875, minimumBilledSeconds: 60, startupSeconds: 30, maxVcpus: 64 },
  local: { platform: 'local', vcpus: 1, memoryGiB: 1, vcpuHourUsd: 0, gbHourUsd: 0, minimumBilledSeconds: 0, startupSeconds: 1, maxVcpus: 4 },
};

/** Seconds per FOV when this recipe has no finished run with timings yet. */
export const DEFAULT_SECONDS_PER_FOV = 60;

const usd = z.number().nonnegative().max(1_000_000);
const budgetSchema = z.object({ dayUsd: usd.optional(), monthUsd: usd.optional() }).strict();

/** The policy's `cost` section: overrides and limits; every field optional. */
export const costPolicySchema = z
  .object({
    queues: z.record(z.string(), queuePriceSchema.partial()).optional(),
    defaultSecondsPerFov: z.number().positive().max(86_400).optional(),
    /**
     * Pack several FOVs into each array child (one container start for many FOVs): true from the
     * estimate, whatever it rests on; false never; unset (the default) once this recipe's time
     * per FOV has been measured on the lab's runs (docs/aws.md).
     */
    packFovs: z.boolean().optional(),
    /** FOVs are packed so that an array child runs at least this long (default 300 s); 0 packs only to keep start-up under a tenth. */
    minChildSeconds: z.number().nonnegative().max(86_400).optional(),
    /** Runs estimated above this many dollars need approval. */
    approvalAboveUsd: usd.optional(),
    /** Rolling budgets (24 hours, 30 days), charged with estimates at launch and actuals when known. */
    budgets: z.object({ requester: budgetSchema.optional(), channel: budgetSchema.optional(), overBudget: z.enum(['approval', 'refuse']).optional() }).strict().optional(),
  })
  .strict()
  .superRefine((cost, ctx) => {
    for (const [name, given] of Object.entries(cost.queues ?? {})) {
      if (DEFAULT_QUEUE_PRICES[name]) continue;
      const missing = Object.keys(queuePriceSchema.shape).filter((k) => given[k as keyof QueuePrice] === undefined);
      if (missing.length) {
        ctx.addIssue({
          code: 'custom',
          path: ['queues', name],
          message: `queue "${name}" has no built-in prices, so it needs every field; missing ${missing.join(', ')} (e.g. "${name}": ${JSON.stringify(DEFAULT_QUEUE_PRICES.highmem)})`,
        });
      }
    }
  });
export type CostPolicy = z.infer<typeof costPolicySchema>;

export const COST_POLICY_EXAMPLE =
  '{"cost": {"queues": {"spot": {"vcpuHourUsd": 0.0135, "startupSeconds": 40}}, "defaultSecondsPerFov": 40, "approvalAboveUsd": 25, "budgets": {"requester": {"dayUsd": 20, "monthUsd": 200}, "overBudget": "approval"}}}';

/** The price of a queue: the lab's overrides over the defaults; an unknown queue is priced as on-demand Fargate. */
export function queuePrice(cost: CostPolicy | undefined, queue: string): QueuePrice {
  const base = DEFAULT_QUEUE_PRICES[queue] ?? DEFAULT_QUEUE_PRICES.ondemand!;
  return { ...base, ...(cost?.queues?.[queue] ?? {}) };
}

export const recipeSha256 = (body: Buffer | string) => createHash('sha256').update(body).digest('hex');

export interface CostFigures {
  fovs: number;
  fovsPerChild: number;
  children: number;
  /** Container-seconds billed: start-up and FOV work of every child, at least the minimum each. */
  billedSeconds: number;
  vcpuHours: number;
  usd: number;
  /** Children running at once: the queue's vCPUs over one job's. */
  parallel: number;
  wallSeconds: number;
}

const hourlyRate = (q: QueuePrice) => q.vcpus * q.vcpuHourUsd + q.memoryGiB * q.gbHourUsd;

/** Children a queue runs at once: its max vCPUs over one job's. */
export const parallelChildren = (q: QueuePrice) => Math.max(1, Math.floor(q.maxVcpus / q.vcpus));

interface Billed {
  billedSeconds: number;
  usd: number;
  vcpuHours: number;
}

/** Dollars and vCPU-hours of billed container-seconds on a queue: the one place prices are applied. */
const billed = (q: QueuePrice, billedSeconds: number): Billed => ({ billedSeconds, usd: (billedSeconds / 3600) * hourlyRate(q), vcpuHours: (billedSeconds * q.vcpus) / 3600 });

/**
 * What `fovs` FOVs of `secondsPerFov` each cost on a queue when each array child processes
 * `fovsPerChild` of them in turn (the last child takes what is left). Every child pays the
 * start-up and at least the minimum; children run in waves of `parallel`.
 */
export function estimateCost(q: QueuePrice, fovs: number, secondsPerFov: number, fovsPerChild = 1): CostFigures {
  const k = Math.max(1, Math.floor(fovsPerChild));
  const children = Math.ceil(fovs / k);
  const full = Math.floor(fovs / k);
  const rest = fovs - full * k;
  const child = (count: number) => Math.max(q.minimumBilledSeconds, q.startupSeconds + count * secondsPerFov);
  const parallel = parallelChildren(q);
  const wallSeconds = children === 0 ? 0 : Math.ceil(children / parallel) * (q.startupSeconds + Math.min(k, fovs) * secondsPerFov);
  return { fovs, fovsPerChild: k, children, ...billed(q, full * child(k) + (rest ? child(rest) : 0)), parallel, wallSeconds };
}

/** What the manifest keeps of a finished run's timings (from summary.json's "compute"). */
export interface RecordedCompute {
  fovs: number;
  wallSeconds: number;
  cpuSeconds: number;
}

/**
 * The timings merge-results totalled, for the manifest: job-written, so only numbers that make
 * sense are kept (none when the summary has no "compute": runs before it existed). A job measures
 * each FOV of the run once at most: FOVs past the run's own count (the shown summary's
 * fovs_expected, from its plan) are not believed, as they would make this recipe's time per FOV,
 * and so its next estimates, as small as the job likes.
 */
export function recordedCompute(summary: ResultsSummary): RecordedCompute | undefined {
  const c = summary.compute;
  const fovs = Math.min(c?.fovs ?? summary.fovs_processed, summary.fovs_expected);
  if (!c || fovs === 0) return undefined;
  return { fovs, wallSeconds: c.wall_seconds, cpuSeconds: c.cpu_seconds };
}

/** A finished run as history sees it: which recipe, and what its FOVs took. */
export interface PastRun {
  recipeSha256?: string;
  compute?: RecordedCompute;
}

/** Runs of one recipe that count, the newest first: at most this many. */
const HISTORY_RUNS = 10;

export interface SecondsPerFov {
  seconds: number;
  /** 'history': measured on this lab's earlier runs of the same recipe; 'default': configured. */
  source: 'history' | 'default';
  runs: number;
}

/** Seconds per FOV of a recipe: the FOV-weighted mean of its latest runs with timings, else the default. */
export function secondsPerFov(past: readonly PastRun[], sha256: string, fallback: number): SecondsPerFov {
  const same = past.filter((r) => r.recipeSha256 === sha256 && r.compute && r.compute.fovs > 0).slice(0, HISTORY_RUNS);
  const fovs = same.reduce((s, r) => s + r.compute!.fovs, 0);
  if (!fovs) return { seconds: fallback, source: 'default', runs: 0 };
  return { seconds: same.reduce((s, r) => s + r.compute!.wallSeconds, 0) / fovs, source: 'history', runs: same.length };
}

/**
 * What a run cost, from what its jobs measured: the FOVs' wall time (measured) plus each child's
 * start-up (modeled: Batch events are not timed per child here), at least the minimum per child.
 */
export function actualCost(q: QueuePrice, compute: RecordedCompute, children: number): Billed {
  return billed(q, Math.max(children * q.minimumBilledSeconds, children * q.startupSeconds + compute.wallSeconds));
}

/**
 * What the run's containers cost from how long they ran as Batch recorded it (start-ups
 * included). Each container is billed at least the minimum; applied to the total, this is a
 * lower bound when some containers ran less than it.
 */
export function billedCost(q: QueuePrice, ran: { containers: number; seconds: number }): Billed {
  return billed(q, Math.max(ran.containers * q.minimumBilledSeconds, ran.seconds));
}

// ───────────────────────── wording ─────────────────────────

const n = (x: number) => x.toLocaleString('en-US');

/** 40 s, 35 min, 3.5 h: a duration as a person reads it. */
export function duration(seconds: number): string {
  // A FOV of a third of a second is not "0 s".
  if (seconds < 10) return `${seconds < 0.05 ? '< 0.1' : seconds.toFixed(1)} s`;
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min`;
  const hours = seconds / 3600;
  return `${hours < 10 ? hours.toFixed(1) : n(Math.round(hours))} h`;
}

export function dollars(x: number): string {
  // A short test run costs fractions of a cent: shown, not rounded away to $0.00.
  if (x > 0 && x < 0.01) return `$${x.toFixed(4)}`;
  return `$${x.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

const hoursText = (h: number) => (h < 10 ? h.toFixed(1) : n(Math.round(h)));

/** An estimate as the manifest keeps it (RunEstimate), with the FOV count it was made for. */
export interface ShownEstimate {
  fovs: number;
  price: QueuePrice;
  secondsPerFov: number;
  source: 'history' | 'default';
  historyRuns: number;
  fovsPerChild: number;
  children: number;
  vcpuHours: number;
  usd: number;
  parallel: number;
  wallSeconds: number;
}

/** "≈ $4.13 on Fargate Spot", or "no cloud cost" for the local backend. */
export const moneyOn = (q: QueuePrice, amount: number) => (q.platform === 'local' ? 'no cloud cost' : `≈ ${dollars(amount)} on ${PLATFORM_LABEL[q.platform]}`);

/** "≈ 10,000 FOVs × 40 s ≈ 236 vCPU-hours ≈ $4.13 on Fargate Spot, ≈ 57 min at 256 vCPUs (…)" (README, docs/aws.md) */
export function estimateText(e: ShownEstimate): string {
  const packing = e.fovsPerChild > 1 ? ` in ${n(e.children)} jobs of up to ${n(e.fovsPerChild)} FOVs` : '';
  const source =
    e.source === 'history'
      ? `time per FOV measured on ${e.historyRuns} earlier ${e.historyRuns === 1 ? 'run' : 'runs'} of this recipe`
      : 'time per FOV is the lab default: no earlier run of this recipe has timings';
  return `≈ ${n(e.fovs)} FOVs × ${duration(e.secondsPerFov)} ≈ ${hoursText(e.vcpuHours)} vCPU-hours${e.price.platform === 'local' ? ',' : ''} ${moneyOn(e.price, e.usd)}, ≈ ${duration(e.wallSeconds)} at ${n(e.parallel * e.price.vcpus)} vCPUs${packing} (${source})`;
}
