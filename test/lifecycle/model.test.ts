/**
 * Model-based tests of the lifecycle (src/lifecycle/decide.ts). A small model of AWS Batch runs
 * one run's FOVs (some fail); random sequences of facts reach `decide` with duplicates, stale
 * reads (reordering), lost events, Slack outages, concurrent approvals, cancels and retries. The
 * effects are performed the way RunWorker performs them: claimed chat effects are given back
 * when Slack fails, submissions are claimed once. After every step and at the end the
 * invariants a lab relies on must hold.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decide } from '../../src/lifecycle/decide.js';
import { giveBack } from '../../src/lifecycle/observe.js';
import { newManifest } from '../../src/lifecycle/new-run.js';
import { DELIVERIES, type Effect, type Fact, type MergeOutcome, type ObservedFailure } from '../../src/lifecycle/types.js';
import type { FovFailure, RunManifest, Submission } from '../../src/run/manifest.js';
import { makePlan, planUnits, fovsOfChild } from '../../src/run/plan.js';
import { expandRanges } from '../../src/run/fov-ranges.js';
import { parsePolicy } from '../../src/run/policy.js';
import { recipeSha256 } from '../../src/run/cost.js';
import { jobName } from '../../src/run/batch-event.js';
import { ok } from '../../src/result.js';
import type { JobDescription } from '../../src/ports.js';

/** CI explores the same 400 scenarios every time; FC_SEED=<n> (or FC_SEED=random) explores others. */
const SEED = process.env.FC_SEED === 'random' ? Date.now() : Number(process.env.FC_SEED ?? 20261125);

const SETTINGS = { progressIntervalMs: 60_000, digestIntervalMs: 300_000 };
const CHAT: ReadonlySet<Effect['type']> = new Set(['update-root', 'digest', 'results', 'failed-run', 'picture', 'notice', 'stuck-warning']);
const CLAIMED: ReadonlySet<Effect['type']> = new Set(['update-root', 'digest', 'results', 'failed-run', 'picture', 'stuck-warning']);

type Child = 'waiting' | 'running' | 'succeeded' | 'failed';

/** Batch's truth for one round. */
interface RoundTruth {
  submission: Submission;
  children: Map<number, Child>;
  merge?: 'SUCCEEDED' | 'FAILED';
  salvage?: { jobId: string; jobName: string; status?: 'SUCCEEDED' | 'FAILED' };
}

type Action =
  | { kind: 'advance'; pick: number; steps: number }
  | { kind: 'observe'; stale: boolean; keepFailures: number; duplicate: boolean }
  | { kind: 'decide'; approve: boolean; by: number }
  | { kind: 'cancel' }
  | { kind: 'retry' }
  | { kind: 'tick'; minutes: number }
  | { kind: 'slack'; up: boolean };

const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('advance' as const), pick: fc.nat(50), steps: fc.integer({ min: 1, max: 6 }) }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('observe' as const), stale: fc.boolean(), keepFailures: fc.nat(255), duplicate: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('decide' as const), approve: fc.boolean(), by: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'cancel' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'retry' as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('tick' as const), minutes: fc.integer({ min: 0, max: 30 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('slack' as const), up: fc.boolean() }) },
);

class World {
  now = Date.parse('2026-11-25T10:00:00Z');
  m: RunManifest;
  rounds: RoundTruth[] = [];
  claims = new Set<string>();
  sent: Array<{ effect: Effect; manifest: RunManifest }> = [];
  submitEffects = new Map<number, number>();
  slackUp = true;
  cancelled = false;
  /** Observations taken earlier, delivered later (a notifier that read Batch before another). */
  snapshots: Fact[] = [];
  private jobs = 0;

  constructor(
    readonly fovs: number,
    readonly failing: ReadonlySet<number>,
    needsApproval: boolean,
  ) {
    const planned = makePlan(Array.from({ length: fovs }, (_, i) => i), { kind: 'all' });
    if (!planned.ok) throw new Error(planned.reason);
    const plan = planned.value;
    const request = { experiment: 's3://lab/exp.json', recipe: 's3://lab/r.py', fovs: { kind: 'all' as const }, dryRun: false };
    this.m = newManifest(
      {
        runId: '261125-abcd',
        now: this.now,
        requester: { userId: 'U1', channel: 'C1' },
        checked: { request, queue: 'spot', plan, experiment: { fovs: [], source: Buffer.from('') }, recipeBody: Buffer.from(''), recipeSha256: recipeSha256('') },
        approvalReasons: needsApproval ? ['big'] : [],
        locate: (k) => `s3://results/${k}`,
        keys: { recipeSnapshot: 'r', outputs: 'o' },
      },
      parsePolicy({}, 'test'),
    );
    this.apply({ type: 'message-posted', ref: { channel: 'C1', ts: '1.0' } });
  }

  get current(): RoundTruth | undefined {
    return this.rounds.at(-1);
  }

  apply(fact: Fact): void {
    const before = this.m;
    const d = decide(before, fact, { now: this.now, settings: SETTINGS });
    if (d.next) {
      checkProgressMonotone(before, d.next);
      this.m = d.next;
    }
    let delivered = false;
    for (const [i, effect] of d.effects.entries()) {
      if (CHAT.has(effect.type) && !this.slackUp) {
        // RunWorker: the failing effect and every claimed one after it are given back.
        this.m = d.effects.slice(i).filter((e) => CLAIMED.has(e.type)).reduce(giveBack, this.m);
        return;
      }
      if (CHAT.has(effect.type)) {
        expectClaimHeld(this.m, effect);
        this.sent.push({ effect, manifest: this.m });
        delivered ||= DELIVERIES.has(effect.type);
      } else this.perform(effect);
    }
    if (delivered) this.apply({ type: 'delivered', since: this.now });
  }

  private perform(effect: Effect): void {
    if (effect.type === 'submit-round') {
      this.submitEffects.set(effect.round, (this.submitEffects.get(effect.round) ?? 0) + 1);
      if (this.claims.has(`submit-r${effect.round}`)) return;
      this.claims.add(`submit-r${effect.round}`);
      this.apply({ type: 'submitted', submission: this.launch(effect.round, effect.fovs) });
    } else if (effect.type === 'submit-salvage') {
      if (this.claims.has(`salvage-r${effect.round}`)) return;
      this.claims.add(`salvage-r${effect.round}`);
      const job = { jobId: `job-${++this.jobs}`, jobName: jobName(this.m.runId, 'merge', effect.round, undefined, true) };
      this.current!.salvage = { ...job };
      this.apply({ type: 'salvage-submitted', round: effect.round, job });
    } else if (effect.type === 'terminate') {
      this.cancelled = true;
    }
  }

  private launch(round: number, fovs: string): Submission {
    const units = planUnits(expandRanges(fovs));
    const arrays = units.map((unit, part) => ({ jobId: `job-${++this.jobs}`, jobName: jobName(this.m.runId, 'fov', round, units.length > 1 ? part : undefined), unit }));
    const submission: Submission = {
      round,
      submittedAt: new Date(this.now).toISOString(),
      fovs,
      arrays,
      merge: { jobId: `job-${++this.jobs}`, jobName: jobName(this.m.runId, 'merge', round) },
    };
    this.rounds.push({ submission, children: new Map(expandRanges(fovs).map((f) => [f, 'waiting'])) });
    return submission;
  }

  /** Moves Batch forward: children start and end; merges end once their dependencies have. */
  advance(pick: number, steps: number): void {
    const r = this.current;
    if (!r || this.cancelled) return;
    const fovs = [...r.children.keys()];
    for (let s = 0; s < steps; s++) {
      const fov = fovs[(pick + s) % fovs.length]!;
      const state = r.children.get(fov)!;
      // Retried FOVs succeed: the first failure was a Spot reclaim.
      const fails = this.failing.has(fov) && r.submission.round === 0;
      if (state === 'waiting') r.children.set(fov, 'running');
      else if (state === 'running') r.children.set(fov, fails ? 'failed' : 'succeeded');
    }
    this.endMerges(r);
  }

  private endMerges(r: RoundTruth): void {
    const states = [...r.children.values()];
    if (states.some((s) => s === 'waiting' || s === 'running')) return;
    r.merge ??= states.includes('failed') ? 'FAILED' : 'SUCCEEDED';
    if (r.salvage && !r.salvage.status) r.salvage.status = this.succeededAnywhere() ? 'SUCCEEDED' : 'FAILED';
  }

  private succeededAnywhere(): boolean {
    return this.rounds.some((r) => [...r.children.values()].includes('succeeded'));
  }

  /** What a notifier would learn now; `keepFailures` drops some child events (lost). */
  observation(keepFailures = 255): Fact | undefined {
    const r = this.current;
    if (!r) return undefined;
    const failures: ObservedFailure[] = [];
    let bit = 0;
    for (const array of r.submission.arrays) {
      for (let i = 0; i < array.unit.size; i++) {
        const fov = fovsOfChild(array.unit, i)[0]!;
        if (r.children.get(fov) === 'failed' && keepFailures & (1 << bit++ % 8)) {
          failures.push({ fov, round: r.submission.round, jobId: `${array.jobId}:${i}`, reason: `process-fov: FOV ${fov}: recipe raised ValueError` });
        }
      }
    }
    const arrays: JobDescription[] = r.submission.arrays.map((a) => describeArray(a, r));
    failures.push(...this.askedFailures(r, arrays, failures));
    const merges: MergeOutcome[] = [];
    const round = r.submission.round;
    if (r.merge) merges.push({ salvage: false, status: r.merge, reason: r.merge === 'FAILED' ? 'Dependent Job failed' : 'Essential container in task exited', ...r.submission.merge! });
    if (r.salvage?.status) merges.push({ salvage: true, status: r.salvage.status, reason: 'no FOV tables', jobId: r.salvage.jobId, jobName: r.salvage.jobName });
    const fact: Fact = { type: 'batch', round, arrays, failures, merges };
    const final = r.salvage?.status ?? r.merge;
    if (final === 'SUCCEEDED') fact.summary = ok(this.summary());
    return fact;
  }

  /** As the notifier does: an ended array counting more failures than are known is asked which. */
  private askedFailures(r: RoundTruth, arrays: JobDescription[], seen: ObservedFailure[]): ObservedFailure[] {
    const out: ObservedFailure[] = [];
    for (const [k, a] of arrays.entries()) {
      const known = new Set([...this.m.failures, ...seen].filter((x) => x.round === r.submission.round).map((x) => x.fov));
      const children = r.submission.arrays[k]!;
      const failedHere = Array.from({ length: children.unit.size }, (_, i) => fovsOfChild(children.unit, i)[0]!).filter((f) => r.children.get(f) === 'failed');
      const ended = a.status === 'FAILED' || a.status === 'SUCCEEDED';
      if (ended && failedHere.some((f) => !known.has(f))) {
        out.push(...failedHere.map((fov) => ({ fov, round: r.submission.round, jobId: `${children.jobId}:${fov}`, reason: 'Essential container in task exited' })));
      }
    }
    return out;
  }

  private summary() {
    const missing = [...new Set(this.rounds.flatMap((r) => [...r.children].filter(([, s]) => s !== 'succeeded').map(([f]) => f)))].filter(
      (f) => !this.rounds.some((r) => r.children.get(f) === 'succeeded'),
    );
    return { fovs_expected: this.fovs, fovs_processed: this.fovs - missing.length, fovs_missing: missing, failures: {}, spots_total: 10, spots_per_fov: {}, counts_per_gene: { ACTB: 10 } };
  }

  run(a: Action): void {
    switch (a.kind) {
      case 'advance':
        return this.advance(a.pick, a.steps);
      case 'observe': {
        const fact = this.observation(a.keepFailures);
        if (!fact) return;
        this.snapshots.push(fact);
        // Stale: the oldest read of this round, delivered after newer ones.
        const old = a.stale ? this.snapshots.find((x) => x.type === 'batch' && x.round === (fact as { round: number }).round) : undefined;
        this.apply(old ?? fact);
        if (a.duplicate) this.apply(fact);
        return;
      }
      case 'decide':
        return this.apply({ type: 'decision', decision: a.approve ? 'approved' : 'rejected', by: `U${a.by + 1}` });
      case 'cancel':
        return this.apply({ type: 'cancel', by: 'U2' });
      case 'retry':
        return this.apply({ type: 'retry', by: 'U1' });
      case 'tick':
        this.now += a.minutes * 60_000;
        return this.apply({ type: 'tick' });
      case 'slack':
        this.slackUp = a.up;
        return;
    }
  }

  /** Slack back, Batch finishing everything, and observations until nothing changes. */
  settle(): void {
    this.slackUp = true;
    for (let i = 0; i < 20; i++) {
      this.advance(0, 1_000);
      this.now += 10 * 60_000;
      const fact = this.observation();
      const before = JSON.stringify(this.m);
      if (fact) this.apply(fact);
      this.apply({ type: 'tick' });
      if (JSON.stringify(this.m) === before && !this.current?.salvage?.status === false) break;
    }
  }
}

function describeArray(a: Submission['arrays'][number], r: RoundTruth): JobDescription {
  const states = Array.from({ length: a.unit.size }, (_, i) => r.children.get(fovsOfChild(a.unit, i)[0]!)!);
  const count = (s: Child) => states.filter((x) => x === s).length;
  const ended = count('succeeded') + count('failed') === states.length;
  const status = ended ? (count('failed') ? 'FAILED' : 'SUCCEEDED') : count('running') ? 'RUNNING' : 'PENDING';
  return { jobId: a.jobId, jobName: a.jobName, status, statusSummary: { SUCCEEDED: count('succeeded'), FAILED: count('failed'), RUNNING: count('running'), PENDING: count('waiting') } };
}

const RANK: Partial<Record<RunManifest['status'], number>> = { submitting: 0, running: 1, merging: 2 };

/** Within a round, neither progress nor the run's state moves backwards. */
function checkProgressMonotone(before: RunManifest, after: RunManifest): void {
  const sameRound = before.submissions.length === after.submissions.length && before.progress.total === after.progress.total;
  if (sameRound) expect(after.progress.succeeded + after.progress.failed).toBeGreaterThanOrEqual(before.progress.succeeded + before.progress.failed);
  const [was, is] = [RANK[before.status], RANK[after.status]];
  if (sameRound && !before.pendingSubmission && was !== undefined && is !== undefined) expect(is).toBeGreaterThanOrEqual(was);
}

/** The stored manifest holds the claim of every chat effect sent from it. */
function expectClaimHeld(m: RunManifest, effect: Effect): void {
  switch (effect.type) {
    case 'digest':
      for (const f of effect.failures) expect(m.failures.find((x) => x.round === f.round && x.fov === f.fov)?.reported).toBe(true);
      return;
    case 'results':
    case 'failed-run':
      expect(m.notify.resultsPosted).toBe(true);
      expect(m.notify.deliveringSince).toBeDefined();
      return;
    case 'picture':
      expect(m.notify.deliveringSince).toBeDefined();
      return;
    case 'stuck-warning':
      expect(m.notify.stuckWarnedAt).toBeDefined();
      return;
    case 'update-root':
      if (effect.restore) expect(m.notify.lastProgressKey).toBe(`${m.status}|${JSON.stringify(m.progress)}`);
      return;
    default:
      return;
  }
}

const scenario = fc.record({
  fovs: fc.integer({ min: 1, max: 12 }),
  failing: fc.uniqueArray(fc.nat(11), { maxLength: 12 }),
  approval: fc.boolean(),
  actions: fc.array(action, { maxLength: 60 }),
});

function play(s: { fovs: number; failing: number[]; approval: boolean; actions: Action[] }): World {
  const world = new World(s.fovs, new Set(s.failing.filter((f: number) => f < s.fovs)), s.approval);
  for (const a of s.actions) world.run(a);
  world.settle();
  return world;
}

const digested = (w: World) => new Set(w.sent.flatMap((x) => (x.effect.type === 'digest' ? x.effect.failures.map((f: FovFailure) => `${f.round}:${f.fov}`) : [])));

describe('lifecycle model', () => {
  it('keeps every invariant under random facts, duplicates, stale reads, losses and Slack outages', () => {
    fc.assert(
      fc.property(scenario, (s) => {
        const w = play(s);
        // One submission per approval (and per retry round).
        for (const count of w.submitEffects.values()) expect(count).toBe(1);
        const approved = w.m.approval.decision === 'approved' || !w.m.approval.required;
        if (!approved) expect(w.rounds).toHaveLength(0);
        if (w.cancelled || !w.rounds.length) return;
        // Every failed FOV Batch knows of is in the manifest and was reported in a digest.
        const failed = w.rounds.flatMap((r) => [...r.children].filter(([, st]) => st === 'failed').map(([f]) => `${r.submission.round}:${f}`));
        for (const key of failed) expect(digested(w)).toContain(key);
        // The final state matches Batch's, and the last root message shows it.
        const lastRound = w.current!;
        const anySucceeded = w.rounds.some((r) => [...r.children.values()].includes('succeeded'));
        const missing = [...lastRound.children.keys()].filter((f) => !w.rounds.some((r) => r.children.get(f) === 'succeeded'));
        const expected = !anySucceeded ? 'failed' : missing.length || (lastRound.merge === 'FAILED' && lastRound.salvage) ? expectEnd(w) : 'succeeded';
        expect(w.m.status).toBe(expected);
        const roots = w.sent.filter((x) => x.effect.type === 'update-root');
        expect(roots.at(-1)!.manifest.status).toBe(w.m.status);
        const endings = w.sent.filter((x) => x.effect.type === 'results' || x.effect.type === 'failed-run');
        expect(endings.at(-1)!.effect.type).toBe(w.m.status === 'failed' ? 'failed-run' : 'results');
        // Each round ends in one message, however often its end was observed.
        expect(endings).toHaveLength(w.rounds.length);
      }),
      { numRuns: 400, seed: SEED },
    );
  });

  it('a stale read of Batch never steps the progress backwards', () => {
    const w = new World(8, new Set(), false);
    w.run({ kind: 'advance', pick: 0, steps: 2 });
    w.run({ kind: 'observe', stale: false, keepFailures: 255, duplicate: false });
    w.run({ kind: 'advance', pick: 0, steps: 8 });
    w.run({ kind: 'observe', stale: false, keepFailures: 255, duplicate: false });
    const done = w.m.progress.succeeded;
    w.run({ kind: 'observe', stale: true, keepFailures: 255, duplicate: false });
    expect(w.m.progress.succeeded).toBe(done);
  });

  it('a failed run is announced once, however long the reconciler keeps looking (found by the model)', () => {
    const advance = (steps: number): Action => ({ kind: 'advance', pick: 0, steps });
    const look: Action = { kind: 'observe', stale: false, keepFailures: 0, duplicate: false };
    const w = play({ fovs: 1, failing: [0], approval: false, actions: [advance(2), look, advance(1), look, { kind: 'tick', minutes: 11 }] });
    expect(w.m.status).toBe('failed');
    expect(w.sent.filter((x) => x.effect.type === 'failed-run')).toHaveLength(1);
    expect(w.m.notify.deliveringSince).toBeUndefined();
  });

  it('fifty concurrent approvals submit once and answer every other approver', () => {
    const w = new World(4, new Set(), true);
    for (let i = 0; i < 50; i++) w.run({ kind: 'decide', approve: true, by: 1 + (i % 3) });
    expect(w.submitEffects.get(0)).toBe(1);
    expect(w.rounds).toHaveLength(1);
    expect(w.m.approval.decidedBy).toBe('U2');
  });

  it('a run with failing FOVs ends partially failed after a salvage merge, and a retry finishes it', () => {
    const w = play({ fovs: 6, failing: [1, 4], approval: false, actions: [] });
    expect(w.m.status).toBe('partially-failed');
    expect(w.m.results?.fovsMissing).toEqual([1, 4]);
    w.run({ kind: 'retry' });
    expect(w.m.pendingSubmission).toBeUndefined();
    expect(w.current!.submission.fovs).toBe('1,4');
    w.settle();
    expect(w.m.status).toBe('succeeded');
  });
});

/** A run whose last round had failures ends partially failed when the salvage merge ran. */
function expectEnd(w: World): string {
  return w.current!.salvage?.status === 'SUCCEEDED' || w.current!.merge === 'SUCCEEDED' ? 'partially-failed' : 'failed';
}
