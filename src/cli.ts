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
import { existsSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { spawnSync } from 'node:child_process';
import { pino } from 'pino';
import { ConfigError, defaultPython, homeDir, loadPolicy, localUser, namesReadBy, readEnv, type Env } from './config.js';
import { ConsoleChat } from './local/console-chat.js';
import { EXAMPLE_EXPERIMENT, EXAMPLE_RECIPE, localSystemFromEnv, type LocalSystem } from './local/system.js';
import { REPO_ROOT } from './local/process-executor.js';
import { loadManifest, listManifests } from './run/manifest-store.js';
import { renderText } from './messages/text.js';
import { scrub } from './messages/message.js';
import { parseCommand } from './command/grammar.js';
import type { RunManifest } from './run/manifest.js';


export const EXIT = { ok: 0, runFailed: 1, refused: 2, awaitingApproval: 3, config: 78 } as const;

function makeSystem(env: Env, chat: ConsoleChat): LocalSystem {
  return localSystemFromEnv(env, chat, pino({ level: env.LOG_LEVEL }, pino.destination(2)), loadPolicy(env, localUser()));
}

/** The whole configuration, checked before any work: the variables, then the policy file they name. */
function configuration(): Env {
  const env = readEnv();
  loadPolicy(env, localUser());
  return env;
}

/** Strips a leading "/starfish" so both `/starfish run x` and `run x` work at the prompt. */
const commandText = (line: string) => line.trim().replace(/^\/?starfish\b\s*/i, '');

export async function runOnce(env: Env, args: string[], out: NodeJS.WriteStream = process.stdout): Promise<number> {
  const chat = new ConsoleChat(out, localUser());
  const system = makeSystem(env, chat);
  const caller = { userId: localUser(), channel: env.STARFISH_CHANNEL };
  const started = new Date().toISOString();
  const text = args.join(' ');
  out.write(`$ /starfish ${text}\n`);
  const answer = await system.command(text, caller);
  out.write(`(only visible to you) ${renderText(answer.message)}\n`);
  if (answer.refused) return EXIT.refused;
  await system.settle();
  // A refusal that came later (experiment not found, run already ended, …) is still a refusal.
  if (chat.refusals) return EXIT.refused;
  const parsed = parseCommand(text);
  if (!parsed.ok) return EXIT.ok;
  if (parsed.value.name === 'retry') return exitCodeOf((await loadManifest(system.store, parsed.value.runId))!.manifest, out);
  if (parsed.value.name !== 'run') return EXIT.ok;
  const mine = (await listManifests(system.store, 50)).filter((m) => m.createdAt >= started && m.requester.userId === caller.userId);
  if (!mine.length) return EXIT.refused;
  return exitCodeOf((await loadManifest(system.store, mine[0]!.runId))!.manifest, out);
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
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
  process.stdout.write(
    `starfish console — channel #${env.STARFISH_CHANNEL}, store ${homeDir(env)}\nType /starfish help, or try: /starfish run ${path.relative(process.cwd(), EXAMPLE_EXPERIMENT)}\nButtons appear as [Label: /starfish …]: type the command to press them. Ctrl-D quits.\n`,
  );
  rl.setPrompt('> ');
  rl.prompt();
  // Async iteration keeps lines that arrive together (pasted, or piped from a script).
  for await (const line of rl) {
    if (['exit', 'quit'].includes(line.trim())) break;
    if (line.trim()) {
      const answer = await system.command(commandText(line), caller);
      process.stdout.write(`(only visible to you) ${renderText(answer.message)}\n`);
    }
    rl.prompt();
  }
  rl.close();
  process.stdout.write('Waiting for running jobs to finish (Ctrl-C to leave them)…\n');
  await system.settle();
  return EXIT.ok;
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

Exit codes: 0 done (a run: succeeded), 1 the run failed or partially failed, 2 refused (bad input,
not allowed, nothing to do), 3 the run waits for approval, 78 bad configuration.
Environment: ${namesReadBy('command').join(', ')}
(README.md "Configuration" has an example of each).
`;

async function main(argv: string[]): Promise<number> {
  if (argv[0] === '--help' || argv[0] === '-h') {
    process.stdout.write(USAGE);
    return EXIT.ok;
  }
  const env = configuration();
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
      const chat = new ConsoleChat(process.stdout, localUser());
      const report = await makeSystem(env, chat).reconciler.run();
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
    process.stderr.write(`starfish: ${scrub((error as Error).stack ?? String(error), true)}\n`);
    process.exit(1);
  },
);
