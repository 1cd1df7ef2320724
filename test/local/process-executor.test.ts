/**
 * The process executor on its own: what a job's record says once the command that ran it is
 * gone, a cancel from another command, and I/O errors (a full disk under a log, a record that
 * cannot be written) failing the job with the reason instead of leaving it running.
 */
import { describe, expect, it, type TestContext } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ProcessExecutor, interruptedReason } from '../../src/local/process-executor.js';
import type { BatchJobEvent } from '../../src/run/batch-event.js';
import { processAlive, removeDir, tempDir, waitFor } from '../helpers/local.js';

const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const spec = { runId: '261125-test', requester: 'tester', queue: 'local' };

/** An executor on a fresh home whose FOV script is `source`; the home goes when the test ends. */
async function executorWith(source: string, onTestFinished: TestContext['onTestFinished']) {
  const home = await tempDir('exec');
  onTestFinished(() => removeDir(home));
  const script = path.join(home, 'job.py');
  await writeFile(script, source);
  const events: BatchJobEvent[] = [];
  const make = () => new ProcessExecutor({ home, python: PYTHON, concurrency: 2, sink: async (e) => void events.push(...e), processFovScript: script });
  return { home, executor: make(), make, events, gate: path.join(home, 'gate') };
}

const WAITS_FOR_GATE = 'import os, time\nwhile not os.path.exists(os.environ["GATE"]):\n    time.sleep(0.02)\nprint("done")\n';

describe('a corrupt or hostile job record', () => {
  it('fails that job with the reason and leaves the good records and every unrelated process alone', async ({ onTestFinished }) => {
    const { home, make } = await executorWith('', onTestFinished);
    const bystander = spawn('sleep', ['60'], { detached: true, stdio: 'ignore' });
    onTestFinished(() => void bystander.kill('SIGKILL'));
    const [corrupt, hostile, good] = [randomUUID(), randomUUID(), randomUUID()];
    await mkdir(path.join(home, 'jobs'));
    await writeFile(path.join(home, 'jobs', `${corrupt}.json`), '{"version":1,"jobId":');
    const base = { version: 1, queue: 'local', createdAt: 1, since: 1, kind: 'fov', size: 2, dependsOn: [] };
    // A record naming live processes it did not start (pid and no start time, as a recipe could write).
    await writeFile(path.join(home, 'jobs', `${hostile}.json`), JSON.stringify({ ...base, jobId: hostile, jobName: 'starfish-261125-test-fov', owner: { pid: bystander.pid }, status: 'RUNNING', children: [{ index: 0, status: 'RUNNING', process: { pid: bystander.pid } }] }));
    await writeFile(path.join(home, 'jobs', `${good}.json`), JSON.stringify({ ...base, jobId: good, jobName: 'starfish-261125-good-fov', owner: { pid: spawnSync('true').pid! }, status: 'SUCCEEDED', children: [{ index: 0, status: 'SUCCEEDED' }, { index: 1, status: 'SUCCEEDED' }] }));
    const described = await make().describe([corrupt, hostile, good]);
    expect(described.find((d) => d.jobId === corrupt)).toMatchObject({ status: 'FAILED', statusReason: expect.stringMatching(/its record .* cannot be read/) });
    expect(described.find((d) => d.jobId === hostile)).toMatchObject({ status: 'FAILED', statusReason: interruptedReason() });
    expect(described.find((d) => d.jobId === good)).toMatchObject({ status: 'SUCCEEDED' });
    expect(processAlive(bystander.pid!)).toBe(true);
  });
});

describe('a job whose command is gone', () => {
  it('is described from its record: what had not ended failed as interrupted, its leftover process killed, the merge after it "Dependent Job failed"', async ({ onTestFinished }) => {
    const { home, make } = await executorWith('', onTestFinished);
    const gone = spawnSync('true').pid!;
    const arrayId = randomUUID();
    const mergeId = randomUUID();
    // A FOV process its command left behind, still running.
    const leftover = spawn('sleep', ['60'], { env: { ...process.env, AWS_BATCH_JOB_ID: `${arrayId}:1` }, detached: true, stdio: 'ignore' });
    onTestFinished(() => void leftover.kill('SIGKILL'));
    const record = (jobId: string, fields: object) => writeFile(path.join(home, 'jobs', `${jobId}.json`), JSON.stringify({ version: 1, jobId, queue: 'local', owner: { pid: gone }, createdAt: 1, since: 1, ...fields }));
    await mkdir(path.join(home, 'jobs'));
    await record(arrayId, {
      jobName: 'starfish-261125-test-fov',
      kind: 'fov',
      size: 3,
      dependsOn: [],
      status: 'RUNNING',
      children: [
        { index: 0, status: 'SUCCEEDED', exitCode: 0 },
        { index: 1, status: 'RUNNING', process: { pid: leftover.pid } },
      ],
    });
    await record(mergeId, { jobName: 'starfish-261125-test-merge', kind: 'merge', size: 1, dependsOn: [arrayId], status: 'PENDING', children: [] });

    const executor = make();
    const [array, merge] = await executor.describe([arrayId, mergeId]);
    expect(array).toMatchObject({ status: 'FAILED', statusReason: interruptedReason(), size: 3, statusSummary: { SUCCEEDED: 1, FAILED: 2 } });
    expect(merge).toMatchObject({ status: 'FAILED', statusReason: 'Dependent Job failed' });
    expect(await executor.failedChildren(arrayId)).toEqual([1, 2].map((index) => ({ index, reason: interruptedReason(), kind: 'interrupted', logStreamName: `starfish-261125-test-fov/${index}` })));
    await waitFor(() => !processAlive(leftover.pid!), 'the leftover process to be killed');
    // Settled once: another command reads the same.
    expect(await make().describe([arrayId])).toEqual([expect.objectContaining({ status: 'FAILED', statusSummary: { SUCCEEDED: 1, FAILED: 2 } })]);
  });

  it('is described as recorded while its command lives, and a cancel from another command ends it', async ({ onTestFinished }) => {
    const { executor, make, gate } = await executorWith(WAITS_FOR_GATE, onTestFinished);
    const { jobId } = await executor.submitFovs(spec, { name: 'starfish-261125-test-fov', size: 2, environment: { GATE: gate } });
    const other = make();
    await waitFor(async () => (await other.describe([jobId]))[0]?.statusSummary?.RUNNING === 2, 'both children to be recorded running');
    expect((await other.describe([jobId]))[0]).toMatchObject({ status: 'RUNNING', size: 2 });
    await other.cancel([jobId], 'starfish: cancelled by tester');
    await executor.idle();
    expect((await executor.describe([jobId]))[0]).toMatchObject({ status: 'FAILED', statusReason: 'starfish: cancelled by tester' });
    expect((await other.describe([jobId]))[0]).toMatchObject({ status: 'FAILED', statusSummary: { FAILED: 2 } });
  });
});

describe('I/O errors fail the job with the reason', () => {
  it('a log on a full disk (ENOSPC): the child fails although its script exited 0', async ({ onTestFinished }) => {
    const { home, executor, events } = await executorWith('print("a line for the log")\n', onTestFinished);
    await mkdir(path.join(home, 'logs', 'starfish-261125-test-fov'), { recursive: true });
    await symlink('/dev/full', path.join(home, 'logs', 'starfish-261125-test-fov', '0.log'));
    const { jobId } = await executor.submitFovs(spec, { name: 'starfish-261125-test-fov', size: 2, environment: {} });
    await executor.idle();
    expect((await executor.describe([jobId]))[0]).toMatchObject({ status: 'FAILED', statusSummary: { SUCCEEDED: 1, FAILED: 1 } });
    const [failed] = await executor.failedChildren(jobId);
    expect(failed!.index).toBe(0);
    expect(failed!.reason).toMatch(/^starfish could not write the job's log .*0\.log: ENOSPC: no space left on device/);
    expect(events.at(-1)!.detail).toMatchObject({ status: 'FAILED', statusReason: '1 of 2 child jobs failed' });
  });

  it('a record that cannot be written at submission: the submission is refused with why', async ({ onTestFinished }) => {
    const { home, executor } = await executorWith('', onTestFinished);
    await writeFile(path.join(home, 'jobs'), 'not a folder');
    await expect(executor.submitFovs(spec, { name: 'starfish-261125-test-fov', size: 2, environment: {} })).rejects.toThrow(/^could not record the job in .*jobs\/[0-9a-f-]+\.json: (EEXIST|ENOTDIR)/);
  });

  it('a record that cannot be written while it runs: the job is terminated and fails with why', async ({ onTestFinished }) => {
    const { home, executor, make, gate } = await executorWith(WAITS_FOR_GATE, onTestFinished);
    const { jobId } = await executor.submitFovs(spec, { name: 'starfish-261125-test-fov', size: 2, environment: { GATE: gate } });
    await waitFor(async () => (await make().describe([jobId]))[0]?.statusSummary?.RUNNING === 2, 'both children to be recorded running');
    await rename(path.join(home, 'jobs'), path.join(home, 'jobs-gone'));
    await writeFile(path.join(home, 'jobs'), 'not a folder');
    await writeFile(gate, '');
    await executor.idle();
    const [job] = await executor.describe([jobId]);
    expect(job!.status).toBe('FAILED');
    expect(job!.statusReason).toMatch(/^starfish could not record the job's state in .*jobs\/[0-9a-f-]+\.json: (EEXIST|ENOTDIR)/);
  });
});
