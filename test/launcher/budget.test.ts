/**
 * Money through the real launcher: a run estimated above the lab's cost threshold waits for
 * approval, and rolling budgets per requester and per channel see through a run split in two,
 * charged with estimates at launch and corrected with what a finished run actually took.
 */
import { describe, expect, it } from 'vitest';
import { launchedRun } from '../notifier/harness.js';
import { updateManifest } from '../../src/run/manifest-store.js';
import type { RunManifest } from '../../src/run/manifest.js';
import { renderText } from '../../src/messages/text.js';

/** A price that makes the arithmetic readable: 900 s per FOV at $1 an hour, no start-up: $0.25 a FOV, $1.00 per 4-FOV run. */
const cost = (more: object) => ({
  queues: { spot: { vcpuHourUsd: 1, gbHourUsd: 0, startupSeconds: 0, minimumBilledSeconds: 0 } },
  defaultSecondsPerFov: 900,
  ...more,
});

async function lab(costPolicy: object) {
  const h = await launchedRun(4, {}, { policy: { approval: { fovThreshold: 1_000_000, approvers: ['UPI'] }, cost: cost(costPolicy) } });
  const ask = (userId = 'U1', channel = 'C1', dryRun = false) =>
    h.launcher.handle({ type: 'RunRequested', userId, channel, request: { experiment: 's3://lab-data/exp/experiment.json', recipe: 's3://lab-data/recipes/iss.py', fovs: { kind: 'all' }, dryRun } });
  const runs = (): RunManifest[] =>
    [...h.store.objects.keys()]
      .filter((k) => k.endsWith('/run.json'))
      .map((k) => JSON.parse(h.store.objects.get(k)!.toString()) as RunManifest)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.runId.localeCompare(b.runId));
  const refusals = () => h.chat.of('ephemeral').map((c) => c.message?.text ?? '');
  return { ...h, ask, runs, refusals };
}

describe('approval above a cost threshold', () => {
  it('a run estimated above it waits for approval, and its card shows the estimate and the numbers', async () => {
    const h = await lab({ approvalAboveUsd: 0.5 });
    const [m] = h.runs();
    expect(m!.status).toBe('awaiting-approval');
    expect(m!.approval.reasons).toEqual(["the estimated cost $1.00 is above this lab's $0.50 approval threshold"]);
    const card = renderText(h.chat.of('post')[0]!.message!);
    expect(card).toContain('Estimate ≈ 4 FOVs × 15 min ≈ 1.0 vCPU-hours ≈ $1.00 on Fargate Spot');
    expect(card).toContain("Needs approval: the estimated cost $1.00 is above this lab's $0.50 approval threshold");
  });
});

describe('rolling budgets', () => {
  it('refuse the second half of a split run when the lab refuses over budget, with spent, this run and the budget', async () => {
    const h = await lab({ budgets: { requester: { dayUsd: 1.5 }, overBudget: 'refuse' } });
    expect(h.runs().map((m) => m.status)).toEqual(['running']);
    await h.ask();
    expect(h.runs()).toHaveLength(1); // nothing created for the second request
    expect(h.refusals().at(-1)).toContain("This run would go over budget: <@U1>'s 24-hour budget: $1.00 spent + $1.00 this run = $2.00, above $1.50. Nothing was launched.");
    // Someone else in another channel has their own budget.
    await h.ask('U2', 'C2');
    expect(h.runs()).toHaveLength(2);
    // A day later the first run no longer counts.
    h.advance(25 * 3_600_000);
    await h.ask();
    expect(h.runs()).toHaveLength(3);
  });

  it('ask for approval instead when the lab says so, with the numbers as the reason', async () => {
    const h = await lab({ budgets: { channel: { monthUsd: 1.5 } } });
    await h.ask('U2'); // another person, the same channel: the channel's budget counts both
    const second = h.runs().find((m) => m.requester.userId === 'U2')!;
    expect(second.status).toBe('awaiting-approval');
    expect(second.approval.reasons).toEqual(["over budget: <#C1>'s 30-day budget: $1.00 spent + $1.00 this run = $2.00, above $1.50"]);
  });

  it('a 30-day budget remembers a run of three weeks ago', async () => {
    const h = await lab({ budgets: { requester: { monthUsd: 1.5 }, overBudget: 'refuse' } });
    h.advance(21 * 24 * 3_600_000);
    await h.ask();
    expect(h.refusals().at(-1)).toContain("<@U1>'s 30-day budget: $1.00 spent + $1.00 this run = $2.00, above $1.50");
    h.advance(10 * 24 * 3_600_000); // 31 days after the first run
    await h.ask();
    expect(h.runs()).toHaveLength(2);
  });

  it('charge a finished run with what it actually took, not its estimate', async () => {
    // $1.00 estimated for the first run: charged with that, any second run is over $1.02.
    const h = await lab({ budgets: { requester: { dayUsd: 1.02 }, overBudget: 'refuse' } });
    // The first run finished: its FOVs took 2 minutes in all, $0.03 at this price; the second is estimated from it ($0.03).
    await updateManifest(h.store, h.runId, (m) => ({
      ...m,
      status: 'succeeded',
      results: { spotsTotal: 10, fovsProcessed: 4, fovsMissing: [], topGenes: [], compute: { fovs: 4, wallSeconds: 120, cpuSeconds: 100 } },
    }));
    await h.ask();
    const second = h.runs().find((m) => m.runId !== h.runId)!;
    expect(second.status).toBe('running');
    // …and it taught the estimate: 30 s per FOV for this recipe, measured.
    expect(second.estimate).toMatchObject({ secondsPerFov: 30, source: 'history', historyRuns: 1 });
  });

  it('a dry run over budget launches nothing and says it would be refused', async () => {
    const h = await lab({ budgets: { requester: { dayUsd: 1.5 }, overBudget: 'refuse' } });
    await h.ask('U1', 'C1', true);
    const dry = h.runs().find((m) => m.request.dryRun)!;
    expect(dry.status).toBe('planned');
    expect(renderText(h.chat.of('post').at(-1)!.message!)).toContain(
      "Without dry-run this run would need approval: over budget, which this lab refuses: <@U1>'s 24-hour budget: $1.00 spent + $1.00 this run = $2.00, above $1.50",
    );
  });
});

describe('a retry spends money too', () => {
  /** The first run (4 FOVs, $1.00) ended with FOVs 1 and 2 failed: a retry reruns those two, $0.50. */
  async function failedTwo(costPolicy: object) {
    const h = await lab(costPolicy);
    await updateManifest(h.store, h.runId, (m) => ({
      ...m,
      status: 'partially-failed',
      failures: [1, 2].map((fov) => ({ fov, reason: 'Host EC2 (instance i-0abc) terminated.', jobId: `j${fov}`, round: 0, reported: true, kind: 'reclaimed' as const })),
    }));
    const retry = (userId: string) => h.launcher.handle({ type: 'RunRetryRequested', userId, channel: 'C1', runId: h.runId });
    return { ...h, retry };
  }

  it('over the asker\'s budget, a retry is refused with the numbers, and nothing is rerun', async () => {
    const h = await failedTwo({ budgets: { requester: { dayUsd: 1.2 }, overBudget: 'refuse' } });
    await h.retry('U1');
    expect(h.refusals().at(-1)).toBe(
      `:warning: Retrying run ${h.runId} would go over budget: <@U1>'s 24-hour budget: $1.00 spent + $0.50 this retry = $1.50, above $1.20. Nothing was rerun. An approver or a lab admin may retry it (/starfish retry ${h.runId}), or retry once the budget has rolled over.`,
    );
    expect(h.runs()[0]!.status).toBe('partially-failed');
    expect(h.runs()[0]!.submissions).toHaveLength(1);
  });

  it('within the budget, or over it but asked by an approver, the retry reruns the failed FOVs', async () => {
    const roomy = await failedTwo({ budgets: { requester: { dayUsd: 1.6 }, overBudget: 'refuse' } });
    await roomy.retry('U1');
    expect(roomy.runs()[0]!.submissions.at(-1)).toMatchObject({ round: 1, fovs: '1-2' });
    // The channel's budget counts everyone's runs there: over it for anyone, but an approver may.
    const tight = await failedTwo({ budgets: { channel: { dayUsd: 1.2 } } });
    await tight.retry('U1');
    expect(tight.refusals().at(-1)).toContain("<#C1>'s 24-hour budget: $1.00 spent + $0.50 this retry = $1.50, above $1.20");
    await tight.retry('UPI');
    expect(tight.runs()[0]!.submissions.at(-1)).toMatchObject({ round: 1, fovs: '1-2' });
  });
});
