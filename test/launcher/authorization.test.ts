/**
 * Commands come from anyone in an allowed channel: tried as a colleague who should not, as a
 * channel that should not see, and as a requester who splits a run to avoid approval.
 */
import { describe, expect, it } from 'vitest';
import { launchedRun } from '../notifier/harness.js';
import { dispatch } from '../../src/command/dispatcher.js';
import { passed } from '../../src/result.js';
import type { Bus } from '../../src/ports.js';
import { runKeys } from '../../src/run/layout.js';

const POLICY = { approval: { fovThreshold: 1_000_000, approvers: ['UPI'] }, access: { admins: ['UADMIN'] } };

async function run(policy: unknown = POLICY) {
  const h = await launchedRun(4, {}, { policy });
  const bus: Bus = { publish: async () => undefined };
  const ask = (text: string, userId: string, channel = 'C1') =>
    dispatch({ store: h.store, bus, reader: { checkReadable: () => passed }, policy: h.deps.policy, allowPaths: false }, text, { userId, channel });
  const ephemerals = () => h.chat.of('ephemeral').map((c) => c.message?.text ?? '');
  return { ...h, ask, ephemerals };
}

describe('who may cancel and retry a run', () => {
  it('a colleague may not cancel someone else’s run; the requester, an approver and an admin may', async () => {
    const h = await run();
    await h.launcher.handle({ type: 'RunCancelled', userId: 'UBOB', channel: 'C1', runId: h.runId });
    expect((await h.manifest()).status).toBe('running');
    expect(h.ephemerals().at(-1)).toMatch(/was started by <@U1>; only they, an approver or a lab admin may cancel it/);
    expect(h.batch.cancelled).toEqual([]);

    for (const who of ['UPI', 'UADMIN']) {
      const other = await run();
      await other.launcher.handle({ type: 'RunCancelled', userId: who, channel: 'C1', runId: other.runId });
      expect((await other.manifest()).status).toBe('cancelled');
    }
  });

  it('a colleague may not retry someone else’s run', async () => {
    const h = await run();
    await h.launcher.handle({ type: 'RunRetryRequested', userId: 'UBOB', channel: 'C1', runId: h.runId });
    expect(h.ephemerals().at(-1)).toMatch(/only they, an approver or a lab admin may retry it/);
  });

  it('a lab that wants it may let anyone allowed to run cancel any run', async () => {
    const h = await run({ ...POLICY, access: { othersRuns: 'anyone' } });
    await h.launcher.handle({ type: 'RunCancelled', userId: 'UBOB', channel: 'C1', runId: h.runId });
    expect((await h.manifest()).status).toBe('cancelled');
  });
});

describe('what status and list show where', () => {
  it('another channel neither sees the run in list nor learns it exists from status', async () => {
    const h = await run();
    expect((await h.ask('list', 'U1')).message!.text).toMatch(/1 recent run/);
    const elsewhere = await h.ask('list', 'UEVE', 'COTHER');
    expect(JSON.stringify(elsewhere.message!.blocks)).not.toContain(h.runId);
    expect((await h.ask(`status ${h.runId}`, 'UEVE', 'COTHER')).message!.text).toMatch(new RegExp(`There is no run ${h.runId} here`));
    expect((await h.ask(`status ${h.runId}`, 'UEVE', 'C1')).message!.text).toContain(h.runId);
  });

  it('a direct message sees the requester’s own runs, wherever they were started, and nobody else’s', async () => {
    const h = await run();
    expect(JSON.stringify((await h.ask('list', 'U1', 'D0ALICE')).message!.blocks)).toContain(h.runId);
    expect(JSON.stringify((await h.ask('list', 'UEVE', 'D0EVE')).message!.blocks)).not.toContain(h.runId);
  });
});

describe('a corrupt manifest is that run’s problem only', () => {
  for (const [what, body] of [
    ['truncated', '{"version":1,"runId":"2611'],
    ['empty', ''],
    ['not JSON', '<!channel> hello'],
    ['schema-invalid', JSON.stringify({ version: 1, runId: 'x', status: 'exploded' })],
  ] as const) {
    it(`${what}: list marks it, status says so, the reconciler skips it and goes on`, async () => {
      const h = await run();
      const bad = '261125-zzzz';
      await h.store.put(runKeys(bad).manifest, body);
      const listed = JSON.stringify((await h.ask('list', 'U1')).message!.blocks);
      expect(listed).toContain(h.runId);
      expect(listed).toContain(`Run ${bad} cannot be read`);
      expect(listed).not.toContain('<!channel>');
      expect((await h.ask(`status ${bad}`, 'U1')).message!.text).toMatch(new RegExp(`Run ${bad} cannot be read: .*runs/${bad}/run.json`));
      const report = await h.reconciler.run();
      expect(report.unreadable).toEqual([bad]);
      expect(report.checked).toBe(1);
    });
  }
});

describe('splitting a run does not avoid approval', () => {
  it('runs under the threshold count against a daily allowance; past it, approval is asked', async () => {
    const h = await launchedRun(4, {}, { policy: { approval: { fovThreshold: 10, approvers: ['UPI'] } } });
    const again = () =>
      h.launcher.handle({
        type: 'RunRequested',
        userId: 'U1',
        channel: 'C1',
        request: { experiment: 's3://lab-data/exp/experiment.json', recipe: 's3://lab-data/recipes/iss.py', fovs: { kind: 'all' }, dryRun: false },
      });
    await again(); // 8 FOVs today
    await again(); // 12 > 10
    const manifests = [...h.store.objects.keys()].filter((k) => k.endsWith('/run.json')).map((k) => JSON.parse(h.store.objects.get(k)!.toString()));
    const waiting = manifests.filter((m) => m.status === 'awaiting-approval');
    expect(waiting).toHaveLength(1);
    expect(waiting[0].approval.reasons[0]).toMatch(/12 FOVs launched without approval in 24 hours is above this lab's 10-FOV daily allowance/);
    // A day later the allowance is fresh again.
    h.advance(25 * 3_600_000);
    await again();
    const latest = [...h.store.objects.keys()].filter((k) => k.endsWith('/run.json')).map((k) => JSON.parse(h.store.objects.get(k)!.toString())).sort((a, b) => b.createdAt.localeCompare(a.createdAt))[0];
    expect(latest.status).toBe('running');
  });
});
