/**
 * Fault injection through the real `starfish` command: SIGKILL, SIGTERM and SIGINT while
 * planning, while FOVs run and while merging. After the next start (one reconcile), the run has
 * ended: the FOVs that finished merged, or failed with the reason; nothing shows it running,
 * and no process of it is left. Steps are held by gates (test/helpers/local.ts gatedSteps), so
 * every signal lands in the step it names; nothing here asserts how long anything takes.
 */
import { describe, expect, it, type TestContext } from 'vitest';
import { DirectoryStore } from '../../src/local/dir-store.js';
import { listManifests, loadManifest } from '../../src/run/manifest-store.js';
import type { RunManifest } from '../../src/run/manifest.js';
import { gatedSteps, generatedExperiment, processAlive, removeDir, starfishCommand, startStarfish, tempDir, waitFor } from '../helpers/local.js';

const shared = generatedExperiment(4);

type Signal = 'SIGKILL' | 'SIGTERM' | 'SIGINT';
const SIGNALS: Signal[] = ['SIGKILL', 'SIGTERM', 'SIGINT'];
/** How the reason names each: a signal the command handles is named; SIGKILL cannot be told from a crash. */
const HOW: Record<Signal, string> = { SIGKILL: 'Ctrl-C, kill or crash', SIGTERM: 'SIGTERM', SIGINT: 'Ctrl-C' };
const ENDING: Record<Signal, { code: number | null; signal: string | null }> = {
  SIGKILL: { code: null, signal: 'SIGKILL' },
  SIGTERM: { code: 143, signal: null },
  SIGINT: { code: 130, signal: null },
};
const interrupted = (signal: Signal) => `interrupted: the starfish command that ran it stopped (${HOW[signal]})`;

/**
 * A home with gated steps and the command under test. When the test ends, even failing, the
 * command is killed if it still runs, whatever was held is released, and the home removed.
 */
async function setUp(onTestFinished: TestContext['onTestFinished']) {
  const home = await tempDir('home');
  const steps = await gatedSteps(home);
  const store = new DirectoryStore(home);
  const runs = () => listManifests(store);
  const run = async (runId: string) => (await loadManifest(store, runId))!.manifest;
  const started: Array<ReturnType<typeof startStarfish>> = [];
  const start = () => {
    const command = startStarfish(home, ['run', shared.experiment, `recipe=${steps.recipe}`, '--wait'], steps.env);
    started.push(command);
    return command;
  };
  onTestFinished(async () => {
    for (const command of started) if (command.child.exitCode === null && command.child.signalCode === null) command.child.kill('SIGKILL');
    await steps.releaseAll();
    await removeDir(home);
  });
  return { home, steps, runs, run, start };
}

/** Sends the signal; a command that can handle it says what it does before it exits. */
async function stop(command: ReturnType<typeof startStarfish>, signal: Signal) {
  command.child.kill(signal);
  if (signal !== 'SIGKILL') await waitFor(() => command.stdout().includes('\nStopping '), 'the command to say it is stopping');
}

/** The next start, `starfish status RUN`: its own answer (after the reconcile it begins with) and the stored run. */
async function nextStart(env: Record<string, string>, home: string, runId: string) {
  const r = await starfishCommand(home, ['status', runId], env);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return r.stdout.slice(r.stdout.indexOf('$ /starfish status'));
}

/** A second start finds nothing left to do for the run: it ended within the first. */
async function nothingLeft(env: Record<string, string>, home: string, before: RunManifest, after: () => Promise<RunManifest>) {
  const r = await starfishCommand(home, ['reconcile'], env);
  expect(r.code).toBe(0);
  expect(JSON.parse(r.stdout.trim().split('\n').at(-1)!)).toMatchObject({ checked: 0, recovered: [], resumed: [], stuck: [] });
  expect(await after()).toEqual(before);
}

describe.concurrent('stopped while planning', () => {
  it.for(SIGNALS)('%s: no run is left planning or running', async (signal, { onTestFinished }) => {
    const { home, steps, runs, start } = await setUp(onTestFinished);
    await steps.hold('plan');
    const command = start();
    await waitFor(() => steps.reached('plan'), 'planning to reach the recipe check');
    await stop(command, signal);
    await steps.releaseAll();
    expect(await command.exited).toEqual(ENDING[signal]);

    const next = await starfishCommand(home, ['list'], steps.env);
    expect(next.code).toBe(0);
    expect(next.stderr).toBe('');
    if (signal === 'SIGKILL') {
      // Killed before the run existed: nothing was created, nothing to finish.
      expect(await runs()).toEqual([]);
      expect(next.stdout).toMatch(/No runs yet/);
    } else {
      // A stopping command finishes planning but starts no job: the run says why it never started.
      const [run] = await runs();
      expect(run).toMatchObject({ status: 'failed', submissions: [] });
      expect(run!.statusReason).toBe(`could not submit the jobs (the starfish command stopped (${HOW[signal]}) before the job could start)`);
      expect(next.stdout).not.toMatch(/Running|Submitting/);
    }
  });
});

describe.concurrent('stopped while FOVs run', () => {
  it.for(SIGNALS)('%s: the next start merges the FOV that finished and reports the others interrupted', async (signal, { onTestFinished }) => {
    const { home, steps, runs, run, start } = await setUp(onTestFinished);
    await steps.hold('fov-0', 'fov-1', 'fov-2', 'fov-3');
    const command = start();
    await waitFor(() => steps.reached('fov-0') && steps.reached('fov-1'), 'FOVs 0 and 1 to start');
    await steps.release('fov-0');
    // FOV 0 finished (two at a time): FOVs 1 and 2 run, FOV 3 waits.
    await waitFor(() => steps.reached('fov-2'), 'FOV 2 to start');
    const fovProcesses = [steps.pidAt('fov-1'), steps.pidAt('fov-2')];
    await stop(command, signal);
    expect(await command.exited).toEqual(ENDING[signal]);
    // No FOV process outlives the command that ran it, SIGKILL included: the guard beside each kills its group.
    await waitFor(() => fovProcesses.every((pid) => !processAlive(pid)), 'the FOV processes to end');

    const [{ runId }] = (await runs()) as [RunManifest];
    const answer = await nextStart(steps.env, home, runId);
    const after = await run(runId);
    expect(after.status).toBe('partially-failed');
    expect(after.results).toMatchObject({ fovsProcessed: 1, fovsMissing: [1, 2, 3] });
    expect(after.failures.map((f) => [f.fov, f.reason]).sort()).toEqual([1, 2, 3].map((fov) => [fov, interrupted(signal)]));
    expect(answer).toMatch(/Status ⚠ Finished with failed FOVs/);
    expect(answer).not.toMatch(/Running/);
    await nothingLeft(steps.env, home, after, () => run(runId));
  });
});

describe.concurrent('stopped while merging', () => {
  it.for(SIGNALS)('%s: the next start reports the run failed, its merge interrupted', async (signal, { onTestFinished }) => {
    const { home, steps, runs, run, start } = await setUp(onTestFinished);
    await steps.hold('merge');
    const command = start();
    await waitFor(() => steps.reached('merge'), 'the merge to start');
    const merge = steps.pidAt('merge');
    await stop(command, signal);
    expect(await command.exited).toEqual(ENDING[signal]);
    // No process outlives its command, SIGKILL included: the guard beside it kills its group.
    await waitFor(() => !processAlive(merge), 'the merge to end with its command');

    const [{ runId }] = (await runs()) as [RunManifest];
    const answer = await nextStart(steps.env, home, runId);
    const after = await run(runId);
    expect(after.status).toBe('failed');
    expect(after.statusReason).toBe(`the merge job failed: ${interrupted(signal)}`);
    expect(after.progress).toMatchObject({ total: 4, succeeded: 4, failed: 0 });
    expect(answer).toMatch(/Status ✗ Failed/);
    expect(answer).not.toMatch(/Running|Merging/);
    await nothingLeft(steps.env, home, after, () => run(runId));
  });
});

describe('after an interruption', () => {
  it('retry reruns the interrupted FOVs and the run completes', async ({ onTestFinished }) => {
    const { home, steps, runs, run, start } = await setUp(onTestFinished);
    await steps.hold('fov-1', 'fov-2', 'fov-3');
    const command = start();
    await waitFor(() => steps.reached('fov-1') && steps.reached('fov-2'), 'FOVs 1 and 2 to start');
    await stop(command, 'SIGKILL');
    await command.exited;
    await steps.releaseAll();
    const [{ runId }] = (await runs()) as [RunManifest];

    const retry = await starfishCommand(home, ['retry', runId], steps.env);
    expect(retry.stderr).toBe('');
    expect(retry.code).toBe(0);
    expect(retry.stdout).toContain(`run ${runId}: succeeded`);
    const after = await run(runId);
    expect(after.submissions.map((s) => s.fovs)).toEqual(['0-3', '1-3']);
    expect(after.results).toMatchObject({ fovsProcessed: 4, fovsMissing: [] });
  });
});
