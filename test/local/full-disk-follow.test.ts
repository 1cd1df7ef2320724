/**
 * A one-shot command follows its run until it ends. When the store stops taking writes (a full
 * disk), the run can no longer change: the command says why instead of waiting for ever.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLocalSystem } from '../../src/local/system.js';
import { parsePolicy } from '../../src/run/policy.js';
import { createManifest } from '../../src/run/manifest-store.js';
import { newManifest } from '../../src/lifecycle/new-run.js';
import { makePlan } from '../../src/run/plan.js';
import { recipeSha256 } from '../../src/run/cost.js';
import { runKeys } from '../../src/run/layout.js';
import { RecordingChat } from '../helpers/memory-adapters.js';

let home: string;
afterEach(async () => rm(home, { recursive: true, force: true }));

describe('following a run on a full disk', () => {
  it('stops waiting with the store\'s reason when nothing can be written', async () => {
    home = await mkdtemp(path.join(tmpdir(), 'starfish-full-'));
    const system = createLocalSystem({ home, python: '/usr/bin/python3', chat: new RecordingChat(), policy: parsePolicy({}, 'test') });
    const planned = makePlan([0, 1], { kind: 'all' });
    if (!planned.ok) throw new Error(planned.reason);
    const request = { experiment: '/data/e.json', recipe: '/data/r.py', fovs: { kind: 'all' as const }, dryRun: false };
    const m = newManifest(
      {
        runId: '261125-full',
        now: Date.now(),
        requester: { userId: 'me', channel: 'starfish' },
        checked: { request, queue: 'local', plan: planned.value, experiment: { fovs: [0, 1], source: Buffer.from('') }, recipeBody: Buffer.from(''), recipeSha256: recipeSha256('') },
        approvalReasons: [],
        locate: (k) => path.join(home, k),
        keys: { recipeSnapshot: runKeys('261125-full').recipeSnapshot, outputs: runKeys('261125-full').outputs },
      },
      parsePolicy({}, 'test'),
    );
    await createManifest(system.store, { ...m, status: 'running', pendingSubmission: undefined });
    const full = () => Promise.reject(Object.assign(new Error(`Could not write a file in ${home}: no space left on device (ENOSPC); free space on that disk and try again`), { code: 'ENOSPC' }));
    system.store.put = full;
    system.store.createIfAbsent = full;
    system.store.replaceIf = full;
    await expect(system.settleRun('261125-full', { pollMs: 5, reconcileEveryMs: 30 })).rejects.toThrow(/run 261125-full cannot be recorded any further: .*no space left on device \(ENOSPC\); free space/);
  });
});
