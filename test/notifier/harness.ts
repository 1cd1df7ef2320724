/** A run launched through the real launcher onto a simulated Batch, for notifier tests. */
import { Launcher } from '../../src/launcher/launcher.js';
import { Notifier } from '../../src/notifier/notifier.js';
import { Reconciler } from '../../src/reconciler/reconciler.js';
import { parsePolicy } from '../../src/run/policy.js';
import { loadManifest } from '../../src/run/manifest-store.js';
import { silentLogger, type CoreDeps, type Settings } from '../../src/core.js';
import type { Chat } from '../../src/ports.js';
import { MapReader, MemoryStore, RecordingChat, SimulatedBatch, experimentFiles } from '../helpers/memory-adapters.js';

export async function launchedRun<C extends Chat = RecordingChat>(fovs: number, settings: Partial<Settings> = {}, options: { chat?: C; start?: number; policy?: unknown } = {}) {
  let now = options.start ?? Date.parse('2026-11-25T10:00:00Z');
  const clock = { now: () => now };
  const store = new MemoryStore();
  const batch = new SimulatedBatch(clock.now);
  const chat = (options.chat ?? new RecordingChat()) as C;
  const deps: CoreDeps = {
    store,
    reader: new MapReader(experimentFiles(fovs)),
    executor: batch,
    chat,
    policy: parsePolicy(options.policy ?? { approval: { fovThreshold: 1_000_000 } }, 'test'),
    clock,
    log: silentLogger,
    settings: { progressIntervalMs: 60_000, digestIntervalMs: 300_000, stuckAfterMs: 30 * 60_000, allowPaths: false, ...settings },
  };
  const launcher = new Launcher(deps);
  const notifier = new Notifier(deps);
  const reconciler = new Reconciler(deps, notifier);
  await launcher.handle({
    type: 'RunRequested',
    userId: 'U1',
    channel: 'C1',
    request: { experiment: 's3://lab-data/exp/experiment.json', recipe: 's3://lab-data/recipes/iss.py', fovs: { kind: 'all' }, dryRun: false },
  });
  const runId = [...store.objects.keys()].find((k) => k.endsWith('/run.json'))!.split('/')[1]!;
  return {
    runId,
    store,
    deps,
    batch,
    chat,
    notifier,
    reconciler,
    launcher,
    advance: (ms: number) => (now += ms),
    now: () => now,
    manifest: async () => (await loadManifest(store, runId))!.manifest,
  };
}
