/**
 * `npm run bench`: runs every benchmark in bench/ and prints one JSON line each. The figures
 * in BENCHMARKS.md come from this output.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const benches: Array<[string, string[]]> = [
  ['notifier simulation', ['npx', 'tsx', 'bench/notifier-sim.bench.ts', '--runs', '3']],
  ['slack acknowledgement', ['npx', 'tsx', 'bench/slack-ack.bench.ts']],
  ['merge-results', [python, 'bench/merge_bench.py', '--runs', '5']],
  ['recipe accuracy', [python, 'bench/recipe_accuracy.py', '--runs', '3']],
  ['packing model', ['npx', 'tsx', 'bench/packing-model.bench.ts']],
  ['local packing', ['npx', 'tsx', 'bench/local-packing.bench.ts', '--runs', '3']],
  ['listing runs', ['npx', 'tsx', 'bench/list-runs.bench.ts', '--runs', '5']],
];

let failed = 0;
for (const [name, [cmd, ...args]] of benches) {
  const file = args.find((a) => a.startsWith('bench/'));
  if (file && !existsSync(file)) {
    console.error(`skipping ${name}: ${file} is missing`);
    continue;
  }
  console.error(`running ${name}…`);
  const result = spawnSync(cmd!, args, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  const last = result.stdout.trim().split('\n').at(-1);
  if (result.status !== 0) {
    failed++;
    console.error(`${name} failed (exit ${result.status})`);
  } else console.log(last);
}
process.exit(failed ? 1 : 0);
