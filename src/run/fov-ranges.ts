/**
 * FOV selections written the way people write them: `all`, `12` (the first 12), `0-3,7,9-12`.
 * The same compact range text travels in the manifest, in each work unit and in STARFISH_FOVS
 * (parsed in Python by starfish_io.parse_fov_ranges).
 */
import { ok, refuse, type Result } from '../result.js';

export type FovSelection = { kind: 'all' } | { kind: 'first'; count: number } | { kind: 'list'; ranges: Array<[number, number]> };

const RANGE = /^(\d+)(?:-(\d+))?$/;
const MAX_FOV_INDEX = 1_000_000;

/** Parses `0-3,7` into inclusive ranges. */
export function parseRanges(text: string): Result<Array<[number, number]>> {
  const ranges: Array<[number, number]> = [];
  for (const part of text.split(',')) {
    const m = RANGE.exec(part.trim());
    if (!m) return refuse(`"${part.trim()}" is not a FOV index or range`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) return refuse(`the range "${part.trim()}" runs backwards; write it low-high, like ${b}-${a}`);
    if (b > MAX_FOV_INDEX) return refuse(`FOV ${b} is beyond any experiment this tool can run (${MAX_FOV_INDEX} at most)`);
    ranges.push([a, b]);
  }
  return ok(ranges);
}

/** Sorted, de-duplicated indices to the shortest range text: [0,1,2,3,7] → "0-3,7". */
export function formatRanges(indices: readonly number[]): string {
  const sorted = [...new Set(indices)].sort((x, y) => x - y);
  const out: string[] = [];
  let i = 0;
  while (i < sorted.length) {
    const start = sorted[i]!;
    let end = start;
    while (i + 1 < sorted.length && sorted[i + 1] === end + 1) end = sorted[++i]!;
    out.push(start === end ? `${start}` : `${start}-${end}`);
    i++;
  }
  return out.join(',');
}

/** Sorted ranges with overlapping and touching ones merged: each FOV once, however it was typed. */
export function mergeRanges(ranges: ReadonlyArray<readonly [number, number]>): Array<[number, number]> {
  const sorted = [...ranges].sort((x, y) => x[0] - y[0]);
  const out: Array<[number, number]> = [];
  for (const [a, b] of sorted) {
    const last = out.at(-1);
    if (last && a <= last[1] + 1) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

export function expandRanges(text: string): number[] {
  const ranges = parseRanges(text);
  // Range text here was written by formatRanges: a parse failure is a fault, not a refusal.
  if (!ranges.ok) throw new Error(ranges.reason);
  const out: number[] = [];
  for (const [a, b] of ranges.value) for (let k = a; k <= b; k++) out.push(k);
  return [...new Set(out)].sort((x, y) => x - y);
}

export function describeSelection(selection: FovSelection): string {
  if (selection.kind === 'all') return 'all';
  if (selection.kind === 'first') return `first ${selection.count}`;
  return selection.ranges.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',');
}
