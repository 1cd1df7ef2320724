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
