/**
 * The `starfish` command.
 *   starfish console              a terminal channel: type /starfish commands, watch the run
 *   starfish run <args> --wait    one run through the same path; exits 0 only if it succeeded
 *   starfish demo                 generate the example experiment if needed and run it
 *   starfish serve                the Slack app in Socket Mode (needs Slack tokens)
 *   starfish start                serve when Slack tokens are set, console otherwise
 *   starfish reconcile            one reconciler pass
 *   starfish <status|list|cancel|retry|stage|help> …   one command, answered in the terminal
 */
import { randomUUID } from 'node:crypto';
import { preflight } from './local/preflight.js';
import { existsSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { spawnSync } from 'node:child_process';
import { pino } from 'pino';
import { ConfigError, defaultPython, homeDir, loadPolicy, localUser, namesReadBy, readEnv, type Env } from './config.js';
import { ConsoleChat } from './local/console-chat.js';
import { EXAMPLE_EXPERIMENT, EXAMPLE_RECIPE, localSystemFromEnv, type LocalSystem } from './local/system.js';
import { REPO_ROOT } from './local/process-executor.js';
import { loadManifest, runOfRequest } from './run/manifest-store.js';
import { renderText } from './messages/text.js';
import { scrub } from './messages/message.js';
import { parseCommand, type Command } from './command/grammar.js';
import type { ReconcileReport } from './reconciler/reconciler.js';
import type { RunManifest } from './run/manifest.js';


export const EXIT = { ok: 0, runFailed: 1, refused: 2, awaitingApproval: 3, config: 78 } as const;

function makeSystem(env: Env, chat: ConsoleChat): LocalSystem {
  return localSystemFromEnv(env, chat, pino({ level: env.LOG_LEVEL }, pino.destination(2)), loadPolicy(env, localUser()));
}

/** Every setting checked before anything starts: variables, interpreter, STARFISH_HOME, policy. */
async function configuration(): Promise<Env> {
  const env = readEnv();
  const checked = await preflight(env);
  if (!checked.ok) throw new ConfigError(checked.reason);
  return env;
}

/** Strips a leading "/starfish" so both `/starfish run x` and `run x` work at the prompt. */
const commandText = (line: string) => line.trim().replace(/^\/?starfish\b\s*/i, '');

export async function runOnce(env: Env, args: string[], out: NodeJS.WriteStream = process.stdout): Promise<number> {
  const chat = new ConsoleChat(out, localUser());
  const system = makeSystem(env, chat);
  onSignals(system, out);
  await recover(system, out, true);
  // This request's own id: the command follows the run this request made, whatever else starts.
  const requestId = randomUUID();
  const caller = { userId: localUser(), channel: env.STARFISH_CHANNEL, requestId };
  const text = args.join(' ');
  out.write(`$ /starfish ${text}\n`);
  const answer = await system.command(text, caller);
  if (answer.message) out.write(`(only visible to you) ${renderText(answer.message)}\n`);
  if (answer.refused) return EXIT.refused;
  await system.drain();
  // A refusal that came later (experiment not found, run already ended, …) is still a refusal.
  if (chat.refusals) return EXIT.refused;
  const parsed = parseCommand(text);
  const followed = parsed.ok ? await runFollowed(system, parsed.value, requestId) : undefined;
  if (!followed) return parsed.ok && parsed.value.name === 'run' ? EXIT.refused : EXIT.ok;
  await system.settleRun(followed);
  return exitCodeOf((await loadManifest(system.store, followed))!.manifest, out);
}

/** The run a one-shot command follows to its end: the one its own request made, or the one it retries. */
async function runFollowed(system: LocalSystem, command: Command, requestId: string): Promise<string | undefined> {
  if (command.name === 'retry') return command.runId;
  if (command.name === 'run') return runOfRequest(system.store, requestId);
  return undefined;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/**
 * Every start reconciles the store once, first: a run whose command stopped is finished, or
 * failed with the reason, before anything is shown or started. What that pass started here (a
 * salvage merge, a resumed submission) is waited for, except by the console, which goes on.
 */
async function recover(system: LocalSystem, out: NodeJS.WriteStream, wait: boolean): Promise<ReconcileReport> {
  const report = await system.reconciler.run();
  const { jobs, runs } = system.processes.active();
  if (jobs && wait) out.write(`Finishing run ${runs.join(', ')} first (${plural(jobs, 'job')} started by the reconciler)…\n`);
  if (wait) await system.drain();
  return report;
}

const SIGNALS = {
  SIGINT: { code: 130, how: 'Ctrl-C' },
  SIGTERM: { code: 143, how: 'SIGTERM' },
  SIGHUP: { code: 129, how: 'SIGHUP: its terminal closed' },
} as const;

/** What becomes of the jobs a stop interrupts, in the words the command prints. */
function stoppingText(jobs: number, runs: string[], how: string): string {
  if (!jobs) return `\nStopping (${how}): no job is running here, and nothing new will start.\n`;
  const run = runs.join(', ');
  return (
    `\nStopping ${plural(jobs, 'job')} of run ${run} (${how}): what had not finished is recorded as interrupted. ` +
    `The next start of starfish (\`starfish status\`) reports the run as failed or partially failed, with the reason; ` +
    `\`starfish retry ${runs[0]}\` then reruns it (only its failed FOVs when some succeeded).\n`
  );
}

/**
 * What a signal does. At the console's prompt a Ctrl-C is Ctrl-D (`atPrompt` closes the prompt).
 * Otherwise the command stops: the jobs it runs get SIGTERM and are recorded as interrupted, a
 * run being planned finishes planning but starts no job, and the command exits with 128 + the
 * signal; the next start of starfish reports those runs. A second signal exits at once.
 */
function onSignals(system: LocalSystem, out: NodeJS.WriteStream, atPrompt?: () => boolean): void {
  let stopping = false;
  const handle = (sig: keyof typeof SIGNALS) => {
    if (sig === 'SIGINT' && atPrompt?.()) return;
    const { code, how } = SIGNALS[sig];
    if (stopping) {
      out.write(`\nStopped at once (${how} again): the next start of starfish finds what was left as interrupted.\n`);
      process.exit(code);
    }
    stopping = true;
    const { jobs, runs } = system.processes.active();
    out.write(stoppingText(jobs, runs, how));
    const stopped = system.processes.stop(how);
    // A run being planned is let finish planning; its submission is refused, so it ends failed with why.
    void Promise.all([stopped, system.bus.drain()])
      .then(() => system.processes.stop(how))
      .finally(() => process.exit(code));
  };
  for (const sig of Object.keys(SIGNALS) as Array<keyof typeof SIGNALS>) process.on(sig, () => handle(sig));
}

/**
 * The run's outcome in the terminal. A manifest's text is not the command's own (a reason can
 * carry what a job wrote; the run id and output are as typed): each piece is scrubbed of escape
 * sequences and control characters first, as the console's messages are.
 */
function exitCodeOf(m: RunManifest, out: NodeJS.WriteStream): number {
  const runId = scrub(m.runId);
  const output = scrub(m.inputs.output);
  out.write(`\nrun ${runId}: ${m.status}${m.statusReason ? ` (${scrub(m.statusReason)})` : ''}\n`);
  if (m.status === 'succeeded' || m.status === 'planned') {
    if (m.status === 'succeeded') out.write(`results: ${output}/results/\n`);
    return EXIT.ok;
  }
  if (m.status === 'awaiting-approval') {
    out.write(`The run needs approval; open \`npm start\` and type /starfish approve ${runId}\n`);
    return EXIT.awaitingApproval;
  }
  if (m.results) out.write(`partial results: ${output}/results/\n`);
  return EXIT.runFailed;
}

export function ensureExample(env: Env, out: NodeJS.WriteStream = process.stdout): void {
  if (existsSync(EXAMPLE_EXPERIMENT)) return;
  out.write(`Generating the synthetic ISS example into ${path.dirname(EXAMPLE_EXPERIMENT)} …\n`);
  const result = spawnSync(defaultPython(env), [path.join(REPO_ROOT, 'examples/synthetic-iss/generate.py'), '--out', path.dirname(EXAMPLE_EXPERIMENT)], { stdio: 'inherit' });
  if (result.status !== 0) throw new ConfigError(`Could not generate the example experiment (exit ${result.status}). Is ${defaultPython(env)} the Debian python3 with python3-numpy, python3-scipy, python3-skimage and python3-tifffile? Set STARFISH_PYTHON to one that is.`);
}

async function consoleLoop(env: Env): Promise<number> {
  // The banner suggests the example: make sure it is there to be run.
  ensureExample(env);
  const chat = new ConsoleChat(process.stdout, localUser());
  const system = makeSystem(env, chat);
  const caller = { userId: localUser(), channel: env.STARFISH_CHANNEL };
  let prompt: readline.Interface | undefined;
  onSignals(system, process.stdout, () => {
    prompt?.close();
    return prompt !== undefined;
  });
  await recover(system, process.stdout, false);
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
  prompt = rl;
  process.stdout.write(
    `starfish console — channel #${env.STARFISH_CHANNEL}, store ${homeDir(env)}\nType /starfish help, or try: /starfish run ${path.relative(process.cwd(), EXAMPLE_EXPERIMENT)}\nButtons appear as [Label: /starfish …]: type the command to press them. Ctrl-D quits, once the runs started here have finished (Ctrl-C then stops them).\n`,
  );
  rl.setPrompt('> ');
  rl.prompt();
  // Async iteration keeps lines that arrive together (pasted, or piped from a script).
  for await (const line of rl) {
    if (['exit', 'quit'].includes(line.trim())) break;
    if (line.trim()) {
      const answer = await system.command(commandText(line), caller);
      if (answer.message) process.stdout.write(`(only visible to you) ${renderText(answer.message)}\n`);
    }
    rl.prompt();
  }
  prompt = undefined;
  rl.close();
  await leave(system);
  return EXIT.ok;
}

/** After Ctrl-D, Ctrl-C at the prompt or `exit`: what this console still runs is waited for, and said so. */
async function leave(system: LocalSystem): Promise<void> {
  // A run typed just before is planned first: its jobs are then this console's too.
  await system.bus.drain();
  const { jobs, runs } = system.processes.active();
  if (jobs) {
    // On a terminal the progress line is redrawn in place: start a line of our own.
    process.stdout.write(
      `${process.stdout.isTTY ? '\n' : ''}Waiting for run ${runs.join(', ')} to finish (${plural(jobs, 'job')} running here). Ctrl-C stops ${jobs === 1 ? 'it' : 'them'}: ` +
        `what has not finished is then recorded as interrupted, and the next start of starfish reports the run as failed or partially failed.\n`,
    );
  }
  await system.settle();
}

const USAGE = `Usage: starfish [command]

  start                     the Slack app (Socket Mode) when SLACK_BOT_TOKEN and SLACK_APP_TOKEN are set,
                            the console otherwise (what \`npm start\` runs)
  console                   a channel in the terminal: type /starfish commands, watch runs
  serve                     the Slack app in Socket Mode on this machine (docs/slack.md)
  demo                      generate the example experiment if needed and run it (\`npm run demo\`)
  reconcile                 one reconciler pass over the active runs
  <slack command>           one command as in Slack, e.g. \`starfish run exp.json fovs=0-3\`,
                            \`starfish status\`, \`starfish help run\`; a run is followed to its end

Every start first reconciles the runs in STARFISH_HOME (a run whose command stopped is reported).
Ctrl-C, SIGTERM or SIGHUP stops the jobs this command runs: they are recorded as interrupted and
the next start reports their runs as failed or partially failed (docs/local.md).

Exit codes: 0 done (a run: succeeded), 1 the run failed or partially failed, 2 refused (bad input,
not allowed, nothing to do), 3 the run waits for approval, 78 bad configuration, 128 + the signal
when stopped (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).
Environment: ${namesReadBy('command').join(', ')}
(README.md "Configuration" has an example of each).
`;

async function main(argv: string[]): Promise<number> {
  if (argv[0] === '--help' || argv[0] === '-h') {
    process.stdout.write(USAGE);
    return EXIT.ok;
  }
  const env = await configuration();
  const [sub = 'start', ...rest] = argv;
  switch (sub) {
    case 'console':
      return consoleLoop(env);
    case 'start':
      if (env.SLACK_BOT_TOKEN && env.SLACK_APP_TOKEN) return (await import('./slack/socket-mode.js')).serve(env);
      return consoleLoop(env);
    case 'serve':
      return (await import('./slack/socket-mode.js')).serve(env);
    case 'demo': {
      ensureExample(env);
      return runOnce(env, ['run', EXAMPLE_EXPERIMENT, `recipe=${EXAMPLE_RECIPE}`, 'name=synthetic-iss-demo']);
    }
    case 'reconcile': {
      const system = makeSystem(env, new ConsoleChat(process.stdout, localUser()));
      onSignals(system, process.stdout);
      const report = await recover(system, process.stdout, true);
      process.stdout.write(`${JSON.stringify(report)}\n`);
      return EXIT.ok;
    }
    default: {
      const args = [sub, ...rest].filter((a) => a !== '--wait');
      return runOnce(env, args.map(commandText).filter(Boolean));
    }
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    // An error can quote what it failed on (a value, a manifest's text): scrubbed like the rest.
    if (error instanceof ConfigError) {
      process.stderr.write(`starfish: ${scrub(error.message, true)}\n`);
      process.exit(EXIT.config);
    }
    // A system error (a full disk, a refused write) carries its errno and a sentence: no stack.
    const systemError = typeof (error as { code?: unknown }).code === 'string';
    process.stderr.write(`starfish: ${scrub(systemError ? (error as Error).message : ((error as Error).stack ?? String(error)), true)}\n`);
    process.exit(1);
  },
);
