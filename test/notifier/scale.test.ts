import { describe, expect, it } from 'vitest';
import { simulate } from '../../bench/notifier-sim.bench.js';

describe('a 10,000-FOV run with 500 failures (the simulation in bench/)', () => {
  it('costs Slack a bounded number of calls, names every failed FOV, and ends with the right message', async () => {
    const r = await simulate(7);
    expect(r.events).toBeGreaterThan(55_000);
    expect(r.invocations).toBeLessThanOrEqual(1_500);
    expect(r.slackCalls).toBeLessThanOrEqual(200);
    expect(r.failedNamed).toBe(r.failedFovs);
    expect(r.finalMessage).toMatch(/Finished with failed FOVs — .*9,500 succeeded · 500 failed of 10,000 FOVs/);
    expect(r.slackByMethod).toMatchObject({ post: 1, upload: 1 });
  });
});
