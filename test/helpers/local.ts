/** Test harness for the embedded default: a temp STARFISH_HOME, a generated experiment, a console channel. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll } from 'vitest';
import { ConsoleChat } from '../../src/local/console-chat.js';
import { createLocalSystem, type LocalSystemOptions } from '../../src/local/system.js';
import { parsePolicy } from '../../src/run/policy.js';
import { listManifests, loadManifest } from '../../src/run/manifest-store.js';
import { REPO_ROOT } from '../../src/local/process-executor.js';

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
  const contents = Object.fromEntries(Array.from({ length: fovs }, (_, i) => [`fov_${String(i).padStart(3, '0')}`, `primary-fov_${i}.json`]));
  await writeFile(path.join(dir, 'primary_image.json'), JSON.stringify({ version: '0.1.0', contents, extras: {} }));
  await writeFile(path.join(dir, 'experiment.json'), JSON.stringify({ version: '5.0.0', images: { primary: 'primary_image.json' }, codebook: 'codebook.json', extras: {} }));
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
