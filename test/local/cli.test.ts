import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { writeFile } from 'node:fs/promises';
import { generateExperiment, NUMPY_RECIPE, removeDir, tempDir } from '../helpers/local.js';

let data: string;
let experiment: string;
let home: string;
beforeAll(async () => {
  data = await tempDir('exp');
  home = await tempDir('home');
  experiment = generateExperiment(data, 2);
});
afterAll(async () => {
  await removeDir(data);
  await removeDir(home);
});

const starfish = (args: string[], input?: string) =>
  spawnSync(process.execPath, [path.resolve('bin/starfish.js'), ...args], {
    env: { ...process.env, STARFISH_HOME: home, STARFISH_CONCURRENCY: '2', LOG_LEVEL: 'silent' },
    encoding: 'utf8',
    input,
    timeout: 120_000,
  });

describe('the starfish command', () => {
  it('run --wait prints the channel and exits 0 when the run succeeded', () => {
    const r = starfish(['run', experiment, `recipe=${NUMPY_RECIPE}`, '--wait']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Results of run \d{6}-[a-z0-9]{4}: \d+ spots from 2\/2 FOVs/);
    expect(r.stdout).toMatch(/run \d{6}-[a-z0-9]{4}: succeeded\nresults: .*\/results\//);
  });

  it('exits 2 with the reason when the request is refused', () => {
    const r = starfish(['run', experiment, 'fovs=5-6', '--wait']);
    expect(r.status).toBe(2);
    expect(r.stdout).toMatch(/names FOVs the experiment does not have \(5-6\); it has 0-1/);
  });

  it('exits 2 when a later answer refuses the command, and explains itself with --help', () => {
    const ok = starfish(['run', experiment, `recipe=${NUMPY_RECIPE}`, 'fovs=1']);
    const runId = /run (\d{6}-[a-z0-9]{4}): succeeded/.exec(ok.stdout)![1]!;
    const retry = starfish(['retry', runId]);
    expect(retry.status).toBe(2);
    expect(retry.stdout).toMatch(/is succeeded; retry reruns the failed FOVs/);
    const help = spawnSync(process.execPath, [path.resolve('bin/starfish.js'), '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/Usage: starfish \[command\][\s\S]*Exit codes: 0 done/);
  });

  it('exits 78 naming the variable when the configuration is wrong', () => {
    const r = spawnSync(process.execPath, [path.resolve('bin/starfish.js'), 'list'], { env: { ...process.env, STARFISH_CONCURRENCY: 'lots' }, encoding: 'utf8' });
    expect(r.status).toBe(78);
    expect(r.stderr).toMatch(/STARFISH_CONCURRENCY=lots is not valid: .* Example: STARFISH_CONCURRENCY=4/);
  });

  it.each([
    ['STARFISH_HTTPS_HOSTS', 'https://data.lab.org/', /STARFISH_HTTPS_HOSTS=https:\/\/data\.lab\.org\/ is not valid: item 1: host names, or \*\.domain\. Example: STARFISH_HTTPS_HOSTS=data\.lab\.org,\*\.spacetx\.org/],
    ['SLACK_TEAM_ID', 'lab-workspace', /SLACK_TEAM_ID=lab-workspace is not valid: must be a Slack team id, e\.g\. T0123ABCD\. Example: SLACK_TEAM_ID=T0123ABCD/],
    ['SLACK_APP_ID', 'T0123ABCD', /SLACK_APP_ID=T0123ABCD is not valid: must be a Slack app id, e\.g\. A0123ABCD \(Basic Information → App ID\)\. Example: SLACK_APP_ID=A0123ABCD/],
  ])('exits 78 when %s=%s is malformed, naming it with its example', (name, value, message) => {
    const r = spawnSync(process.execPath, [path.resolve('bin/starfish.js'), 'list'], { env: { ...process.env, [name]: value }, encoding: 'utf8' });
    expect(r.status).toBe(78);
    expect(r.stderr).toMatch(message);
  });

  it('reads https inputs only from STARFISH_HTTPS_HOSTS when it is set (refused before any lookup)', () => {
    const r = spawnSync(process.execPath, [path.resolve('bin/starfish.js'), 'run', 'https://example.com/iss/experiment.json', '--wait'], {
      env: { ...process.env, STARFISH_HOME: home, STARFISH_HTTPS_HOSTS: 'Data.Lab.org, *.spacetx.org', LOG_LEVEL: 'silent' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(2);
    expect(r.stdout).toMatch(/https:\/\/example\.com\/iss\/experiment\.json is refused: this deployment reads https inputs only from data\.lab\.org, \*\.spacetx\.org/);
  });

  it("prints a run's reason scrubbed: a recipe that writes terminal escapes into its own manifest cannot reach the terminal", async () => {
    // On one machine the recipe runs as the same user, so it can rewrite its run's manifest; the
    // lifecycle keeps a reason it does not replace, and the command prints it.
    const recipe = path.join(data, 'tampering_recipe.py');
    await writeFile(
      recipe,
      `import glob, json, os, importlib.util
_spec = importlib.util.spec_from_file_location("iss_numpy", ${JSON.stringify(NUMPY_RECIPE)})
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)

def process_fov(fov_index, experiment_url):
    for f in glob.glob(os.path.join(os.environ["STARFISH_HOME"], "runs", "*", "run.json")):
        with open(f) as fh:
            m = json.load(fh)
        if m.get("status") in ("submitting", "running", "merging"):
            m["statusReason"] = "\\x1b]8;;https://evil.example\\x07click here\\x1b]8;;\\x07 \\x1b[2J\\x1b[31mred\\u202e"
            with open(f, "w") as fh:
                json.dump(m, fh)
    return _base.process_fov(fov_index, experiment_url)
`,
    );
    const r = starfish(['run', experiment, `recipe=${recipe}`, 'fovs=1', '--wait']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/run \d{6}-[a-z0-9]{4}: succeeded \(click here red\)\n/);
    // eslint-disable-next-line no-control-regex -- no escape, control or bidi character reaches the terminal
    expect(r.stdout).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f\u202e]/);
  });

  it('the console takes typed commands, answers them, and shows the run through to its results', () => {
    const r = starfish(['console'], `/starfish help run\n/starfish stauts\n/starfish run ${experiment} fovs=1 recipe=${NUMPY_RECIPE} name=console-run\n`);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/run <experiment.json> \[options\]/);
    expect(r.stdout).toMatch(/"stauts" is not a starfish command; did you mean "status"\?/);
    expect(r.stdout).toMatch(/starfish run \d{6}-[a-z0-9]{4} · console-run/);
    expect(r.stdout).toMatch(/Results of run \d{6}-[a-z0-9]{4}: \d+ spots from 1\/1 FOVs/);
  });
});
