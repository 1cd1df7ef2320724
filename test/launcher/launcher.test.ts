import { describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { launchedRun } from '../notifier/harness.js';
import type { MapReader } from '../helpers/memory-adapters.js';
import { runOfRequest } from '../../src/run/manifest-store.js';

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

  it('records which run a request made, so that the command that sent it can follow that run', async () => {
    const h = await launchedRun(4);
    const id = randomUUID();
    expect(await runOfRequest(h.store, id)).toBeUndefined();
    await h.launcher.handle(request(id));
    const made = await runOfRequest(h.store, id);
    expect(made).toMatch(/^\d{6}-[a-z0-9]{4}$/);
    expect(made).not.toBe(h.runId);
    expect(runs(h.store.objects.keys())).toContain(`runs/${made}/run.json`);
  });

  it('writes a run\'s inputs before its manifest, so a crash in between leaves no run without its recipe', async () => {
    const h = await launchedRun(4);
    const created: string[] = [];
    const createIfAbsent = h.store.createIfAbsent.bind(h.store);
    h.store.createIfAbsent = async (key, body) => (created.push(key), createIfAbsent(key, body));
    await h.launcher.handle(request());
    const manifest = created.findIndex((k) => k.endsWith('/run.json'));
    const recipe = created.findIndex((k) => k.endsWith('/inputs/recipe.py'));
    expect(recipe).toBeGreaterThanOrEqual(0);
    expect(recipe).toBeLessThan(manifest);
  });

  it('quotes what an experiment names (a FOV name, a URL) as text, never as markup', async () => {
    const h = await launchedRun(2);
    (h.deps.reader as MapReader).files.set('s3://lab-data/exp/primary_image.json', JSON.stringify({ version: '0.1.0', contents: { '<!channel> <https://evil.example|click>': 'x.json' } }));
    await h.launcher.handle(request());
    const said = JSON.stringify(h.chat.of('ephemeral').at(-1)?.message?.blocks);
    expect(said).toContain('&lt;!channel&gt; &lt;https://evil.example|click&gt;');
    expect(said).not.toMatch(/<!channel>|<https:\/\/evil/);
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

describe('a submission that did not complete', () => {
  it('an approval still submits when Slack fails to update the message', async () => {
    const h = await launchedRun(4, {}, { policy: { approval: { fovThreshold: 1, approvers: ['PI'] } } });
    const runId = h.runId;
    const key = `runs/${runId}/run.json`;
    expect((await h.manifest()).status).toBe('awaiting-approval');
    h.chat.failNext = { update: 5 };
    await expect(h.launcher.handle({ type: 'RunApproved', userId: 'PI', channel: 'C1', runId })).rejects.toThrow(/update failed/);
    const m = JSON.parse(h.store.objects.get(key)!.toString());
    expect(m.status).toBe('running');
    expect(m.submissions).toHaveLength(1);
  });

  it('the reconciler resumes a run left in submitting by a launcher that died, once the claim is stale', async () => {
    const h = await launchedRun(4);
    const before = [...h.batch.jobs.keys()].length;
    // A launcher that died after the decision: status submitting, the round claimed, nothing submitted.
    const { updateManifest } = await import('../../src/run/manifest-store.js');
    await updateManifest(h.store, h.runId, (m) => ({ ...m, status: 'submitting', submissions: [], pendingSubmission: { round: 0, fovs: '0-3' } }));
    await h.reconciler.run();
    expect([...h.batch.jobs.keys()].length).toBe(before); // the claim is fresh: maybe still submitting
    h.advance(11 * 60_000);
    const report = await h.reconciler.run();
    expect(report.resumed).toEqual([h.runId]);
    expect([...h.batch.jobs.keys()].length).toBe(before + 2);
    expect((await h.manifest()).status).toBe('running');
    await h.reconciler.run();
    expect([...h.batch.jobs.keys()].length).toBe(before + 2);
  });

  it('retry refuses a run that never started', async () => {
    const h = await launchedRun(4);
    const { updateManifest } = await import('../../src/run/manifest-store.js');
    await updateManifest(h.store, h.runId, (m) => ({ ...m, status: 'failed', statusReason: 'could not post the run message', submissions: [] }));
    await h.launcher.handle({ type: 'RunRetryRequested', userId: 'U1', channel: 'C1', runId: h.runId });
    expect(h.chat.text('ephemeral')).toMatch(/never started \(could not post the run message\); start a new run/);
  });
});
