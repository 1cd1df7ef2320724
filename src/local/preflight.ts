/**
 * Preflight: what the `starfish` command needs from this machine, tried before anything starts.
 *
 * `readEnv` (src/config.ts) checks the variables' spelling; this checks that they work:
 *
 * - the interpreter (STARFISH_PYTHON, or the default) runs, and imports what the recipes and the
 *   two jobs import (numpy, scipy, scikit-image, tifffile; matplotlib for spots.png);
 * - STARFISH_HOME is a folder (created when missing) in which a file can be created, renamed and
 *   deleted, and not on a kernel file system (/proc, /sys), which holds no files;
 * - the policy file STARFISH_POLICY is a file, and parses (`loadPolicy`).
 *
 * Every probe that touches the file system or starts a program runs in a child process under a
 * deadline, and the child is killed when it passes: a recursive mkdir under /proc spins forever
 * inside Node, a write to a hung network file system blocks in the kernel, a FIFO as the policy
 * blocks a read. The probes run at once; every mistake is reported, one line each, naming the
 * variable, what is wrong and an example of what works.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { CONFIG, defaultPython, exampleOf, homeDir, loadPolicy, localUser, type Env } from '../config.js';
import { passed, refuse, type Result } from '../result.js';

/** How long each probe may take, in milliseconds. */
export interface PreflightTimeouts {
  /** until the interpreter prints its first line: a program that is not Python, or hangs, fails here */
  pythonStart: number;
  /** for the imports: a cold disk can make scipy, scikit-image and matplotlib slow the first time */
  pythonImports: number;
  /** for each file-system probe (STARFISH_HOME, STARFISH_POLICY) */
  files: number;
}

const TIMEOUTS: PreflightTimeouts = { pythonStart: 3_000, pythonImports: 15_000, files: 3_000 };

/** What examples/recipes/*.py and containers/*\/*.py import, with the Debian package that has it. */
const RECIPE_MODULES: ReadonlyArray<readonly [module: string, debian: string]> = [
  ['numpy', 'python3-numpy'],
  ['scipy.ndimage', 'python3-scipy'],
  ['skimage.feature', 'python3-skimage'],
  ['skimage.morphology', 'python3-skimage'],
  ['tifffile', 'python3-tifffile'],
  ['matplotlib', 'python3-matplotlib'],
];

type Variable = 'STARFISH_PYTHON' | 'STARFISH_HOME' | 'STARFISH_POLICY';

/** One line: `<what> <problem>. Example: NAME=value — what it is for`, as readEnv words its own. */
const mistake = (name: Variable, subject: string, problem: string) => `${subject} ${problem}. Example: ${exampleOf(name)} — ${CONFIG[name].meaning}`;

/**
 * Every mistake in the configuration the command runs with, found before anything starts; `passed`
 * when there is none. At most a few seconds (see PreflightTimeouts); never hangs.
 */
export async function preflight(env: Env, timeouts: Partial<PreflightTimeouts> = {}): Promise<Result<void>> {
  const limits = { ...TIMEOUTS, ...timeouts };
  const found = await Promise.all([checkPython(env, limits), checkHome(env, limits.files), checkPolicy(env, limits.files)]);
  const problems = found.filter((p): p is string => p !== undefined);
  return problems.length ? refuse(problems.join('\n')) : passed;
}

// ───────────────────────── a child process with a deadline ─────────────────────────

type Outcome =
  | { kind: 'exited'; code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }
  | { kind: 'not-started'; errno: string }
  | { kind: 'timeout'; stage: 'start' | 'total'; stdout: string };

const MAX_OUTPUT = 64 * 1024;
const append = (text: string, chunk: Buffer) => (text.length < MAX_OUTPUT ? text + chunk.toString('utf8') : text);

/**
 * Runs `command` and answers when it exits or when a deadline passes, whichever is first. At the
 * deadline its process group is killed and its pipes dropped, so that even a child stuck in the
 * kernel (which SIGKILL cannot end until the call returns) holds nothing of ours. With `start`, the
 * child must print `start.marker` within `start.ms`.
 */
function bounded(command: string, args: readonly string[], totalMs: number, start?: { marker: string; ms: number }): Promise<Outcome> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let done = false;
    // Its own process group (detached), so that a killed shell script takes its children along.
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: childEnv() });
    const finish = (outcome: Outcome) => {
      if (done) return;
      done = true;
      clearTimeout(totalTimer);
      clearTimeout(startTimer);
      resolve(outcome);
    };
    const giveUp = (stage: 'start' | 'total') => () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      child.stdout.destroy();
      child.stderr.destroy();
      child.unref();
      finish({ kind: 'timeout', stage, stdout });
    };
    const totalTimer = setTimeout(giveUp('total'), totalMs);
    const startTimer = start ? setTimeout(giveUp('start'), start.ms) : undefined;
    child.stdout.on('data', (chunk: Buffer) => {
      stdout = append(stdout, chunk);
      if (start && stdout.includes(start.marker)) clearTimeout(startTimer);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = append(stderr, chunk);
    });
    child.on('error', (error: NodeJS.ErrnoException) => finish({ kind: 'not-started', errno: error.code ?? error.message }));
    child.on('close', (code, signal) => finish({ kind: 'exited', code, signal, stdout, stderr }));
  });
}

/** The command's environment without NODE_OPTIONS (a loader meant for the command is not the probe's). */
function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  return env;
}

const lastLine = (text: string) =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .pop() ?? '';

const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`;

// ───────────────────────── the interpreter ─────────────────────────

const MARK = 'starfish-preflight:';
/** Prints a line first (it started), one per module imported, and the first import that fails. */
const PYTHON_PROBE = `import sys
print("${MARK} started", flush=True)
if sys.version_info < (3, 6):
    print("${MARK} too old %d.%d" % sys.version_info[:2], flush=True)
    sys.exit(3)
import importlib
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException as e:
        print("${MARK} cannot import %s: %s: %s" % (name, type(e).__name__, " ".join(str(e).split())), flush=True)
        sys.exit(3)
    print("${MARK} imported " + name, flush=True)
print("${MARK} ok", flush=True)
`;

async function checkPython(env: Env, limits: PreflightTimeouts): Promise<string | undefined> {
  const python = defaultPython(env);
  const subject = env.STARFISH_PYTHON ? `STARFISH_PYTHON=${python}` : `STARFISH_PYTHON is not set, and its default ${python}`;
  const modules = RECIPE_MODULES.map(([m]) => m);
  const outcome = await bounded(python, ['-c', PYTHON_PROBE, ...modules], limits.pythonStart + limits.pythonImports, { marker: `${MARK} started`, ms: limits.pythonStart });
  const problem = pythonProblem(python, outcome, limits);
  return problem === undefined ? undefined : mistake('STARFISH_PYTHON', subject, problem);
}

function pythonProblem(python: string, outcome: Outcome, limits: PreflightTimeouts): string | undefined {
  if (outcome.kind === 'not-started') return `does not run (${outcome.errno}${outcome.errno === 'ENOENT' ? ': no such program' : ''})`;
  if (outcome.kind === 'timeout') return pythonTimeout(python, outcome, limits);
  if (outcome.stdout.includes(`${MARK} ok`) && outcome.code === 0) return undefined;
  const failed = /^starfish-preflight: cannot import (\S+): (.*)$/m.exec(outcome.stdout);
  if (failed) {
    const debian = RECIPE_MODULES.find(([m]) => m === failed[1])?.[1];
    return `cannot import ${failed[1]} (${failed[2]}), which the recipes need: install it there${debian ? ` (Debian: apt install ${debian})` : ''}, or set STARFISH_PYTHON to a Python that has numpy, scipy, scikit-image, tifffile and matplotlib`;
  }
  const old = /^starfish-preflight: too old (\S+)$/m.exec(outcome.stdout);
  if (old) return `is Python ${old[1]}; the jobs need Python 3.6 or newer`;
  const said = lastLine(outcome.stderr) || lastLine(outcome.stdout);
  const how = outcome.signal ? `was killed by ${outcome.signal}` : `exited ${outcome.code}`;
  return `does not run Python code (it ${how}${said ? `: ${said.slice(0, 200)}` : ' without a word'})`;
}

function pythonTimeout(python: string, outcome: Extract<Outcome, { kind: 'timeout' }>, limits: PreflightTimeouts): string {
  if (outcome.stage === 'start') return `did not start Python within ${seconds(limits.pythonStart)} (is it a Python interpreter?)`;
  const imported = [...outcome.stdout.matchAll(/^starfish-preflight: imported (\S+)$/gm)].map((m) => m[1]);
  const stuck = RECIPE_MODULES.find(([m]) => !imported.includes(m))?.[0] ?? 'the last module';
  return `did not finish importing the recipes' modules within ${seconds(limits.pythonStart + limits.pythonImports)} (still importing ${stuck}); run it again (a cold disk is slow the first time), or try: ${python} -c "import ${stuck}"`;
}

// ───────────────────────── STARFISH_HOME and STARFISH_POLICY ─────────────────────────

/**
 * The file-system probe, run by a child Node process: `folder <path>` makes sure the path is a
 * writable folder (creating it), `file <path>` that it is a regular file or absent. It prints one
 * JSON object. Kernel file systems are refused from their type (statfs), before any mkdir.
 */
const FILES_PROBE = `
const fs = require('fs');
const path = require('path');
const [mode, target] = process.argv.slice(1);
const KERNEL = { 0x9fa0: '/proc', 0x62656572: '/sys', 0x64626720: 'debugfs', 0x74726163: 'tracefs', 0x73636673: 'securityfs', 0x27e0eb: 'cgroup', 0x63677270: 'cgroup2' };
const say = (o) => process.stdout.write(JSON.stringify(o));
const describe = (e) => ({ code: e.code || e.name, text: (/^[A-Z]+: ([^,]+)/.exec(e.message) || [])[1] || e.message });
function nearestExisting(p) {
  for (;;) {
    try { fs.statSync(p); return p; } catch (e) { const up = path.dirname(p); if (up === p) return p; p = up; }
  }
}
function kernelFs(p) {
  try { return KERNEL[fs.statfsSync(nearestExisting(p)).type]; } catch (e) { return undefined; }
}
function kindOf(st) {
  return st.isDirectory() ? 'folder' : st.isFIFO() ? 'FIFO' : st.isSocket() ? 'socket' : st.isCharacterDevice() || st.isBlockDevice() ? 'device' : 'file';
}
function folder() {
  let step = 'look at it';
  try {
    const st = fs.statSync(target, { throwIfNoEntry: false });
    if (st && !st.isDirectory()) return say({ problem: 'not-folder', kind: kindOf(st) });
    const kernel = kernelFs(target);
    if (kernel) return say({ problem: 'kernel', fs: kernel });
    if (!st) { step = 'create it'; fs.mkdirSync(target, { recursive: true }); }
    const probe = path.join(target, '.starfish-preflight-' + process.pid);
    step = 'create a file in it';
    fs.writeFileSync(probe + '.tmp', 'starfish preflight\\n');
    try {
      step = 'rename a file in it';
      fs.renameSync(probe + '.tmp', probe);
      step = 'delete a file in it';
      fs.unlinkSync(probe);
    } finally {
      fs.rmSync(probe + '.tmp', { force: true });
    }
    say({ ok: true, created: !st });
  } catch (e) {
    say({ problem: 'io', step, ...describe(e) });
  }
}
function file() {
  try {
    const st = fs.statSync(target, { throwIfNoEntry: false });
    if (st && !st.isFile()) return say({ problem: 'not-file', kind: kindOf(st) });
    say({ ok: true });
  } catch (e) {
    say({ problem: 'io', step: 'look at it', ...describe(e) });
  }
}
mode === 'folder' ? folder() : file();
`;

type FilesAnswer = { ok: true } | { problem: 'not-folder'; kind: string } | { problem: 'not-file'; kind: string } | { problem: 'kernel'; fs: string } | { problem: 'io'; step: string; code: string; text: string };

/** Runs FILES_PROBE; a string when it timed out or did not answer. */
async function probeFiles(mode: 'folder' | 'file', target: string, ms: number): Promise<FilesAnswer | string> {
  const outcome = await bounded(process.execPath, ['-e', FILES_PROBE, mode, target], ms);
  if (outcome.kind === 'timeout') return `did not answer within ${seconds(ms)} (a hung network disk or a special file system?)`;
  if (outcome.kind === 'not-started') return `could not be checked (${outcome.errno})`;
  try {
    return JSON.parse(outcome.stdout) as FilesAnswer;
  } catch {
    return `could not be checked (${lastLine(outcome.stderr).slice(0, 200) || `exit ${outcome.code}`})`;
  }
}

async function checkHome(env: Env, ms: number): Promise<string | undefined> {
  const home = homeDir(env);
  const subject = `STARFISH_HOME=${env.STARFISH_HOME}${path.isAbsolute(env.STARFISH_HOME) ? '' : ` (${home})`}`;
  const answer = await probeFiles('folder', home, ms);
  const problem = homeProblem(answer);
  return problem === undefined ? undefined : mistake('STARFISH_HOME', subject, problem);
}

function homeProblem(answer: FilesAnswer | string): string | undefined {
  if (typeof answer === 'string') return answer;
  if ('ok' in answer) return undefined;
  switch (answer.problem) {
    case 'not-folder':
      return `is a ${answer.kind}, not a folder: starfish keeps its runs, logs and staged experiments in a folder there`;
    case 'kernel':
      return `is on ${answer.fs}, a kernel file system that holds no files`;
    case 'io':
      if (answer.code === 'ENOTDIR') return 'is not a folder: a part of its path is a file (ENOTDIR)';
      return `is not usable: could not ${answer.step} (${answer.text}, ${answer.code})`;
    default:
      return `could not be checked (${JSON.stringify(answer).slice(0, 200)})`;
  }
}

async function checkPolicy(env: Env, ms: number): Promise<string | undefined> {
  const file = env.STARFISH_POLICY;
  if (file) {
    const answer = await probeFiles('file', path.resolve(file), ms);
    if (typeof answer === 'string') return mistake('STARFISH_POLICY', `STARFISH_POLICY=${file}`, answer);
    if ('kind' in answer) return mistake('STARFISH_POLICY', `STARFISH_POLICY=${file}`, `is a ${answer.kind}, not a file`);
    if ('step' in answer) return mistake('STARFISH_POLICY', `STARFISH_POLICY=${file}`, `could not be read (${answer.text}, ${answer.code})`);
  }
  // A regular file (or none: loadPolicy says so): safe to read in this process.
  try {
    loadPolicy(env, localUser());
    return undefined;
  } catch (error) {
    // loadPolicy's own words: a file it cannot read names the variable; a policy that does not parse names the file.
    const message = (error as Error).message.replace(/\s+/g, ' ');
    return message.includes('STARFISH_POLICY') ? message : `STARFISH_POLICY=${file}: ${message}`;
  }
}
