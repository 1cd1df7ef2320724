/**
 * The embedded default, wired: a directory store, local processes, an in-process bus and
 * queue, and a chat (the console, or any other Chat). The same launcher, notifier and
 * reconciler as production.
 */
import { execFile } from 'node:child_process';
import { storeWriteCheckKey } from '../run/layout.js';
import { passed, refuse, type Result } from '../result.js';
import path from 'node:path';
import type { Chat, Clock, Executor } from '../ports.js';
import { systemClock } from '../ports.js';
import type { CoreDeps, Logger, Settings } from '../core.js';
import { silentLogger } from '../core.js';
import type { Policy } from '../run/policy.js';
import { DirectoryStore } from './dir-store.js';
import { LocalReader } from './file-reader.js';
import { ProcessExecutor, REPO_ROOT } from './process-executor.js';
import { defaultPython, homeDir, type Env } from '../config.js';
import { MemoryBus } from './memory-bus.js';
import { EventQueue } from './event-queue.js';
import { Launcher } from '../launcher/launcher.js';
import { Notifier } from '../notifier/notifier.js';
import { ListDeadLetters } from './list-dead-letters.js';
import { Reconciler } from '../reconciler/reconciler.js';
import { dispatch, type Answer, type Caller, type DispatchDeps } from '../command/dispatcher.js';
import type { BatchJobEvent } from '../run/batch-event.js';
import { loadManifest } from '../run/manifest-store.js';
import { TERMINAL, type RunStatus } from '../run/manifest.js';

export interface LocalSystemOptions {
  home: string;
  python: string;
  chat: Chat;
  policy: Policy;
  concurrency?: number;
  log?: Logger;
  clock?: Clock;
  settings?: Partial<Settings>;
  /** Members of the policy's approver group (Slack usergroups), when a chat can tell. */
  approverGroupMembers?: () => Promise<string[]>;
  /** Wraps the executor at the port, e.g. to count submissions in tests. */
  decorateExecutor?: (executor: Executor) => Executor;
  /** Overrides for tests: other entry scripts. */
  scripts?: { processFov?: string; merge?: string };
  /** Hosts https inputs may come from (STARFISH_HTTPS_HOSTS); absent or empty: any public host. */
  httpsHosts?: readonly string[];
}

/** Where a one-shot command stops following its run. */
const SETTLED: ReadonlySet<RunStatus> = new Set([...TERMINAL, 'awaiting-approval']);

const LOCAL_SETTINGS: Settings = {
  progressIntervalMs: 300,
  digestIntervalMs: 2_000,
  stuckAfterMs: 10 * 60_000,
  allowPaths: true,
};

export function createLocalSystem(options: LocalSystemOptions) {
  const log = options.log ?? silentLogger;
  const store = new DirectoryStore(path.resolve(options.home));
  // The FOV processes inherit this process's environment, STARFISH_HTTPS_HOSTS with it.
  const reader = new LocalReader(options.httpsHosts?.length ? { https: { allowedHosts: options.httpsHosts } } : {});
  const settings = { ...LOCAL_SETTINGS, ...options.settings };
  const queue = new EventQueue<BatchJobEvent>((batch) => notifier.handleBatch(batch), log, { maxBatch: 100, windowMs: 200, redeliveryDelayMs: 200 });
  const processes = new ProcessExecutor({
    home: store.root,
    python: options.python,
    sink: queue.push,
    ...(options.concurrency ? { concurrency: options.concurrency } : {}),
    ...(options.scripts?.processFov ? { processFovScript: options.scripts.processFov } : {}),
    ...(options.scripts?.merge ? { mergeScript: options.scripts.merge } : {}),
  });
  const executor = options.decorateExecutor ? options.decorateExecutor(processes) : processes;
  const bus = new MemoryBus(log);
  const deps: CoreDeps = {
    store,
    reader,
    executor,
    chat: options.chat,
    policy: options.policy,
    clock: options.clock ?? systemClock,
    log,
    settings,
    checkRecipe: (source) => checkPythonSyntax(options.python, source),
    ...(options.approverGroupMembers ? { approverGroupMembers: options.approverGroupMembers } : {}),
  };
  const launcher = new Launcher(deps);
  const notifier = new Notifier(deps);
  const reconciler = new Reconciler(deps, notifier, new ListDeadLetters(queue.deadLetters));
  bus.subscribe((event) => launcher.handle(event));
  const dispatchDeps: DispatchDeps = { store, bus, reader, policy: options.policy, allowPaths: settings.allowPaths };

  /** Waits until nothing is left to do here: no event on the bus or queue, no job of this process running. */
  async function drain(): Promise<void> {
    for (;;) {
      const before = queue.batches;
      await bus.drain();
      await processes.idle();
      await queue.drain();
      await bus.drain();
      if (queue.batches === before) break;
    }
  }

  /** `drain`, then one reconciler pass for anything the events missed. */
  async function settle(): Promise<void> {
    await drain();
    await reconciler.run();
    await queue.drain();
  }

  /**
   * Waits for one run (a one-shot command's own) to end, wait for approval or be only planned,
   * with nothing this process started left running. Another command may be running its jobs (a
   * reconciler resumes a submission it finds waiting, whoever made it): the run is then followed
   * in the store, with a reconciler pass now and then, which finishes it here if that command
   * stops.
   */
  async function settleRun(runId: string, timing: { pollMs?: number; reconcileEveryMs?: number } = {}): Promise<void> {
    let reconciled = Date.now();
    let unchanged = 0;
    let lastEtag: string | undefined;
    for (;;) {
      await drain();
      const loaded = await loadManifest(store, runId);
      if (!loaded || SETTLED.has(loaded.manifest.status)) return;
      unchanged = loaded.etag === lastEtag ? unchanged + 1 : 0;
      lastEtag = loaded.etag;
      if (Date.now() - reconciled >= (timing.reconcileEveryMs ?? 5_000)) {
        // A run that stops changing may be one whose progress cannot be recorded (a full disk):
        // a write that fails says so with the store's reason, instead of waiting for ever.
        if (unchanged > 0) await checkStoreWritable(runId);
        await reconciler.run();
        reconciled = Date.now();
      } else await new Promise((resolve) => setTimeout(resolve, timing.pollMs ?? 250));
    }
  }

  async function checkStoreWritable(runId: string): Promise<void> {
    try {
      await store.put(storeWriteCheckKey, String(Date.now()));
      await store.delete(storeWriteCheckKey);
    } catch (error) {
      const { message, code } = error as Error & { code?: unknown };
      throw Object.assign(new Error(`run ${runId} cannot be recorded any further: ${message}. Then \`starfish status ${runId}\` shows where it stopped.`, { cause: error }), { code });
    }
  }

  return {
    store,
    executor,
    processes,
    bus,
    queue,
    launcher,
    notifier,
    reconciler,
    deps,
    dispatchDeps,
    drain,
    settle,
    settleRun,
    command: (text: string, caller: Caller): Promise<Answer> => dispatch(dispatchDeps, text, caller),
  };
}

export type LocalSystem = ReturnType<typeof createLocalSystem>;

/** Parses a recipe with the local interpreter, so that a syntax error is one answer, not one failure per FOV. */
function checkPythonSyntax(python: string, source: Buffer): Promise<Result<void>> {
  const program = 'import ast, sys\ntry:\n    ast.parse(sys.stdin.buffer.read())\nexcept SyntaxError as e:\n    print("%s at line %s" % (e.msg, e.lineno))\n    sys.exit(1)\n';
  return new Promise((resolve) => {
    const child = execFile(python, ['-c', program], { timeout: 10_000 }, (error, stdout) => {
      // An interpreter that cannot start is not the recipe's fault: the jobs will say so.
      const found = /^(.+ at line \d+)$/m.exec(stdout);
      resolve(error && (error as { code?: unknown }).code === 1 && found ? refuse(`Python reports a syntax error: ${found[1]}`) : passed);
    });
    child.stdin?.end(source);
  });
}

export const EXAMPLE_EXPERIMENT = path.join(REPO_ROOT, 'examples/synthetic-iss/data/experiment.json');
export const EXAMPLE_RECIPE = path.join(REPO_ROOT, 'examples/recipes/iss_numpy.py');

/** The embedded default as the `starfish` command configures it from the environment. */
export function localSystemFromEnv(env: Env, chat: Chat, log: Logger, policy: Policy, extra: Partial<LocalSystemOptions> = {}): LocalSystem {
  if (!policy.defaultRecipe) policy.defaultRecipe = EXAMPLE_RECIPE;
  return createLocalSystem({
    home: homeDir(env),
    python: defaultPython(env),
    chat,
    policy,
    log,
    ...(env.STARFISH_CONCURRENCY ? { concurrency: env.STARFISH_CONCURRENCY } : {}),
    ...(env.STARFISH_HTTPS_HOSTS ? { httpsHosts: env.STARFISH_HTTPS_HOSTS } : {}),
    ...extra,
  });
}
