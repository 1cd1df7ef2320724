/** Test harness for the embedded default: a temp STARFISH_HOME, a generated experiment, a console channel. */
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { afterAll, beforeAll } from 'vitest';
import { ConsoleChat } from '../../src/local/console-chat.js';
import { createLocalSystem, type LocalSystemOptions } from '../../src/local/system.js';
import { parsePolicy } from '../../src/run/policy.js';
import { listManifests, loadManifest } from '../../src/run/manifest-store.js';
import { REPO_ROOT } from '../../src/local/process-executor.js';
import { CODEBOOK_JSON, experimentJson, primaryManifestJson } from './spacetx.js';

const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
export const NUMPY_RECIPE = path.join(REPO_ROOT, 'examples/recipes/iss_numpy.py');

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(path.join(tmpdir(), `starfish-${prefix}-`));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Generates the synthetic ISS experiment (the containers' generator) and returns experiment.json. */
export function generateExperiment(dir: string, fovs = 4): string {
  execFileSync(PYTHON, [path.join(REPO_ROOT, 'examples/synthetic-iss/generate.py'), '--out', dir, '--fovs', String(fovs)], { stdio: 'pipe' });
  return path.join(dir, 'experiment.json');
}

/** One generated experiment for a whole test file: `.experiment` is its experiment.json. */
export function generatedExperiment(fovs: number): { data: string; experiment: string } {
  const shared = { data: '', experiment: '' };
  beforeAll(async () => {
    shared.data = await tempDir('exp');
    shared.experiment = generateExperiment(shared.data, fovs);
  });
  afterAll(() => removeDir(shared.data));
  return shared;
}

/** A minimal SpaceTx experiment (no tiles) for tests that only plan. */
export async function plannedOnlyExperiment(dir: string, fovs: number): Promise<string> {
  await writeFile(path.join(dir, 'primary_image.json'), primaryManifestJson(fovs));
  await writeFile(path.join(dir, 'experiment.json'), experimentJson());
  await writeFile(path.join(dir, 'codebook.json'), CODEBOOK_JSON);
  return path.join(dir, 'experiment.json');
}

/** A recipe that wraps the numpy one and fails on the FOVs listed, while a marker file exists. */
export async function failingRecipe(dir: string, failOn: number[], marker?: string): Promise<string> {
  const file = path.join(dir, 'failing_recipe.py');
  await writeFile(
    file,
    `import importlib.util, os
_spec = importlib.util.spec_from_file_location("iss_numpy", ${JSON.stringify(NUMPY_RECIPE)})
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)

def process_fov(fov_index, experiment_url):
    if fov_index in ${JSON.stringify(failOn)} and ${marker ? `os.path.exists(${JSON.stringify(marker)})` : 'True'}:
        raise ValueError("simulated failure: no spots found in round 2")
    return _base.process_fov(fov_index, experiment_url)
`,
  );
  return file;
}

export function localHarness(home: string, overrides: Partial<Omit<LocalSystemOptions, 'policy'>> & { policy?: unknown } = {}) {
  const lines: string[] = [];
  const chat = new ConsoleChat({ write: (t) => lines.push(t) }, 'tester');
  const { policy, ...rest } = overrides;
  const system = createLocalSystem({
    home,
    python: PYTHON,
    chat,
    concurrency: 2,
    policy: parsePolicy(policy ?? { approval: { approvers: ['tester'], allowSelfApproval: true }, queues: { default: 'local', allowed: ['local'] }, defaultRecipe: NUMPY_RECIPE }, 'test'),
    ...rest,
  });
  const caller = { userId: 'tester', channel: 'lab' };
  return {
    system,
    chat,
    caller,
    transcript: () => lines.join(''),
    command: (text: string, who = caller) => system.command(text, who),
    latestRun: async () => {
      const [m] = await listManifests(system.store, 1);
      return m ? (await loadManifest(system.store, m.runId))!.manifest : undefined;
    },
  };
}

/** The `starfish` command as a subprocess on `home` (`input` on its stdin), with its output as it comes and its end. */
export function startStarfish(home: string, args: string[], env: Record<string, string> = {}, input = '') {
  let stdout = '';
  let stderr = '';
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin/starfish.js'), ...args], {
    env: { ...process.env, STARFISH_HOME: home, STARFISH_CONCURRENCY: '2', LOG_LEVEL: 'error', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin.end(input);
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

/** Runs the `starfish` command to its end. */
export async function starfishCommand(home: string, args: string[], env: Record<string, string> = {}, input = '') {
  const started = startStarfish(home, args, env, input);
  const { code, signal } = await started.exited;
  return { code, signal, stdout: started.stdout(), stderr: started.stderr() };
}

/** Polls until `condition` holds; no timing is asserted, the timeout only ends a test that hangs. */
export async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 45_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > until) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie has ended; only its parent has yet to hear of it.
  try {
    return !/^\d+ \(.*\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

/**
 * Holds steps of a run where a test wants them: the recipe check while planning (`plan`), FOV
 * N (`fov-N`, in the recipe) and the merge (`merge`), each while `<gates>/hold-<step>` exists.
 * A held step writes its pid to `<gates>/at-<step>`. `python` (for STARFISH_PYTHON) and
 * `recipe` are the scripts that hold; `env` passes the gates folder to them.
 */
export async function gatedSteps(dir: string) {
  const gates = path.join(dir, 'gates');
  await mkdir(gates, { recursive: true });
  const python = path.join(dir, 'gated-python.sh');
  await writeFile(
    python,
    `#!/bin/sh
# The recipe check before launch parses the recipe (ast.parse); other runs without a job id are
# the configuration check at start, which no gate holds.
if [ -z "$AWS_BATCH_JOB_ID" ]; then case "$*" in *ast.parse*) step=plan ;; *) step=none ;; esac; elif [ -n "$STARFISH_RESULTS_OUTPUT" ]; then step=merge; else step=fov; fi
if [ -e "$FAULT_GATES/hold-$step" ]; then
  echo $$ > "$FAULT_GATES/at-$step.tmp" && mv "$FAULT_GATES/at-$step.tmp" "$FAULT_GATES/at-$step"
  while [ -e "$FAULT_GATES/hold-$step" ]; do sleep 0.02; done
fi
exec ${PYTHON} "$@"
`,
  );
  await chmod(python, 0o755);
  const recipe = path.join(dir, 'gated_recipe.py');
  await writeFile(
    recipe,
    `import importlib.util, os, time
_spec = importlib.util.spec_from_file_location("iss_numpy", ${JSON.stringify(NUMPY_RECIPE)})
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)

def process_fov(fov_index, experiment_url):
    gates = os.environ["FAULT_GATES"]
    hold = os.path.join(gates, "hold-fov-%d" % fov_index)
    if os.path.exists(hold):
        at = os.path.join(gates, "at-fov-%d" % fov_index)
        with open(at + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(at + ".tmp", at)
        while os.path.exists(hold):
            time.sleep(0.02)
    return _base.process_fov(fov_index, experiment_url)
`,
  );
  const file = (kind: 'hold' | 'at', step: string) => path.join(gates, `${kind}-${step}`);
  return {
    python,
    recipe,
    env: { STARFISH_PYTHON: python, FAULT_GATES: gates },
    hold: (...steps: string[]) => Promise.all(steps.map((s) => writeFile(file('hold', s), ''))),
    release: (...steps: string[]) => Promise.all(steps.map((s) => rm(file('hold', s), { force: true }))),
    releaseAll: async () => {
      for (const f of await readdir(gates)) if (f.startsWith('hold-')) await rm(path.join(gates, f), { force: true });
    },
    reached: (step: string) => existsSync(file('at', step)),
    pidAt: (step: string) => Number(readFileSync(file('at', step), 'utf8').trim()),
  };
}
