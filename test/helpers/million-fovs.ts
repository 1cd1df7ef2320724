/**
 * Run in a child process with a fixed heap by test/launcher/bounds.test.ts: checks a run request
 * against an experiment listing 1,000,000 FOVs, with a hostile selection of a few thousand
 * characters, and prints what was planned and the peak heap.
 */
import { checkRequest } from '../../src/launcher/request-check.js';
import { parseCommand } from '../../src/command/grammar.js';
import { parsePolicy } from '../../src/run/policy.js';
import { PRODUCTION_SETTINGS } from '../../src/core.js';
import { MapReader } from './memory-adapters.js';
import { CODEBOOK_JSON, experimentJson } from './spacetx.js';

const FOVS = 1_000_000;
const entries = Array.from({ length: FOVS }, (_, i) => `"fov_${String(i).padStart(7, '0')}":"primary-fov_${i}.json"`);
const primary = `{"version":"0.1.0","contents":{${entries.join(',')}}}`;
entries.length = 0;
const files = new Map<string, string>([
  ['s3://lab-data/big/experiment.json', experimentJson()],
  ['s3://lab-data/big/codebook.json', CODEBOOK_JSON],
  ['s3://lab-data/big/primary_image.json', primary],
  ['s3://lab-data/recipes/iss.py', 'def process_fov(fov_index, experiment_url):\n    return None\n'],
]);

let peak = 0;
const sample = setInterval(() => (peak = Math.max(peak, process.memoryUsage().heapUsed)), 5);
const selection = process.argv[2] ?? 'all';
const parsed = parseCommand(`run s3://lab-data/big/experiment.json recipe=s3://lab-data/recipes/iss.py fovs=${selection}`);
if (!parsed.ok || parsed.value.name !== 'run') {
  console.log(JSON.stringify({ refused: parsed.ok ? 'not a run' : parsed.reason }));
  process.exit(0);
}
const deps = { reader: new MapReader(files), policy: parsePolicy({}, 'test'), settings: PRODUCTION_SETTINGS };
const checked = await checkRequest(deps, parsed.value.request);
peak = Math.max(peak, process.memoryUsage().heapUsed);
clearInterval(sample);
console.log(JSON.stringify(checked.ok ? { fovCount: checked.value.plan.fovCount, units: checked.value.plan.units.length, peakHeapMiB: Math.round(peak / 2 ** 20) } : { refused: checked.reason, peakHeapMiB: Math.round(peak / 2 ** 20) }));
