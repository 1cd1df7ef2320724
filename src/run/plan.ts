/**
 * Cuts the selected FOVs into Batch-sized units. AWS Batch arrays hold 2 to 10,000 children:
 * one FOV is a plain job, more than 10,000 are split into several arrays. A unit's FOV list
 * reaches its job as an input object (runKeys().fovsInput), never in the environment, so its
 * length is bounded by the plan's, not by Batch's 8,192-character overrides.
 */
import type { FovSelection } from './fov-ranges.js';
import { describeSelection, formatRanges, mergeRanges, parseRanges } from './fov-ranges.js';
import type { Plan, WorkUnit } from './manifest.js';
import { ok, refuse, type Result } from '../result.js';

const MAX_ARRAY_SIZE = 10_000;
/**
 * One merge waits for every array of a round, and AWS Batch lets a job depend on at most 20:
 * past 20 arrays of 10,000 children a run would be submitted, then refused at its merge.
 */
const MAX_ARRAYS = 20;
const MAX_PER_CHILD = 10_000;

/** What packing is chosen from: the estimate and the queue (src/run/cost.ts has the figures). */
export interface PackingInput {
  secondsPerFov: number;
  /** A container's start (image pull, start-up), paid once per child. */
  startupSeconds: number;
  /** Children the queue runs at once (its max vCPUs / a job's vCPUs). */
  parallelChildren: number;
  /** A child runs at least this long (5 minutes by default). */
  minChildSeconds?: number;
}

/** Start-up may cost at most this share of the compute a child does. */
const MAX_STARTUP_SHARE = 0.1;

/**
 * FOVs per child: enough that a child runs at least minChildSeconds and its start-up is at most
 * a tenth of its compute, few enough that the queue's parallel children all have work.
 */
export function fovsPerChild(fovs: number, p: PackingInput): number {
  const perFov = Math.max(p.secondsPerFov, 0.001);
  const childSeconds = Math.max(p.minChildSeconds ?? 300, p.startupSeconds / MAX_STARTUP_SHARE);
  const forLength = Math.ceil(childSeconds / perFov);
  const forFill = Math.floor(fovs / Math.max(1, p.parallelChildren));
  return Math.max(1, Math.min(forLength, forFill, MAX_PER_CHILD));
}

function selectFovs(available: number[], selection: FovSelection): Result<number[]> {
  if (selection.kind === 'all') return ok([...available]);
  if (selection.kind === 'first') {
    if (selection.count > available.length) {
      return refuse(`first=${selection.count} asks for more FOVs than the experiment has (${available.length}); use fovs=all or first=${available.length}`);
    }
    return ok(available.slice(0, selection.count));
  }
  // Merged first: memory is bounded by the experiment, however often a range is repeated.
  let chosen: number[] = [];
  const missing: number[] = [];
  for (const [a, b] of mergeRanges(selection.ranges)) {
    const found = within(available, a, b);
    chosen = chosen.concat(found);
    if (found.length < b - a + 1) missing.push(...firstMissing(found, a, b, 21 - missing.length));
    if (missing.length > 20) break;
  }
  if (missing.length) {
    const has = formatRanges(available).split(',');
    const shown = has.length > 20 ? `${has.slice(0, 20).join(',')},… (${has.length.toLocaleString('en-US')} ranges)` : has.join(',');
    return refuse(`fovs=${clipText(describeSelection(selection), 200)} names FOVs the experiment does not have (${formatRanges(missing.slice(0, 20))}${missing.length > 20 ? ', …' : ''}); it has ${shown}`);
  }
  return ok(chosen);
}

/** The FOVs of sorted `available` within a..b, found by binary search. */
function within(available: readonly number[], a: number, b: number): number[] {
  const lowerBound = (x: number) => {
    let lo = 0;
    let hi = available.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (available[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  return available.slice(lowerBound(a), lowerBound(b + 1));
}

/** Up to `limit` indices of a..b that are not in `found` (sorted, within a..b). */
function firstMissing(found: readonly number[], a: number, b: number, limit: number): number[] {
  const out: number[] = [];
  let i = 0;
  for (let k = a; k <= b && out.length < limit; k++) {
    if (found[i] === k) i++;
    else out.push(k);
  }
  return out;
}

const clipText = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

/** Work units over sorted, distinct FOV indices, `perChild` FOVs to a child. */
export function planUnits(fovs: number[], perChild = 1): WorkUnit[] {
  const units: WorkUnit[] = [];
  const perArray = MAX_ARRAY_SIZE * perChild;
  for (let i = 0; i < fovs.length; i += perArray) {
    const part = fovs.slice(i, i + perArray);
    units.push({ size: Math.ceil(part.length / perChild), fovs: formatRanges(part), ...(perChild > 1 ? { perChild } : {}) });
  }
  return units;
}

/** The plan lives in the manifest, rewritten on every update: past this, it is not kept there. */
const MAX_PLAN_CHARS = 1_000_000;

export function makePlan(available: number[], selection: FovSelection, packing?: PackingInput): Result<Plan> {
  const selected = selectFovs(available, selection);
  if (!selected.ok) return selected;
  const fovs = selected.value;
  const perChild = packing ? fovsPerChild(fovs.length, packing) : 1;
  const most = MAX_ARRAYS * MAX_ARRAY_SIZE * perChild;
  if (fovs.length > most) {
    const n = (x: number) => x.toLocaleString('en-US');
    return refuse(`these are ${n(fovs.length)} FOVs; one run takes at most ${n(most)} (20 arrays of 10,000 jobs${perChild > 1 ? ` of ${perChild} FOVs` : ''}, the most one merge can wait for). Run them in parts, e.g. fovs=${fovs[0]}-${fovs[most - 1]} first`);
  }
  const text = formatRanges(fovs);
  if (text.length > MAX_PLAN_CHARS) {
    return refuse(`these ${fovs.length.toLocaleString('en-US')} FOVs are numbered with so many gaps that their list is ${text.length.toLocaleString('en-US')} characters; select fewer, contiguous ranges (e.g. fovs=0-99999) and run the rest separately`);
  }
  return ok({ experimentFovCount: available.length, fovs: text, fovCount: fovs.length, units: planUnits(fovs, perChild), ...(perChild > 1 ? { perChild } : {}) });
}

/** How many FOVs a unit holds (its children × perChild, less a last partial chunk). */
export function unitFovCount(unit: WorkUnit): number {
  const found = indexRanges(unit.fovs);
  if (!found?.ranges.length) return 0;
  const [a, b] = found.ranges.at(-1)!;
  return found.starts.at(-1)! + b - a + 1;
}

/** The FOVs child `index` of a unit processes, as the containers read them (containers/README.md). */
export function fovsOfChild(unit: WorkUnit, index: number): number[] {
  if (index < 0 || index >= unit.size) return [];
  const perChild = unit.perChild ?? 1;
  const out: number[] = [];
  for (let k = index * perChild; k < (index + 1) * perChild; k++) {
    const fov = nthOfRanges(unit.fovs, k);
    if (fov === undefined) break;
    out.push(fov);
  }
  return out;
}

/**
 * The last range text parsed, with the position each range starts at: the notifier maps many
 * children of one unit in a row, and a unit of 10,000 gapped FOVs is 10,000 ranges.
 */
let indexed: { text: string; ranges: Array<[number, number]>; starts: number[] } | undefined;

function indexRanges(text: string): typeof indexed {
  if (indexed?.text === text) return indexed;
  const ranges = parseRanges(text);
  if (!ranges.ok) return undefined;
  const starts: number[] = [];
  let at = 0;
  for (const [a, b] of ranges.value) {
    starts.push(at);
    at += b - a + 1;
  }
  indexed = { text, ranges: ranges.value, starts };
  return indexed;
}

function nthOfRanges(text: string, index: number): number | undefined {
  const found = indexRanges(text);
  if (!found) return undefined;
  // The last range starting at or before `index`.
  let lo = 0;
  let hi = found.starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (found.starts[mid]! <= index) lo = mid;
    else hi = mid - 1;
  }
  const [a, b] = found.ranges[lo] ?? [0, -1];
  const n = a + index - (found.starts[lo] ?? 0);
  return n <= b ? n : undefined;
}
