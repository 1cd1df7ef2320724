/** Deployment settings (infra/settings.ts): defaults, string forms from `-c`, and errors that name the setting and show an example. */
import { describe, expect, it } from 'vitest';
import { cdkJsonContext, starfishContext } from '../../infra/context.js';
import { readSettings, SETTING_NAMES, SettingsError } from '../../infra/settings.js';

const base = { 'starfish:allowedBuckets': ['lab-data'] };
const error = (context: Record<string, unknown>): string => {
  try {
    readSettings(context);
  } catch (e) {
    expect(e).toBeInstanceOf(SettingsError);
    return (e as Error).message;
  }
  throw new Error('expected a SettingsError');
};

describe('settings', () => {
  it('reads the example settings of cdk.json', () => {
    const s = readSettings(starfishContext(cdkJsonContext()));
    expect(s.allowedBuckets).toEqual(['lab-data']);
    expect(s.readonlyBuckets).toEqual(['spacetx.starfish.data.public']);
    expect(s.highmemEnabled).toBe(false);
    expect(s.policy.queues.allowed).toEqual(['spot', 'ondemand']);
    // cdk.json shows every setting, so it doubles as their documentation.
    expect(Object.keys(starfishContext(cdkJsonContext())).map((k) => k.replace('starfish:', '')).sort()).toEqual(
      SETTING_NAMES.filter((n) => n !== 'resultsBucketName' && n !== 'highmemInstanceTypes').sort(),
    );
  });

  it('accepts the string forms `-c` gives: comma lists, numbers, booleans, JSON', () => {
    const s = readSettings({
      'starfish:allowedBuckets': 'lab-data, lab-archive',
      'starfish:highmemEnabled': 'true',
      'starfish:intermediateRetentionDays': '30',
      'starfish:maxVcpus': '{"spot": 512}',
      'starfish:policy': '{"queues": {"default": "spot", "allowed": ["spot", "highmem"]}}',
    });
    expect(s.allowedBuckets).toEqual(['lab-data', 'lab-archive']);
    expect(s.highmemEnabled).toBe(true);
    expect(s.intermediateRetentionDays).toBe(30);
    expect(s.maxVcpus).toEqual({ spot: 512, ondemand: 64, highmem: 64 });
    expect(s.policy.queues.allowed).toEqual(['spot', 'highmem']);
  });

  it('requires allowed buckets, with an example', () => {
    expect(error({})).toMatch(/^Setting starfish:allowedBuckets is required\. Example: -c starfish:allowedBuckets=lab-data/);
  });

  it('refuses s3:// URLs where bucket names belong', () => {
    expect(error({ 'starfish:allowedBuckets': 's3://lab-data/iss' })).toMatch(/starfish:allowedBuckets is not valid .*must be an S3 bucket name .*Example:/);
  });

  it('catches typos in setting names', () => {
    expect(error({ ...base, 'starfish:allowedBucket': 'x' })).toMatch(/Unknown setting starfish:allowedBucket\. Known settings: .*starfish:allowedBuckets/);
  });

  it('validates the policy with the bot’s own schema, and against the deployed queues', () => {
    expect(error({ ...base, 'starfish:policy': { approval: { fovThreshold: -1 } } })).toMatch(/starfish:policy is not valid \(approval\.fovThreshold\)/);
    expect(error({ ...base, 'starfish:policy': { queues: { default: 'highmem', allowed: ['highmem'] } } })).toMatch(
      /starfish:policy .*names queue "highmem", but this stack deploys only spot, ondemand \(set starfish:highmemEnabled=true/,
    );
    const long = { approval: { approvers: Array.from({ length: 200 }, (_, i) => `U${String(i).padStart(10, '0')}`) } };
    expect(error({ ...base, 'starfish:policy': long })).toMatch(/keep it under 2048 \(Lambda environment variables are limited to 4 KB/);
  });

  it('keeps the policy and bucket lists within what the 4 KB Lambda environment leaves them', () => {
    const buckets = Array.from({ length: 100 }, (_, i) => `lab-imaging-archive-bucket-${i}`).join(',');
    expect(error({ ...base, 'starfish:allowedBuckets': buckets })).toMatch(/starfish:allowedBuckets .*takes \d+ characters of the Lambdas' 4 KB environment; keep the three under 2600/);
  });

  it('checks Fargate sizes, log retention and bucket overlap', () => {
    expect(error({ ...base, 'starfish:fovJob': { vcpus: 1, memoryMiB: 512 } })).toMatch(/starfish:fovJob .*with 1 vCPU Fargate accepts 2048–8192 MiB/);
    expect(error({ ...base, 'starfish:logRetentionDays': 10 })).toMatch(/starfish:logRetentionDays .*retention period: 1, 3, 5, 7, 14/);
    expect(error({ ...base, 'starfish:readonlyBuckets': 'lab-data' })).toMatch(/starfish:readonlyBuckets .*also in allowedBuckets/);
  });
});
