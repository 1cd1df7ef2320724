/**
 * What packing FOVs into array children saves, on the case: 10,000 FOVs of 20 s each, a
 * 45 s container start (image pull and start-up, billed but doing no FOV work), a 256-vCPU Fargate
 * Spot queue of 1-vCPU jobs, at the shipped us-east-1 prices. The planner's own choice
 * (src/run/plan.ts fovsPerChild) against one FOV per child; figures from the same cost model the
 * estimates use (src/run/cost.ts estimateCost). Target: start-up at most 10% of compute.
 *
 *   npx tsx bench/packing-model.bench.ts
 */
import { estimateCost, queuePrice } from '../src/run/cost.js';
import { fovsPerChild } from '../src/run/plan.js';
import { machine } from './machine.js';

const FOVS = 10_000;
const SECONDS_PER_FOV = 20;
const queue = { ...queuePrice(undefined, 'spot'), startupSeconds: 45, maxVcpus: 256 };
const parallelChildren = Math.floor(queue.maxVcpus / queue.vcpus);

function row(perChild: number) {
  const f = estimateCost(queue, FOVS, SECONDS_PER_FOV, perChild);
  const computeSeconds = FOVS * SECONDS_PER_FOV;
  return {
    fovsPerChild: f.fovsPerChild,
    children: f.children,
    billedContainerSeconds: f.billedSeconds,
    startupShareOfCompute: Number(((f.children * queue.startupSeconds) / computeSeconds).toFixed(3)),
    usd: Number(f.usd.toFixed(2)),
    wallMinutes: Number((f.wallSeconds / 60).toFixed(1)),
  };
}

const packed = fovsPerChild(FOVS, { secondsPerFov: SECONDS_PER_FOV, startupSeconds: queue.startupSeconds, parallelChildren });
console.log(JSON.stringify({ bench: 'packing-model', machine: machine(), fovs: FOVS, secondsPerFov: SECONDS_PER_FOV, startupSeconds: queue.startupSeconds, vcpus: queue.maxVcpus, onePerChild: row(1), packed: row(packed) }));
