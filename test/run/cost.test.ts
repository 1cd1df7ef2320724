/**
 * The price model, estimates and actual cost as a lab sees them: the estimate line on a run's
 * message, what a finished run cost from its jobs' timings, which history an estimate learns from,
 * and the messages a wrong price model gets.
 */
import { describe, expect, it } from 'vitest';
import { actualCost, billedCost, DEFAULT_QUEUE_PRICES, duration, estimateCost, estimateText, queuePrice, recordedCompute, secondsPerFov } from '../../src/run/cost.js';
import { costVerdict, estimateRun } from '../../src/run/budget.js';
import { parsePolicy } from '../../src/run/policy.js';
import { resultsSummarySchema, type ResultsSummary } from '../../src/run/results.js';
import { resultsMessage, rootMessage } from '../../src/messages/blocks.js';
import { renderText } from '../../src/messages/text.js';
import { manifest } from '../messages/fixtures.js';
import { loadPolicy, readEnv } from '../../src/config.js';

const spot = DEFAULT_QUEUE_PRICES.spot!;
const LINKS = { spotsCsv: { url: 's3://r/spots.csv', download: 'https://d/1' }, summaryJson: { url: 's3://r/summary.json', download: 'https://d/2' }, spotsPng: { url: 's3://r/spots.png', download: 'https://d/3' } };

/** merge_results.compute_summary's output for 4 FOVs (250, 300, 420, 230 s wall; 900 to 1,500 MiB peak). */
const COMPUTE = {
  fovs: 4,
  wall_seconds: 1200.0,
  cpu_seconds: 1000.0,
  peak_rss_mib: { p50: 900.0, p90: 1500.0, max: 1500.0 },
  slowest: [
    { fov: 2, wall_seconds: 420.0 },
    { fov: 1, wall_seconds: 300.0 },
    { fov: 0, wall_seconds: 250.0 },
    { fov: 3, wall_seconds: 230.0 },
  ],
};

/** summary.json as merge-results writes it, with the "compute" object of the packing contract. */
function summary(compute?: unknown): ResultsSummary {
  return resultsSummarySchema.parse({
    fovs_expected: 4,
    fovs_processed: 4,
    fovs_missing: [],
    failures: {},
    spots_total: 120,
    spots_per_fov: { '0': 30, '1': 30, '2': 30, '3': 30 },
    counts_per_gene: { ACTB: 100, GAPDH: 20 },
    ...(compute === undefined ? {} : { compute }),
  });
}

describe('the estimate before launch', () => {
  it('reads as the issue asks: FOVs × seconds, vCPU-hours, dollars on the platform, wall time at the queue’s vCPUs', () => {
    // 10,000 children of 45 s start-up + 40 s work = 850,000 container-seconds on a 1 vCPU, 4 GB job.
    const figures = estimateCost(spot, 10_000, 40);
    expect(figures.billedSeconds).toBe(850_000);
    expect(estimateText({ price: spot, secondsPerFov: 40, source: 'default', historyRuns: 0, ...figures })).toBe(
      '≈ 10,000 FOVs × 40 s ≈ 236 vCPU-hours ≈ $4.13 on Fargate Spot, ≈ 57 min at 256 vCPUs (time per FOV is the lab default: no earlier run of this recipe has timings)',
    );
  });

  it('packed FOVs pay one start-up per child: 20 per child halves the cost and the wall time of 40 s FOVs', () => {
    const one = estimateCost(spot, 10_000, 40, 1);
    const packed = estimateCost(spot, 10_000, 40, 20);
    expect(packed.children).toBe(500);
    expect(packed.billedSeconds).toBe(500 * (45 + 20 * 40));
    expect(packed.usd).toBeLessThan(one.usd * 0.5);
    expect(packed.wallSeconds).toBe(2 * (45 + 20 * 40)); // 500 children in two waves of 256
    expect(estimateText({ price: spot, secondsPerFov: 40, source: 'history', historyRuns: 3, ...packed })).toBe(
      '≈ 10,000 FOVs × 40 s ≈ 117 vCPU-hours ≈ $2.05 on Fargate Spot, ≈ 28 min at 256 vCPUs in 500 jobs of up to 20 FOVs (time per FOV measured on 3 earlier runs of this recipe)',
    );
  });

  it('the last child of a chunked list takes what is left, and a short child is billed Fargate’s one-minute minimum', () => {
    const q = DEFAULT_QUEUE_PRICES.ondemand!;
    expect(estimateCost(q, 1, 5).billedSeconds).toBe(60);
    // 25 FOVs, 10 per child: 10, 10 and 5, each with 45 s of start-up.
    expect(estimateCost(q, 25, 2, 10)).toMatchObject({ children: 3, billedSeconds: 2 * (45 + 20) + 60 });
  });

  it('the root message of a dry run shows the estimate, and the local backend costs nothing in money', () => {
    const policy = parsePolicy({}, 'test');
    const estimate = estimateRun(policy, [], { queue: 'local', fovCount: 4, recipeSha256: 'abc' });
    const text = renderText(rootMessage(manifest({ status: 'planned', queue: 'local', estimate, plan: { experimentFovCount: 4, fovs: '0-3', fovCount: 4, units: [{ size: 4, fovs: '0-3' }] } })));
    expect(text).toContain('Estimate ≈ 4 FOVs × 60 s ≈ 0.1 vCPU-hours, no cloud cost, ≈ 61 s at 4 vCPUs');
  });
});

describe('history by recipe', () => {
  const run = (recipeSha256: string, fovs: number, wallSeconds: number) => ({ recipeSha256, compute: { fovs, wallSeconds, cpuSeconds: wallSeconds } });

  it('prefers the same recipe’s measured seconds per FOV over the default, weighting runs by their FOVs', () => {
    const past = [run('other', 100, 100 * 500), run('mine', 10, 10 * 30), run('mine', 30, 30 * 10), { recipeSha256: 'mine' }];
    expect(secondsPerFov(past, 'mine', 60)).toEqual({ seconds: 600 / 40, source: 'history', runs: 2 });
    expect(secondsPerFov(past, 'new', 60)).toEqual({ seconds: 60, source: 'default', runs: 0 });
  });

  it('the launcher’s estimate uses it: a run of the same recipe with timings on its manifest', () => {
    const policy = parsePolicy({ cost: { defaultSecondsPerFov: 300 } }, 'test');
    const past = manifest({ inputs: { ...manifest().inputs, recipeSha256: 'mine' }, status: 'succeeded', results: { spotsTotal: 1, fovsProcessed: 10, fovsMissing: [], topGenes: [], compute: { fovs: 10, wallSeconds: 200, cpuSeconds: 180 } } });
    expect(estimateRun(policy, [past], { queue: 'spot', fovCount: 100, recipeSha256: 'mine' })).toMatchObject({ secondsPerFov: 20, source: 'history', historyRuns: 1 });
    expect(estimateRun(policy, [past], { queue: 'spot', fovCount: 100, recipeSha256: 'edited' })).toMatchObject({ secondsPerFov: 300, source: 'default' });
  });
});

describe('actual cost from recorded timings', () => {
  it('the results message says what was measured (FOV time, duration) and what is modeled (start-ups, price)', () => {
    const policy = parsePolicy({}, 'test');
    const estimate = estimateRun(policy, [], { queue: 'spot', fovCount: 4, recipeSha256: 'x' });
    const m = manifest({
      status: 'succeeded',
      updatedAt: '2026-11-25T10:12:00.000Z',
      submissions: [{ round: 0, submittedAt: '2026-11-25T10:00:00.000Z', fovs: '0-3', arrays: [] }],
      plan: { experimentFovCount: 4, fovs: '0-3', fovCount: 4, units: [{ size: 4, fovs: '0-3' }] },
      estimate,
    });
    // What merge_results.compute_summary writes for four FOVs of 250, 300, 420 and 230 s (run on them to make this fixture).
    const s = summary(COMPUTE);
    const text = renderText(resultsMessage(m, s, LINKS));
    expect(text).toContain('Duration 12 min from submission to results (measured)');
    expect(text).toContain('Compute 20 min of FOV work over 4 FOVs, 17 min of CPU (measured by the jobs) · peak memory per FOV median 900 MiB, max 1,500 MiB');
    expect(text).toContain('Slowest FOVs FOV 2 7 min, FOV 1 5 min, FOV 0 4 min, FOV 3 4 min');
    // 4 children × 45 s start-up + 1,200 s measured = 1,380 s at $0.017478 an hour.
    const actual = actualCost(spot, recordedCompute(s)!, 4);
    expect(actual.billedSeconds).toBe(1380);
    expect(text).toContain(`Cost ≈ $0.0067 on Fargate Spot: the measured FOV time plus 4 container starts of 45 s (modeled)`);
    expect(text).toContain('estimated at launch ≈ $0.0020 on Fargate Spot');
  });

  it("with Batch's start and stop of each container, the cost is what they ran, start-ups measured, not modeled", () => {
    const policy = parsePolicy({}, 'test');
    const estimate = estimateRun(policy, [], { queue: 'spot', fovCount: 4, recipeSha256: 'x' });
    const results = { spotsTotal: 1, fovsProcessed: 4, fovsMissing: [], topGenes: [], containers: { containers: 4, seconds: 1_500 } };
    const m = manifest({ status: 'succeeded', submissions: [{ round: 0, submittedAt: '2026-11-25T10:00:00.000Z', fovs: '0-3', arrays: [] }], estimate, results });
    const text = renderText(resultsMessage(m, summary(COMPUTE), LINKS));
    // 1,500 s at $0.017478 an hour (1 vCPU at $0.012144 + 4 GB at $0.0013335).
    expect(billedCost(spot, results.containers).billedSeconds).toBe(1_500);
    expect(text).toContain("Cost ≈ $0.0073 on Fargate Spot: 4 containers ran 25 min in all (AWS Batch's start and stop of each, start-ups included)");
    // Containers that ran less than the minimum are billed the minimum.
    expect(billedCost(spot, { containers: 40, seconds: 100 }).billedSeconds).toBe(40 * 60);
  });

  it('a local run is measured the same way and costs no money', () => {
    const estimate = estimateRun(parsePolicy({}, 'test'), [], { queue: 'local', fovCount: 4, recipeSha256: 'x' });
    const text = renderText(resultsMessage(manifest({ status: 'succeeded', queue: 'local', estimate }), summary(COMPUTE), LINKS));
    expect(text).toContain('Compute 20 min of FOV work over 4 FOVs');
    expect(text).toContain('Cost no cloud cost: it ran on this machine');
  });

  it('a run whose jobs recorded no timings shows only its estimate, and says nothing was measured', () => {
    const estimate = estimateRun(parsePolicy({}, 'test'), [], { queue: 'spot', fovCount: 4, recipeSha256: 'x' });
    const text = renderText(resultsMessage(manifest({ status: 'succeeded', estimate }), summary(), LINKS));
    expect(text).toContain("Cost estimated at launch ≈ $0.0020 on Fargate Spot; this run's jobs recorded no timings, so nothing was measured");
    expect(text).not.toContain('Compute');
  });

  it('seconds per FOV divide by the FOVs measured, failed ones included (their time was spent too)', () => {
    const s = resultsSummarySchema.parse({ ...summary(COMPUTE), fovs_processed: 3, fovs_missing: [3], failures: { '3': 'boom' }, compute: { ...COMPUTE } });
    expect(recordedCompute(s)).toEqual({ fovs: 4, wallSeconds: 1200, cpuSeconds: 1000 });
  });

  it('a job-written "compute" that makes no sense is dropped; the spots are still the results', () => {
    const s = summary({ wall_seconds: -5, cpu_seconds: 'lots' });
    expect(s.compute).toBeUndefined();
    expect(s.spots_total).toBe(120);
    expect(recordedCompute(s)).toBeUndefined();
  });
});

describe('approval above a cost threshold', () => {
  it('an estimate over the threshold is an approval reason with both numbers; under it, none', () => {
    const policy = parsePolicy({ cost: { approvalAboveUsd: 3 } }, 'test');
    const big = estimateRun(policy, [], { queue: 'spot', fovCount: 10_000, recipeSha256: 'x' }); // 10,000 × (45 + 60) s at $0.017478 an hour ≈ $5.10
    expect(costVerdict(policy, big, [], { userId: 'U1', channel: 'C1' }, Date.now()).approval).toEqual(['the estimated cost $5.10 is above this lab\'s $3.00 approval threshold']);
    const small = estimateRun(policy, [], { queue: 'spot', fovCount: 1_000, recipeSha256: 'x' });
    expect(costVerdict(policy, small, [], { userId: 'U1', channel: 'C1' }, Date.now()).approval).toEqual([]);
  });
});

describe('the price model in the policy', () => {
  it('a lab overrides one field of a queue and keeps the other defaults', () => {
    const policy = parsePolicy({ cost: { queues: { spot: { vcpuHourUsd: 0.02 } } } }, 'lab-policy.json');
    expect(queuePrice(policy.cost, 'spot')).toEqual({ ...spot, vcpuHourUsd: 0.02 });
  });

  it('a wrong price names the field and shows a cost example', () => {
    expect(() => parsePolicy({ cost: { queues: { spot: { vcpuHourUsd: -1 } } } }, 'lab-policy.json')).toThrow(
      /The policy in lab-policy\.json is not valid: cost\.queues\.spot\.vcpuHourUsd: .*Example: \{"cost": \{"queues": \{"spot": \{"vcpuHourUsd": 0\.0135/,
    );
    expect(() => parsePolicy({ cost: { budgets: { requester: { daily: 5 } } } }, 'lab-policy.json')).toThrow(/cost\.budgets\.requester: .*daily.*Example: \{"cost"/);
    expect(() => parsePolicy({ cost: { budgets: { overBudget: 'warn' } } }, 'lab-policy.json')).toThrow(/cost\.budgets\.overBudget: .*"approval".*"refuse"/);
  });

  it('the local queue is as wide as the process executor: STARFISH_CONCURRENCY, unless the policy says otherwise', () => {
    expect(queuePrice(loadPolicy(readEnv({ STARFISH_CONCURRENCY: '3' }), 'me').cost, 'local').maxVcpus).toBe(3);
  });

  it('a queue without built-in prices must be priced in full, and the message lists what is missing', () => {
    expect(() => parsePolicy({ cost: { queues: { gpu: { platform: 'ec2', vcpus: 8 } } } }, 'lab-policy.json')).toThrow(
      /cost\.queues\.gpu: queue "gpu" has no built-in prices, so it needs every field; missing memoryGiB, vcpuHourUsd, gbHourUsd, minimumBilledSeconds, startupSeconds, maxVcpus \(e\.g\. "gpu": \{"platform":"ec2","vcpus":4,"memoryGiB":60,/,
    );
  });
});

describe('the ETA in the progress line', () => {
  const running = (over: Partial<ReturnType<typeof manifest>>) =>
    manifest({
      submissions: [{ round: 0, submittedAt: '2026-11-25T10:00:00.000Z', fovs: '0-9999', arrays: [] }],
      updatedAt: '2026-11-25T10:20:00.000Z',
      ...over,
    });

  it('counts the FOVs ended per minute since the first one ended, and says how long the rest takes at that rate', () => {
    // 2,001 ended; 2,000 of them in the 10 minutes since the first: 200 a minute, 8,000 left: 40 min.
    const m = running({ progress: { total: 10_000, succeeded: 2_000, failed: 1, running: 256, waiting: 7_743, firstEndedAt: '2026-11-25T10:10:00.000Z' } });
    expect(renderText(rootMessage(m))).toContain('2,000 succeeded · 1 failed of 10,000 FOVs · 256 running · 7,743 waiting · ≈ 40 min left at 200 FOVs/min');
  });

  it('counts from the submission when the manifest does not say when the first FOV ended', () => {
    const m = running({ progress: { total: 100, succeeded: 10, failed: 0, running: 5, waiting: 85 } });
    expect(renderText(rootMessage(m))).toContain('≈ 3.0 h left at 0.5 FOVs/min');
  });

  it('a slow run reads its rate to one significant digit, not "0.0 FOVs/min"', () => {
    const m = running({ updatedAt: '2026-11-25T12:00:00.000Z', progress: { total: 100, succeeded: 3, failed: 0, running: 5, waiting: 92 } });
    // 3 FOVs in 120 minutes: 0.025 a minute, 97 left: 3,880 minutes.
    expect(renderText(rootMessage(m))).toContain('≈ 65 h left at 0.03 FOVs/min');
  });

  it('shows none while the rate rests on less than half a minute (a small local run)', () => {
    const m = running({ updatedAt: '2026-11-25T10:10:20.000Z', progress: { total: 4, succeeded: 2, failed: 0, running: 2, waiting: 0, firstEndedAt: '2026-11-25T10:10:00.000Z' } });
    expect(renderText(rootMessage(m))).not.toContain('left at');
    expect(renderText(rootMessage({ ...m, updatedAt: '2026-11-25T10:11:00.000Z' }))).toContain('≈ 2 min left at 1.0 FOVs/min');
  });

  it('reads a time under ten seconds to a tenth ("0.3 s", not "0 s")', () => {
    expect([duration(0.3), duration(0.01), duration(9.94), duration(42)]).toEqual(['0.3 s', '< 0.1 s', '9.9 s', '42 s']);
  });

  it('shows none before any FOV has ended, nor once the run is over', () => {
    expect(renderText(rootMessage(running({ progress: { total: 100, succeeded: 0, failed: 0, running: 5, waiting: 95 } })))).not.toContain('left at');
    expect(renderText(rootMessage(running({ status: 'cancelled', progress: { total: 100, succeeded: 10, failed: 0, running: 0, waiting: 0 } })))).not.toContain('left at');
  });
});
