/**
 * Bounds before allocation: what a person types and what an experiment lists cannot make the
 * launcher allocate without limit.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { parseCommand } from '../../src/command/grammar.js';
import { makePlan } from '../../src/run/plan.js';
import { launchedRun } from '../notifier/harness.js';
import type { MapReader } from '../helpers/memory-adapters.js';

const HEAP_MIB = 320;

function checkInChild(selection: string) {
  const r = spawnSync(process.execPath, [`--max-old-space-size=${HEAP_MIB}`, '--import', 'tsx', 'test/helpers/million-fovs.ts', selection], { encoding: 'utf8', timeout: 120_000 });
  expect(r.status, r.stderr.split('\n').slice(-15).join('\n')).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { fovCount?: number; units?: number; refused?: string };
}

describe('a 1,000,000-FOV experiment under a fixed heap', () => {
  it(`reads it within ${HEAP_MIB} MiB and refuses fovs=all (one run takes at most 200,000 FOVs), saying how to split`, () => {
    expect(checkInChild('all')).toMatchObject({ refused: expect.stringMatching(/these are 1,000,000 FOVs; one run takes at most 200,000 .*e\.g\. fovs=0-199999 first/) });
  });

  it('plans the largest run, 200,000 FOVs in 20 arrays, within the same heap', () => {
    expect(checkInChild('0-199999')).toMatchObject({ fovCount: 200_000, units: 20 });
  });

  it('plans a hostile selection that repeats a range hundreds of times, counting each FOV once', () => {
    const hostile = Array.from({ length: 440 }, () => '0-199999').join(',');
    expect(hostile.length).toBeLessThanOrEqual(4_000);
    expect(checkInChild(hostile)).toMatchObject({ fovCount: 200_000 });
  });
});

describe('inputs', () => {
  it('refuses a recipe larger than source code is, without reading it whole', async () => {
    const h = await launchedRun(2);
    (h.deps.reader as MapReader).files.set('s3://lab-data/recipes/huge.py', `def process_fov(fov_index, experiment_url):\n    pass\n${'#'.repeat(3 * 2 ** 20)}`);
    await h.launcher.handle({
      type: 'RunRequested',
      userId: 'U1',
      channel: 'C1',
      request: { experiment: 's3://lab-data/exp/experiment.json', recipe: 's3://lab-data/recipes/huge.py', fovs: { kind: 'all' }, dryRun: false },
    });
    expect(h.chat.text('ephemeral')).toMatch(/Could not read the recipe at s3:\/\/lab-data\/recipes\/huge\.py: it is larger than 2 MiB/);
  });
});

describe('selections', () => {
  it('refuses a selection longer than a person types, before parsing it', () => {
    const long = Array.from({ length: 900 }, (_, i) => String(i * 3)).join(',');
    const parsed = parseCommand(`run s3://lab-data/iss/experiment.json fovs=${long}`);
    expect(parsed.ok).toBe(false);
    expect(parsed.ok ? '' : parsed.reason).toMatch(/fovs= is [\d,]+ characters long; at most 4,000 are read\. Use ranges, e.g\. fovs=0-499,600-999/);
  });

  it('names a few missing FOVs and summarizes what a large experiment has', () => {
    const available = Array.from({ length: 50_000 }, (_, i) => i * 2);
    const plan = makePlan(available, { kind: 'list', ranges: [[1, 1]] });
    expect(plan.ok).toBe(false);
    const reason = plan.ok ? '' : plan.reason;
    expect(reason).toMatch(/does not have \(1\); it has 0,2,4,.*,… \(50,000 ranges\)$/);
    expect(reason.length).toBeLessThan(400);
  });

  it('refuses a plan too scattered to keep in the manifest, saying what to do', () => {
    const available = Array.from({ length: 200_000 }, (_, i) => i * 2);
    const plan = makePlan(available, { kind: 'all' });
    expect(plan.ok ? '' : plan.reason).toMatch(/200,000 FOVs are numbered with so many gaps .* select fewer, contiguous ranges/);
  });
});
