/** The price model follows what the stack deploys: job sizes and queue widths from the deployment settings. */
import { describe, expect, it } from 'vitest';
import { readSettings } from '../../infra/settings.js';
import { queuePrice } from '../../src/run/cost.js';

const base = { 'starfish:allowedBuckets': ['lab-data'] };

describe('the price model of a deployment', () => {
  it('adds nothing to the policy when the stack deploys the model’s defaults', () => {
    expect(readSettings(base).policy.cost).toBeUndefined();
  });

  it('estimates with the deployed FOV job size and queue widths, and the lab’s own price fields win', () => {
    const s = readSettings({
      ...base,
      'starfish:fovJob': '{"vcpus": 2, "memoryMiB": 8192}',
      'starfish:maxVcpus': '{"spot": 512}',
      'starfish:policy': '{"cost": {"queues": {"spot": {"vcpuHourUsd": 0.02, "maxVcpus": 1024}}}}',
    });
    expect(queuePrice(s.policy.cost, 'spot')).toMatchObject({ vcpus: 2, memoryGiB: 8, maxVcpus: 1024, vcpuHourUsd: 0.02, platform: 'fargate-spot' });
    expect(queuePrice(s.policy.cost, 'ondemand')).toMatchObject({ vcpus: 2, memoryGiB: 8, maxVcpus: 64, vcpuHourUsd: 0.04048 });
  });
});

describe('the Lambdas’ environment budget of a deployment', () => {
  const list = (k: number) => Array.from({ length: k }, (_, i) => `lab-archive-${String(i).padStart(3, '0')}`).join(',');
  const threw = (context: Record<string, unknown>) => {
    try {
      readSettings(context);
      return false;
    } catch {
      return true;
    }
  };
  /** The longest bucket list that fits beside the policy as the lab wrote it, with the model's default sizes. */
  const fullest = () => {
    let k = 1;
    while (!threw({ ...base, 'starfish:allowedBuckets': list(k + 1) })) k += 1;
    return { ...base, 'starfish:allowedBuckets': list(k) };
  };

  it('counts the job sizes the stack adds to the price model, not only the policy as written', () => {
    const settings = fullest();
    expect(threw(settings)).toBe(false);
    // The same settings with a larger FOV job: cost.queues grows the deployed policy past the budget.
    expect(() => readSettings({ ...settings, 'starfish:fovJob': '{"vcpus": 4, "memoryMiB": 16384}', 'starfish:maxVcpus': '{"spot": 1024, "ondemand": 512}' })).toThrow(
      /4 KB environment; keep them under 2600/,
    );
  });
});
