/** A run manifest for the message tests: a running 10,000-FOV run, to be overridden field by field. */
import type { RunManifest } from '../../src/run/manifest.js';

export const manifest = (over: Partial<RunManifest> = {}): RunManifest => ({
  version: 1,
  runId: '261125-k3f9',
  createdAt: '2026-11-25T10:00:00.000Z',
  updatedAt: '2026-11-25T10:00:00.000Z',
  requester: { userId: 'U1', channel: 'C1' },
  request: { experiment: 's3://lab-data/iss/experiment.json', fovs: { kind: 'all' }, dryRun: false },
  inputs: { experiment: 's3://lab-data/iss/experiment.json', recipe: 's3://lab-results/runs/261125-k3f9/inputs/recipe.py', output: 's3://lab-results/runs/261125-k3f9' },
  queue: 'spot',
  plan: { experimentFovCount: 10_000, fovs: '0-9999', fovCount: 10_000, units: [{ size: 10_000, fovs: '0-9999' }] },
  approval: { required: false, reasons: [] },
  status: 'running',
  submissions: [],
  progress: { total: 10_000, succeeded: 5_000, failed: 12, running: 300, waiting: 4_688 },
  failures: [],
  notify: { resultsPosted: false },
  ...over,
});
