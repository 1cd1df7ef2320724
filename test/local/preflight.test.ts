/**
 * Configuration checked before anything starts (issue 12): the interpreter runs and imports what
 * the recipes need, STARFISH_HOME is a writable folder, the policy parses; each probe under a
 * deadline, every mistake named at once. First `preflight` itself, then the real `starfish`
 * command as a subprocess (once src/cli.ts calls preflight).
 *
 * Bounds of time here are generous "does not hang" limits (the test's own timeout, spawnSync's
 * timeout), never measurements.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { readEnv, type Env } from '../../src/config.js';
import { preflight } from '../../src/local/preflight.js';
import { removeDir, tempDir } from '../helpers/local.js';

const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const isRoot = process.getuid?.() === 0;

let dir: string;
let home: string;
/** A Python that starts but sees none of the recipes' packages (-S: no site-packages). */
let barePython: string;
/** A program that never prints: not Python, and never ends by itself. */
let silent: string;
/** A "Python" that starts, then hangs while importing. */
let slowImports: string;
/** A folder nobody can write to: a read-only tmpfs as root, a 0555 folder otherwise; undefined when neither can be made. */
let unwritable: string | undefined;
let mounted = false;

/** A system program (mount, umount, mkfifo): present on the Linux machines these tests run on. */
const system = (command: string, args: string[]) => spawnSync(command, args, { encoding: 'utf8' });

const script = (name: string, body: string) => {
  const file = path.join(dir, name);
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
};

beforeAll(async () => {
  dir = await tempDir('preflight');
  home = path.join(dir, 'home');
  barePython = script('bare-python', `exec ${PYTHON} -S "$@"`);
  silent = script('silent', `echo $$ > ${path.join(dir, 'silent.pid')}\nsleep 30`);
  slowImports = script('slow-imports', `echo $$ > ${path.join(dir, 'slow.pid')}\necho "starfish-preflight: started"\nsleep 30`);
  unwritable = makeUnwritable(path.join(dir, 'read-only'));
});

afterAll(async () => {
  if (mounted) system('umount', [path.join(dir, 'read-only')]);
  await removeDir(dir);
});

function makeUnwritable(folder: string): string | undefined {
  mkdirSync(folder);
  if (!isRoot) {
    chmodSync(folder, 0o555);
    return folder;
  }
  // As root, permissions do not stop a write: a read-only tmpfs does.
  const r = system('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', folder]);
  mounted = r.status === 0;
  return mounted ? folder : undefined;
}

/** The command's environment as readEnv makes it, with `vars` over a good configuration. */
const envWith = (vars: Record<string, string>): Env => readEnv({ STARFISH_HOME: home, STARFISH_PYTHON: PYTHON, ...vars });

const refusal = async (env: Env, timeouts = {}) => {
  const r = await preflight(env, timeouts);
  expect(r.ok).toBe(false);
  return r.ok ? '' : r.reason;
};

const gone = (pid: number) => {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
};

describe('preflight', () => {
  it('passes a working configuration, creating STARFISH_HOME and leaving no probe file in it', async () => {
    const fresh = path.join(dir, 'fresh', 'home');
    expect(await preflight(envWith({ STARFISH_HOME: fresh }))).toEqual({ ok: true, value: undefined });
    expect(readdirSync(fresh)).toEqual([]);
  });

  describe('STARFISH_PYTHON', () => {
    it('refuses a program that does not exist (ENOENT), by path or by name', async () => {
      // readEnv already refuses a path that is not there; preflight says so too, and for a name on PATH.
      expect(() => readEnv({ STARFISH_PYTHON: '/no/python' })).toThrow(/STARFISH_PYTHON=\/no\/python is not valid: there is no such file/);
      const byPath = await refusal({ ...envWith({}), STARFISH_PYTHON: '/no/python' });
      expect(byPath).toMatch(/^STARFISH_PYTHON=\/no\/python does not run \(ENOENT: no such program\)\. Example: STARFISH_PYTHON=\/usr\/bin\/python3/);
      expect(await refusal(envWith({ STARFISH_PYTHON: 'no-such-python3.99' }))).toMatch(/^STARFISH_PYTHON=no-such-python3\.99 does not run \(ENOENT/);
    });

    it("refuses a Python without the recipes' packages, naming the first missing one and its Debian package", async () => {
      const reason = await refusal(envWith({ STARFISH_PYTHON: barePython }));
      expect(reason).toMatch(/^STARFISH_PYTHON=\S+bare-python cannot import numpy \(ModuleNotFoundError: No module named 'numpy'\), which the recipes need: install it there \(Debian: apt install python3-numpy\)/);
      expect(reason).toMatch(/Example: STARFISH_PYTHON=\/usr\/bin\/python3/);
    });

    it('refuses a program that is not Python, with what it said', async () => {
      expect(await refusal(envWith({ STARFISH_PYTHON: '/etc/hostname' }))).toMatch(/^STARFISH_PYTHON=\/etc\/hostname does not run Python code \(it exited \d+: .*not found\)/);
      expect(await refusal(envWith({ STARFISH_PYTHON: '/bin/false' }))).toMatch(/^STARFISH_PYTHON=\/bin\/false does not run Python code \(it exited 1 without a word\)/);
    });

    it('gives up on a program that never starts Python, and kills it', async () => {
      const reason = await refusal(envWith({ STARFISH_PYTHON: silent }), { pythonStart: 500 });
      expect(reason).toMatch(/^STARFISH_PYTHON=\S+silent did not start Python within 0\.5 s \(is it a Python interpreter\?\)/);
      const pid = Number(readFileSync(path.join(dir, 'silent.pid'), 'utf8'));
      await expect.poll(() => gone(pid), { timeout: 5_000 }).toBe(true);
    }, 20_000);

    it('gives up on imports that do not finish, naming the module it was at, and kills the process', async () => {
      const reason = await refusal(envWith({ STARFISH_PYTHON: slowImports }), { pythonStart: 2_000, pythonImports: 500 });
      expect(reason).toMatch(/did not finish importing the recipes' modules within 2\.5 s \(still importing numpy\)/);
      const pid = Number(readFileSync(path.join(dir, 'slow.pid'), 'utf8'));
      await expect.poll(() => gone(pid), { timeout: 5_000 }).toBe(true);
    }, 20_000);
  });

  describe('STARFISH_HOME', () => {
    it('refuses a file', async () => {
      const file = path.join(dir, 'a-file');
      writeFileSync(file, 'not a folder');
      expect(await refusal(envWith({ STARFISH_HOME: file }))).toMatch(/^STARFISH_HOME=\S+a-file is a file, not a folder: .*\. Example: STARFISH_HOME=\/data\/starfish/);
      expect(await refusal(envWith({ STARFISH_HOME: path.join(file, 'below') }))).toMatch(/^STARFISH_HOME=\S+a-file\/below is not a folder: a part of its path is a file \(ENOTDIR\)/);
    });

    // As root: /proc/self and /proc/1/fdinfo exist and refuse new files (ENOENT); a recursive mkdir of
    // a missing /proc path spins forever inside Node (the >10 minute hang of issue 12); /sys says EPERM.
    it.each(['/proc/self', '/proc/1/fdinfo', '/proc/starfish-home', '/proc/self/fd/starfish', '/proc/sys/starfish/home'])('refuses %s quickly: /proc holds no files', async (folder) => {
      expect(await refusal(envWith({ STARFISH_HOME: folder }))).toMatch(new RegExp(`^STARFISH_HOME=${folder} is on /proc, a kernel file system that holds no files\\. Example: STARFISH_HOME=/data/starfish`));
    }, 10_000);

    it('refuses a folder under /sys', async () => {
      expect(await refusal(envWith({ STARFISH_HOME: '/sys/kernel/starfish' }))).toMatch(/^STARFISH_HOME=\/sys\/kernel\/starfish is on \/sys, a kernel file system/);
    });

    it('refuses a folder it cannot write to, with the errno', async (ctx) => {
      if (!unwritable) return ctx.skip('running as root where `mount -t tmpfs -o ro` is not allowed: no folder here refuses a write from root');
      expect(await refusal(envWith({ STARFISH_HOME: unwritable }))).toMatch(/^STARFISH_HOME=\S+read-only is not usable: could not create a file in it \((read-only file system, EROFS|permission denied, EACCES)\)\. Example/);
    });

    it('names a relative STARFISH_HOME with the folder it means', async () => {
      const file = path.join(dir, 'relative-file');
      writeFileSync(file, '');
      const relative = path.relative(process.cwd(), file);
      expect(await refusal(envWith({ STARFISH_HOME: relative }))).toContain(`STARFISH_HOME=${relative} (${file}) is a file, not a folder`);
    });
  });

  describe('STARFISH_POLICY', () => {
    it('refuses a policy that does not parse, a folder, and a FIFO (which would block a read)', async () => {
      const bad = path.join(dir, 'bad-policy.json');
      writeFileSync(bad, '{"approval": ');
      expect(await refusal(envWith({ STARFISH_POLICY: bad }))).toMatch(/^Could not read the policy file STARFISH_POLICY=\S+bad-policy\.json: .*JSON.*\. Example: STARFISH_POLICY=lab-policy\.json/);
      const wrong = path.join(dir, 'wrong-policy.json');
      writeFileSync(wrong, '{"approval": {"fovThreshold": "many"}}');
      expect(await refusal(envWith({ STARFISH_POLICY: wrong }))).toMatch(/^STARFISH_POLICY=\S+wrong-policy\.json: The policy in \S+ is not valid: approval\.fovThreshold/);
      expect(await refusal(envWith({ STARFISH_POLICY: dir }))).toMatch(/^STARFISH_POLICY=\S+ is a folder, not a file\. Example: STARFISH_POLICY=lab-policy\.json/);
      const fifo = path.join(dir, 'policy.fifo');
      expect(system('mkfifo', [fifo]).status).toBe(0);
      expect(await refusal(envWith({ STARFISH_POLICY: fifo }))).toMatch(/^STARFISH_POLICY=\S+policy\.fifo is a FIFO, not a file/);
    });
  });

  it('lists every mistake at once, one line each', async () => {
    const file = path.join(dir, 'another-file');
    writeFileSync(file, '');
    const reason = await refusal(envWith({ STARFISH_PYTHON: barePython, STARFISH_HOME: file, STARFISH_POLICY: dir }));
    const lines = reason.split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^STARFISH_PYTHON=.* cannot import numpy/);
    expect(lines[1]).toMatch(/^STARFISH_HOME=.* is a file, not a folder/);
    expect(lines[2]).toMatch(/^STARFISH_POLICY=.* is a folder, not a file/);
  });
});

// ───────────────────────── the real command ─────────────────────────


describe('the starfish command exits 78 within seconds, naming the variable', () => {
  // spawnSync's timeout is the bound: a command that hangs is killed and fails the status check.
  const status = (vars: Record<string, string>) =>
    spawnSync(process.execPath, [path.resolve('bin/starfish.js'), 'status'], {
      env: { ...process.env, STARFISH_HOME: home, LOG_LEVEL: 'silent', ...vars },
      encoding: 'utf8',
      // A hang bound, not a measurement: the command starts Node and imports the Python packages,
      // which on a loaded 2-core machine took more than 5 s.
      timeout: 15_000,
    });

  const cases: Array<{ name: string; vars: () => Record<string, string> | undefined; message: RegExp }> = [
    { name: 'STARFISH_PYTHON=/no/python', vars: () => ({ STARFISH_PYTHON: '/no/python' }), message: /STARFISH_PYTHON=\/no\/python is not valid: there is no such file\. Example: STARFISH_PYTHON=/ },
    { name: 'STARFISH_PYTHON without the packages', vars: () => ({ STARFISH_PYTHON: barePython }), message: /STARFISH_PYTHON=\S+ cannot import numpy .* Example: STARFISH_PYTHON=/ },
    { name: 'STARFISH_HOME a file', vars: () => ({ STARFISH_HOME: path.join(dir, 'a-file') }), message: /STARFISH_HOME=\S+ is a file, not a folder.* Example: STARFISH_HOME=/ },
    { name: 'STARFISH_HOME under /proc, missing', vars: () => ({ STARFISH_HOME: '/proc/starfish-home' }), message: /STARFISH_HOME=\/proc\/starfish-home is on \/proc/ },
    { name: 'STARFISH_HOME under /proc, existing', vars: () => ({ STARFISH_HOME: '/proc/1/fdinfo' }), message: /STARFISH_HOME=\/proc\/1\/fdinfo is on \/proc/ },
    { name: 'STARFISH_HOME not writable', vars: () => (unwritable ? { STARFISH_HOME: unwritable } : undefined), message: /STARFISH_HOME=\S+ is not usable: could not create a file in it/ },
  ];

  it.for(cases)('$name', { timeout: 20_000 }, ({ vars, message }, ctx) => {
    writeFileSync(path.join(dir, 'a-file'), 'not a folder');
    const set = vars();
    if (!set) return ctx.skip('no folder here refuses a write from root (mount -t tmpfs -o ro is not allowed)');
    const r = status(set);
    expect(r.error).toBeUndefined(); // ETIMEDOUT when it hung past the bound
    expect(r.status).toBe(78);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});
