/**
 * Failure kinds from the words AWS uses for a job's end: the Batch and ECS reasons below are the
 * ones their documentation and the retry strategy's patterns name (AWS Batch User Guide, "Automated
 * job retries" and "Job timeouts"; Amazon ECS "Stopped task error codes").
 */
import { describe, expect, it } from 'vitest';
import { failureKind } from '../../src/run/failure-kind.js';
import { failureAdvice } from '../../src/messages/blocks.js';
import { manifest } from '../messages/fixtures.js';

describe('failureKind', () => {
  it.each([
    [{ statusReason: 'Host EC2 (instance i-0f3c8a1e2b4d5c6a7) terminated.' }, 'reclaimed'],
    [{ statusReason: 'Your Spot Task was interrupted.' }, 'reclaimed'],
    [{ statusReason: 'Job attempt duration exceeded timeout' }, 'timeout'],
    [{ statusReason: 'Essential container in task exited', containerReason: 'OutOfMemoryError: Container killed due to memory usage', exitCode: 137 }, 'memory'],
    [{ statusReason: 'Essential container in task exited', exitCode: 137 }, 'memory'],
    [{ statusReason: 'Essential container in task exited', exitCode: 1 }, 'recipe'],
    [{ statusReason: 'Essential container in task exited', exitCode: 2 }, 'recipe'],
    [{ statusReason: 'interrupted: the starfish command that ran it stopped (Ctrl-C, kill or crash)' }, 'interrupted'],
    [{ statusReason: 'CannotPullContainerError: pull image manifest has been retried 5 time(s)' }, 'unknown'],
    [{}, 'unknown'],
  ] as const)('%o is %s', (end, kind) => {
    expect(failureKind(end)).toBe(kind);
  });
});

describe('failure advice', () => {
  const m = manifest({ runId: '261125-k3f9', request: { experiment: 's3://lab-data/iss/experiment.json', fovs: { kind: 'all' }, dryRun: false } });

  it('offers retry for what a retry can fix, and only then', () => {
    expect(failureAdvice(m, [{ fov: 3, kind: 'reclaimed' }, { fov: 4, kind: 'timeout' }])).toEqual(['FOV 3-4: `/starfish retry 261125-k3f9` reruns them.']);
  });

  it('tells a recipe failure to fix the recipe (a new run) or the data (a retry), and memory to use a bigger queue', () => {
    const advice = failureAdvice(m, [{ fov: 1, kind: 'recipe' }, { fov: 2, kind: 'memory' }, { fov: 7, kind: 'reclaimed' }]);
    expect(advice).toEqual([
      'FOV 1: the recipe or the data failed (the reason says which), so a plain retry fails the same way. Fixed the recipe? `/starfish run s3://lab-data/iss/experiment.json fovs=1 recipe=…` Fixed the data in place? `/starfish retry 261125-k3f9`',
      'FOV 2: out of memory; run them on a queue with more memory: `/starfish run s3://lab-data/iss/experiment.json fovs=2 queue=…`',
      'FOV 7: interrupted, reclaimed or timed out; `/starfish retry 261125-k3f9` reruns every failed FOV of the run, these included.',
    ]);
  });

  it('advises a failure of unknown kind (an older manifest) as retryable', () => {
    expect(failureAdvice(m, [{ fov: 5, kind: undefined }])).toEqual(['FOV 5: `/starfish retry 261125-k3f9` reruns them.']);
  });
});
