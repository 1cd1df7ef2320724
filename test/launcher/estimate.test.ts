/**
 * The estimate a launched run carries and the packing chosen from it (a lab's cost.packFovs), as
 * the person approving it sees them on the run's message.
 */
import { describe, expect, it } from 'vitest';
import { launchedRun } from '../notifier/harness.js';
import { renderText } from '../../src/messages/text.js';

describe('the estimate on a launched run', () => {
  it('one FOV per child unless the lab packs: 2,000 FOVs are 2,000 children at the default 60 s', async () => {
    const h = await launchedRun(2_000);
    const m = await h.manifest();
    expect(m.plan.perChild).toBeUndefined();
    expect(m.estimate).toMatchObject({ fovsPerChild: 1, children: 2_000, secondsPerFov: 60, source: 'default' });
    expect(m.inputs.recipeSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(renderText(h.chat.of('post')[0]!.message!)).toContain('Estimate ≈ 2,000 FOVs × 60 s ≈ 58 vCPU-hours ≈ $1.02 on Fargate Spot, ≈ 14 min at 256 vCPUs');
  });

  it('packed from the estimate: children of at least 450 s (start-up a tenth) while the 256 slots stay full', async () => {
    const h = await launchedRun(2_000, {}, { policy: { approval: { fovThreshold: 1_000_000 }, cost: { packFovs: true } } });
    const m = await h.manifest();
    // 450 s needs 8 FOVs of 60 s, but 2,000 / 256 slots is 7 a child: 7 it is, 286 children.
    expect(m.plan.perChild).toBe(7);
    expect(m.estimate).toMatchObject({ fovsPerChild: 7, children: 286 });
    expect(renderText(h.chat.of('post')[0]!.message!)).toContain('≈ 2,000 FOVs × 60 s ≈ 37 vCPU-hours ≈ $0.65 on Fargate Spot, ≈ 16 min at 256 vCPUs in 286 jobs of up to 7 FOVs');
  });
});
