/**
 * The `starfish` command with others on the same home, and the console's words: five one-shot
 * runs started at once each follow the run their own request made; the console says it waits
 * only when runs are running, and a Ctrl-C then stops them as it says.
 */
import { describe, expect, it } from 'vitest';
import { DirectoryStore } from '../../src/local/dir-store.js';
import { listManifests, loadManifest } from '../../src/run/manifest-store.js';
import { gatedSteps, generatedExperiment, NUMPY_RECIPE, removeDir, starfishCommand, startStarfish, tempDir, waitFor } from '../helpers/local.js';

const shared = generatedExperiment(2);

describe('one-shot runs on one home', () => {
  it('five started at once: each command reports its own run and exits 0', async () => {
    const home = await tempDir('home');
    const names = ['first', 'second', 'third', 'fourth', 'fifth'];
    const commands = await Promise.all(
      names.map((name, i) => starfishCommand(home, ['run', shared.experiment, `recipe=${NUMPY_RECIPE}`, `fovs=${i % 2}-${i % 2}`, `name=${name}`, '--wait'])),
    );
    const store = new DirectoryStore(home);
    const reported: string[] = [];
    for (const [i, r] of commands.entries()) {
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const runId = /\nrun (\d{6}-[a-z0-9]{4}): succeeded\nresults: /.exec(r.stdout)?.[1];
      expect(runId).toBeDefined();
      // The run this command's request made, not the latest one.
      const run = (await loadManifest(store, runId!))!.manifest;
      expect(run.request.name).toBe(names[i]);
      expect(run.plan.fovs).toBe(String(i % 2));
      reported.push(runId!);
    }
    expect(new Set(reported).size).toBe(5);
    expect((await listManifests(store)).map((m) => m.status)).toEqual(Array(5).fill('succeeded'));
    await removeDir(home);
  });
});

describe('the console', () => {
  it('Ctrl-D with nothing running leaves without a word about waiting', async () => {
    const home = await tempDir('home');
    const r = await starfishCommand(home, ['console'], {}, '/starfish list\n');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/No runs yet/);
    expect(r.stdout).not.toMatch(/Waiting/);
    await removeDir(home);
  });

  it('says it waits for the runs still running; a Ctrl-C then stops them as it says, and the next start reports the run', async () => {
    const home = await tempDir('home');
    const steps = await gatedSteps(home);
    await steps.hold('fov-0', 'fov-1');
    const console = startStarfish(home, ['console'], steps.env, `/starfish run ${shared.experiment} recipe=${steps.recipe}\n`);
    await waitFor(() => /Waiting for run \d{6}-[a-z0-9]{4} to finish/.test(console.stdout()), 'the console to say it waits');
    expect(console.stdout()).toMatch(/\(2 jobs running here\)\. Ctrl-C stops them: what has not finished is then recorded as interrupted, and the next start of starfish reports the run as failed or partially failed\./);
    await waitFor(() => steps.reached('fov-0') && steps.reached('fov-1'), 'the FOVs to start');
    console.child.kill('SIGINT');
    expect(await console.exited).toEqual({ code: 130, signal: null });
    expect(console.stdout()).toMatch(/Stopping 2 jobs of run \d{6}-[a-z0-9]{4} \(Ctrl-C\): what had not finished is recorded as interrupted\./);
    await steps.releaseAll();

    const [run] = await listManifests(new DirectoryStore(home));
    const next = await starfishCommand(home, ['status', run!.runId], steps.env);
    expect(next.code).toBe(0);
    const after = (await loadManifest(new DirectoryStore(home), run!.runId))!.manifest;
    expect(after.status).toBe('failed');
    expect(after.statusReason).toMatch(/^all 2 FOVs failed, e\.g\. FOV \d: interrupted: the starfish command that ran it stopped \(Ctrl-C\)$/);
    await removeDir(home);
  });
});
