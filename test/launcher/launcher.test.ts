import { describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { launchedRun } from '../notifier/harness.js';

const request = (requestId?: string) => ({
  type: 'RunRequested' as const,
  userId: 'U1',
  channel: 'C1',
  ...(requestId ? { requestId } : {}),
  request: { experiment: 's3://lab-data/exp/experiment.json', recipe: 's3://lab-data/recipes/iss.py', fovs: { kind: 'all' as const }, dryRun: false },
});

const runs = (keys: Iterable<string>) => [...keys].filter((k) => k.endsWith('/run.json'));

describe('launcher', () => {
  it('makes one run of a request delivered twice', async () => {
    const h = await launchedRun(4);
    const before = runs(h.store.objects.keys()).length;
    const id = randomUUID();
    await h.launcher.handle(request(id));
    await h.launcher.handle(request(id));
    expect(runs(h.store.objects.keys()).length).toBe(before + 1);
  });

  it('says which jobs need a person when terminating a half-submitted run fails', async () => {
    const h = await launchedRun(4);
    h.batch.submitMerge = async () => {
      throw new Error('ClientException: job queue is disabled');
    };
    h.batch.cancel = async () => {
      throw new Error('ServerException: internal');
    };
    await h.launcher.handle(request());
    const key = runs(h.store.objects.keys()).sort().find((k) => !k.includes(h.runId))!;
    const manifest = JSON.parse(h.store.objects.get(key)!.toString());
    expect(manifest.status).toBe('failed');
    expect(manifest.statusReason).toMatch(/could not submit the jobs \(ClientException: job queue is disabled\); terminating the jobs already submitted failed too \(ServerException: internal\): check /);
    expect(h.chat.text('reply')).toMatch(/was not started: AWS Batch refused a job .*terminating the jobs already submitted failed too/);
  });
});
