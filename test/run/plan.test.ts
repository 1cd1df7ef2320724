import { describe, expect, it } from 'vitest';
import { fovsOfChild, fovsPerChild, makePlan } from '../../src/run/plan.js';
import { expandRanges, formatRanges } from '../../src/run/fov-ranges.js';
import { workUnitSchema, type Plan } from '../../src/run/manifest.js';
import { isWithin } from '../../src/run/policy.js';

const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);

function plan(available: number[], selection: Parameters<typeof makePlan>[1] = { kind: 'all' }): Plan {
  const p = makePlan(available, selection);
  if (!p.ok) throw new Error(p.reason);
  return p.value;
}

const refusal = (r: ReturnType<typeof makePlan>) => (r.ok ? undefined : r.reason);

/** Every FOV the plan's jobs would process, in order, via the same mapping the containers use. */
function processed(p: Plan): number[] {
  return p.units.flatMap((u) => Array.from({ length: u.size }, (_, i) => fovsOfChild(u, i)).flat());
}

describe('planning into Batch-sized units', () => {
  it('1 FOV is a plain job', () => {
    expect(plan([0]).units).toEqual([{ size: 1, fovs: '0' }]);
  });

  it('2 FOVs are one array of 2', () => {
    expect(plan(range(2)).units).toEqual([{ size: 2, fovs: '0-1' }]);
  });

  it('10,000 FOVs fit one array', () => {
    expect(plan(range(10_000)).units).toEqual([{ size: 10_000, fovs: '0-9999' }]);
  });

  it('10,001 FOVs are split into two arrays that cover every FOV once', () => {
    const p = plan(range(10_001));
    expect(p.units).toEqual([{ size: 10_000, fovs: '0-9999' }, { size: 1, fovs: '10000' }]);
    expect(processed(p)).toEqual(range(10_001));
  });

  it('25,000 FOVs are three arrays, none above 10,000', () => {
    const p = plan(range(25_000));
    expect(p.units.map((u) => u.size)).toEqual([10_000, 10_000, 5_000]);
    expect(processed(p)).toEqual(range(25_000));
    expect(p.fovs).toBe('0-24999');
  });
});

describe('selections', () => {
  const sixteen = range(16);

  it('takes the first N', () => {
    expect(plan(sixteen, { kind: 'first', count: 4 })).toMatchObject({ fovCount: 4, fovs: '0-3', units: [{ size: 4, fovs: '0-3' }] });
  });

  it('runs scattered FOVs through a FOV list, in order', () => {
    const p = plan(sixteen, { kind: 'list', ranges: [[1, 3], [7, 7], [9, 10]] });
    expect(p.units).toEqual([{ size: 6, fovs: '1-3,7,9-10' }]);
    expect(processed(p)).toEqual([1, 2, 3, 7, 9, 10]);
  });

  it('refuses FOVs the experiment does not have, naming them and what it has', () => {
    expect(refusal(makePlan(sixteen, { kind: 'list', ranges: [[14, 18]] }))).toMatch(/does not have \(16-18\); it has 0-15/);
    expect(refusal(makePlan(sixteen, { kind: 'first', count: 20 }))).toMatch(/first=20 asks for more FOVs than the experiment has \(16\); use fovs=all or first=16/);
  });

  it('runs a long scattered list as one array: the list travels in an input object, not the environment', () => {
    const evens = range(20_000).filter((x) => x % 2 === 0);
    const p = plan(range(20_000), { kind: 'list', ranges: evens.map((x) => [x, x] as [number, number]) });
    expect(p.units.map((u) => u.size)).toEqual([10_000]);
    expect(processed(p)).toEqual(evens);
  });

  it('reads the units of manifests written before units carried range text', () => {
    expect(workUnitSchema.parse({ size: 3, offset: 5 })).toEqual({ size: 3, fovs: '5-7' });
    expect(workUnitSchema.parse({ size: 1, offset: 9 })).toEqual({ size: 1, fovs: '9' });
    expect(workUnitSchema.parse({ size: 4, fovList: '1-3,7' })).toEqual({ size: 4, fovs: '1-3,7' });
    expect(workUnitSchema.safeParse({ size: 4 }).success).toBe(false);
  });

  it('formats and expands ranges as inverses', () => {
    expect(formatRanges([7, 0, 1, 2, 3, 3, 9])).toBe('0-3,7,9');
    expect(expandRanges('0-3,7,9')).toEqual([0, 1, 2, 3, 7, 9]);
  });
});

describe('approved recipe prefixes', () => {
  it('accept recipes inside the prefix, as a folder', () => {
    expect(isWithin('s3://lab-recipes/iss.py', 's3://lab-recipes')).toBe(true);
    expect(isWithin('s3://lab-recipes/v2/iss.py', 's3://lab-recipes/')).toBe(true);
  });
  it('refuse look-alike buckets and paths that climb out', () => {
    expect(isWithin('s3://lab-recipes-evil/iss.py', 's3://lab-recipes')).toBe(false);
    expect(isWithin('https://lab.example/approved/../evil.py', 'https://lab.example/approved/')).toBe(false);
    expect(isWithin('https://lab.example/approved/%2e%2e/evil.py', 'https://lab.example/approved/')).toBe(false);
  });
});

describe('packing FOVs into children', () => {
  // The case: 10,000 FOVs of 20 s, a 45 s container start, 256 vCPUs of 1-vCPU jobs.
  const tutorial = { secondsPerFov: 20, startupSeconds: 45, parallelChildren: 256 };

  it('packs enough FOVs that start-up is at most a tenth of a child’s compute, keeping the queue full', () => {
    const k = fovsPerChild(10_000, tutorial);
    expect(k).toBe(23);
    expect(45 / (k * 20)).toBeLessThanOrEqual(0.1);
    expect(Math.ceil(10_000 / k)).toBeGreaterThanOrEqual(256);
  });

  it('a child runs at least 5 minutes (or what the lab configures) when start-up is short', () => {
    expect(fovsPerChild(10_000, { secondsPerFov: 20, startupSeconds: 5, parallelChildren: 16 })).toBe(15);
    expect(fovsPerChild(10_000, { secondsPerFov: 20, startupSeconds: 5, parallelChildren: 16, minChildSeconds: 600 })).toBe(30);
  });

  it('does not pack when packing would leave the queue idle or the FOVs are long', () => {
    expect(fovsPerChild(4, tutorial)).toBe(1);
    expect(fovsPerChild(300, tutorial)).toBe(1);
    expect(fovsPerChild(10_000, { ...tutorial, secondsPerFov: 900 })).toBe(1);
  });

  it('plans packed children that cover every FOV once, in order, the last chunk partial', () => {
    const p = makePlan(range(10_000), { kind: 'all' }, tutorial);
    if (!p.ok) throw new Error(p.reason);
    expect(p.value.perChild).toBe(23);
    expect(p.value.units).toEqual([{ size: 435, fovs: '0-9999', perChild: 23 }]);
    expect(fovsOfChild(p.value.units[0]!, 0)).toEqual(range(23));
    expect(fovsOfChild(p.value.units[0]!, 434)).toEqual(range(10_000 - 434 * 23, 434 * 23));
    expect(fovsOfChild(p.value.units[0]!, 435)).toEqual([]);
    expect(processed(p.value)).toEqual(range(10_000));
  });

  it('packs a gapped selection by position, as the containers read it', () => {
    const evens = range(50).map((x) => 2 * x);
    const p = makePlan(range(100), { kind: 'list', ranges: evens.map((x) => [x, x] as [number, number]) }, { secondsPerFov: 60, startupSeconds: 30, parallelChildren: 10 });
    if (!p.ok) throw new Error(p.reason);
    expect(p.value.perChild).toBe(5);
    expect(fovsOfChild(p.value.units[0]!, 1)).toEqual([10, 12, 14, 16, 18]);
    expect(processed(p.value)).toEqual(evens);
  });

  it('takes more FOVs in one run when they are packed (20 arrays of 10,000 children)', () => {
    const p = makePlan(range(400_000), { kind: 'all' }, { secondsPerFov: 10, startupSeconds: 30, parallelChildren: 100 });
    if (!p.ok) throw new Error(p.reason);
    expect(p.value.units.length).toBeLessThanOrEqual(20);
    expect(p.value.units.every((u) => u.size <= 10_000)).toBe(true);
  });
});
