/**
 * Cuts the selected FOVs into Batch-sized units. AWS Batch arrays hold 2 to 10,000 children:
 * one FOV is a plain job, more than 10,000 are split into several arrays.
 */
import type { FovSelection } from './fov-ranges.js';
import { describeSelection, formatRanges, parseRanges } from './fov-ranges.js';
import type { Plan, WorkUnit } from './manifest.js';
import { ok, refuse, type Result } from '../result.js';

const MAX_ARRAY_SIZE = 10_000;
/** Keeps STARFISH_FOVS well inside the size AWS Batch accepts for container overrides. */
export const MAX_FOV_LIST_CHARS = 6_000;

function selectFovs(available: number[], selection: FovSelection): Result<number[]> {
  if (selection.kind === 'all') return ok([...available]);
  if (selection.kind === 'first') {
    if (selection.count > available.length) {
      return refuse(`fovs=${selection.count} asks for more FOVs than the experiment has (${available.length}); use fovs=all or fovs=${available.length}`);
    }
    return ok(available.slice(0, selection.count));
  }
  const have = new Set(available);
  const chosen: number[] = [];
  const missing: number[] = [];
  for (const [a, b] of selection.ranges) {
    for (let k = a; k <= b; k++) (have.has(k) ? chosen : missing).push(k);
    if (missing.length > 20) break;
  }
  if (missing.length) {
    return refuse(`fovs=${describeSelection(selection)} names FOVs the experiment does not have (${formatRanges(missing.slice(0, 20))}${missing.length > 20 ? ', …' : ''}); it has ${formatRanges(available)}`);
  }
  return ok([...new Set(chosen)].sort((x, y) => x - y));
}

function unitFor(fovs: number[]): WorkUnit[] {
  const list = formatRanges(fovs);
  if (list.length <= MAX_FOV_LIST_CHARS) return [{ size: fovs.length, fovs: list }];
  const half = Math.ceil(fovs.length / 2);
  return [...unitFor(fovs.slice(0, half)), ...unitFor(fovs.slice(half))];
}

/** Work units over sorted, distinct FOV indices. */
export function planUnits(fovs: number[]): WorkUnit[] {
  const units: WorkUnit[] = [];
  for (let i = 0; i < fovs.length; i += MAX_ARRAY_SIZE) units.push(...unitFor(fovs.slice(i, i + MAX_ARRAY_SIZE)));
  return units;
}

export function makePlan(available: number[], selection: FovSelection): Result<Plan> {
  const selected = selectFovs(available, selection);
  if (!selected.ok) return selected;
  const fovs = selected.value;
  return ok({ experimentFovCount: available.length, fovs: formatRanges(fovs), fovCount: fovs.length, units: planUnits(fovs) });
}

/** The FOV child `index` of a unit processes: the index-th of its range text, as the containers read it. */
export function fovOfChild(unit: WorkUnit, index: number): number | undefined {
  if (index < 0 || index >= unit.size) return undefined;
  return nthOfRanges(unit.fovs, index);
}

function nthOfRanges(text: string, index: number): number | undefined {
  const ranges = parseRanges(text);
  if (!ranges.ok) return undefined;
  let left = index;
  for (const [a, b] of ranges.value) {
    if (left <= b - a) return a + left;
    left -= b - a + 1;
  }
  return undefined;
}
