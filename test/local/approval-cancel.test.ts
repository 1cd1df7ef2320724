import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { generatedExperiment, localHarness, removeDir, tempDir } from '../helpers/local.js';

const shared = generatedExperiment(4);

/** A run of the 4-FOV experiment held for approval (threshold 2; pi and tester approve, not their own runs). */
async function heldRun() {
  const home = await tempDir('home');
  const h = localHarness(home, {
    policy: {
      approval: { fovThreshold: 2, approvers: ['pi', 'tester'], allowSelfApproval: false },
      queues: { default: 'local', allowed: ['local'] },
      defaultRecipe: path.resolve('examples/recipes/iss_numpy.py'),
    },
  });
  await h.command(`run ${shared.experiment}`);
  await h.system.settle();
  return { home, h, run: (await h.latestRun())! };
}

describe('approval', () => {
  it('holds a run above the threshold until an approver approves, then runs it', async () => {
    const { home, h, run: waiting } = await heldRun();
    expect(waiting.status).toBe('awaiting-approval');
    expect(waiting.approval.reasons).toEqual(['4 FOVs is above the 2-FOV threshold']);
    expect(h.transcript()).toContain(`[Approve: /starfish approve ${waiting.runId}]`);

    await h.command(`approve ${waiting.runId}`); // the requester: refused
    await h.system.settle();
    expect(h.transcript()).toMatch(new RegExp(`You requested run ${waiting.runId}; another approver has to approve it`));
    await h.command(`approve ${waiting.runId}`, { userId: 'postdoc', channel: 'lab' }); // not an approver
    await h.system.settle();
    expect(h.transcript()).toMatch(/You are not an approver for starfish runs\. Approvers: @pi, @tester/);
    expect((await h.latestRun())!.status).toBe('awaiting-approval');

    await h.command(`approve ${waiting.runId}`, { userId: 'pi', channel: 'lab' });
    await h.system.settle();
    const done = (await h.latestRun())!;
    expect(done.status).toBe('succeeded');
    expect(done.approval).toMatchObject({ decision: 'approved', decidedBy: 'pi' });
    expect(h.transcript()).toMatch(/Approved by @pi at \d{4}-/);
    // The requester is told in the run's thread; the approver gets their own answer.
    expect(h.transcript()).toContain(`│ @tester, run ${waiting.runId} was approved by @pi; its jobs are being submitted.`);
    expect(h.transcript()).toContain(`(only visible to pi) You approved run ${waiting.runId}; its jobs are being submitted.`);
    await removeDir(home);
  }, 90_000);

  it('a rejected run never submits', async () => {
    const { home, h, run } = await heldRun();
    await h.command(`reject ${run.runId} too many FOVs for the <!channel> budget`, { userId: 'pi', channel: 'lab' });
    await h.system.settle();
    await h.command(`approve ${run.runId}`, { userId: 'pi', channel: 'lab' });
    await h.system.settle();
    const after = (await h.latestRun())!;
    expect(after.status).toBe('rejected');
    expect(after.submissions).toEqual([]);
    expect(h.transcript()).toMatch(/Rejected by @pi/);
    // The reason reaches the run's message and the requester (in Slack as text: a typed <!channel>
    // is escaped there and pings nobody; test/messages/escaping.test.ts).
    expect(after.approval.reason).toBe('too many FOVs for the <!channel> budget');
    expect(h.transcript()).toMatch(/Rejected by @pi at \S+: “too many FOVs for the <!channel> budget”/);
    expect(h.transcript()).toContain(`│ @tester, run ${run.runId} was rejected by @pi: “too many FOVs for the <!channel> budget”; nothing was submitted.`);
    expect(h.transcript()).toMatch(new RegExp(`Run ${run.runId} is already rejected by @pi; nothing to do`));
    await removeDir(home);
  });
});

describe('cancel', () => {
  it('terminates the running FOV processes and marks the run cancelled', async () => {
    const home = await tempDir('home');
    const slow = path.join(home, 'slow.py');
    await writeFile(slow, 'import time\n\ndef process_fov(fov_index, experiment_url):\n    time.sleep(600)\n    return []\n');
    const h = localHarness(home);
    await h.command(`run ${shared.experiment} recipe=${slow}`);
    for (let i = 0; i < 100 && (await h.latestRun())?.status !== 'running'; i++) await new Promise((r) => setTimeout(r, 100));
    const run = (await h.latestRun())!;
    expect(run.status).toBe('running');
    await h.command(`cancel ${run.runId}`);
    await h.system.settle(); // returns only once every FOV process has ended: the 600 s sleeps were killed
    expect(existsSync(path.join(home, 'runs', run.runId, 'fovs'))).toBe(false); // no FOV got to write its table
    const after = (await h.latestRun())!;
    expect(after.status).toBe('cancelled');
    expect(after.statusReason).toBe('cancelled by <@tester>');
    expect(after.progress).toMatchObject({ running: 0, waiting: 0 });
    expect(h.transcript()).toMatch(new RegExp(`Run ${run.runId} cancelled by @tester`));
    expect(h.transcript()).not.toMatch(/Results of run/);
    await h.command(`cancel ${run.runId}`);
    await h.system.settle();
    expect(h.transcript()).toMatch(/was already cancelled; its jobs have been terminated again to be sure/);
    await removeDir(home);
  });
});
