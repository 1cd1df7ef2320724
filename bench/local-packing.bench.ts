/**
 * The local executor on 200 small FOVs, one run each way: one Python process per FOV against
 * packed chunks (the planner's choice: 50 FOVs to each of the 4 slots), end to end (request,
 * every FOV through process-fov with the real SpaceTx check, the merge). The recipe imports
 * numpy and returns no spots, so what is measured is what packing saves: the start of an
 * interpreter, its imports and the recipe's loading, once per FOV or once per chunk.
 * Target: packed at least 2× faster.
 *
 *   npx tsx bench/local-packing.bench.ts [--runs 3]
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { localHarness } from '../test/helpers/local.js';
import { CODEBOOK_JSON } from '../test/helpers/spacetx.js';
import { machine, median } from './machine.js';

const FOVS = 200;
const SLOTS = 4;
const runs = Number(process.argv[process.argv.indexOf('--runs') + 1] ?? 3) || 3;

/** A valid SpaceTx 5.0.0 experiment of FOVS FOVs, each one 4 × 4 tile (spacetx/starfish schema). */
async function smallExperiment(dir: string): Promise<string> {
  const contents: Record<string, string> = {};
  for (let fov = 0; fov < FOVS; fov++) {
    const name = `fov_${String(fov).padStart(3, '0')}`;
    contents[name] = `primary-${name}.json`;
    const tile = { file: `primary-${name}-r0-c0-z0.tiff`, coordinates: { xc: [0, 0.1], yc: [0, 0.1], zc: [0, 0.01] }, indices: { r: 0, c: 0, z: 0 }, tile_shape: { y: 4, x: 4 }, tile_format: 'TIFF' };
    await writeFile(path.join(dir, tile.file), 'not read by this recipe');
    await writeFile(path.join(dir, contents[name]), JSON.stringify({ version: '0.1.0', dimensions: ['r', 'c', 'z', 'y', 'x'], shape: { r: 1, c: 1, z: 1 }, default_tile_format: 'TIFF', extras: {}, tiles: [tile] }));
  }
  await writeFile(path.join(dir, 'primary.json'), JSON.stringify({ version: '0.1.0', contents, extras: {} }));
  await writeFile(path.join(dir, 'codebook.json'), CODEBOOK_JSON);
  await writeFile(path.join(dir, 'experiment.json'), JSON.stringify({ version: '5.0.0', images: { primary: 'primary.json' }, codebook: 'codebook.json', extras: {} }));
  await writeFile(path.join(dir, 'recipe.py'), 'import numpy\n\ndef process_fov(fov_index, experiment_url):\n    return numpy.zeros(0, dtype=[("x", "f8"), ("y", "f8"), ("target", "U16")])\n');
  return path.join(dir, 'experiment.json');
}

async function oneRun(experiment: string, packFovs: boolean): Promise<{ seconds: number; children: number; status: string }> {
  const home = await mkdtemp(path.join(os.tmpdir(), 'starfish-bench-home-'));
  const policy = { queues: { default: 'local', allowed: ['local'] }, cost: { packFovs, defaultSecondsPerFov: 1, queues: { local: { maxVcpus: SLOTS } } } };
  const h = localHarness(home, { policy, concurrency: SLOTS });
  const start = performance.now();
  await h.command(`run ${experiment} recipe=${path.join(path.dirname(experiment), 'recipe.py')}`);
  await h.system.settle();
  const seconds = (performance.now() - start) / 1000;
  const m = (await h.latestRun())!;
  await rm(home, { recursive: true, force: true });
  return { seconds, children: m.plan.units.reduce((n, u) => n + u.size, 0), status: m.status };
}

const dir = await mkdtemp(path.join(os.tmpdir(), 'starfish-bench-exp-'));
await mkdir(dir, { recursive: true });
const experiment = await smallExperiment(dir);
const result: Record<string, { medianSeconds: number; seconds: number[]; children: number }> = {};
for (const [mode, pack] of [['onePerFov', false], ['packed', true]] as const) {
  const seconds: number[] = [];
  let children = 0;
  for (let i = 0; i < runs; i++) {
    const r = await oneRun(experiment, pack);
    if (r.status !== 'succeeded') throw new Error(`${mode} run ended ${r.status}`);
    seconds.push(Number(r.seconds.toFixed(2)));
    children = r.children;
  }
  result[mode] = { medianSeconds: median(seconds), seconds, children };
}
await rm(dir, { recursive: true, force: true });
const speedup = Number((result.onePerFov!.medianSeconds / result.packed!.medianSeconds).toFixed(1));
console.log(JSON.stringify({ bench: 'local-packing', machine: machine(), fovs: FOVS, slots: SLOTS, runs, ...result, speedup }));
