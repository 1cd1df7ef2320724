/** Deployment settings (infra/settings.ts): defaults, string forms from `-c`, and errors that name the setting and show an example. */
import { describe, expect, it } from 'vitest';
import { cdkJsonContext, starfishContext } from '../../infra/context.js';
import { Lazy } from 'aws-cdk-lib';
import { checkLambdaEnvironment, readSettings, SETTING_NAMES, SettingsError } from '../../infra/settings.js';
import { lambdaEnvironment } from '../../src/config.js';

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
    expect(error({ 'starfish:allowedBuckets': 's3://lab-data/iss' })).toMatch(/starfish:allowedBuckets is not valid: .*must be an S3 bucket name .*Example:/);
  });

  it('catches typos in setting names', () => {
    expect(error({ ...base, 'starfish:allowedBucket': 'x' })).toMatch(/Unknown setting starfish:allowedBucket\. Known settings: .*starfish:allowedBuckets/);
  });

  it('validates the policy with the bot’s own schema, and against the deployed queues', () => {
    expect(error({ ...base, 'starfish:policy': { approval: { fovThreshold: -1 } } })).toMatch(/starfish:policy is not valid: approval\.fovThreshold: /);
    expect(error({ ...base, 'starfish:policy': { queues: { default: 'highmem', allowed: ['highmem'] } } })).toMatch(
      /starfish:policy .*names queue "highmem", but this stack deploys only spot, ondemand \(set starfish:highmemEnabled=true/,
    );
    const long = { approval: { approvers: Array.from({ length: 200 }, (_, i) => `U${String(i).padStart(10, '0')}`) } };
    expect(error({ ...base, 'starfish:policy': long })).toMatch(/keep it under 2048 \(Lambda environment variables are limited to 4 KB/);
  });

  it('keeps the policy and bucket lists within what the 4 KB Lambda environment leaves them', () => {
    const buckets = Array.from({ length: 100 }, (_, i) => `lab-imaging-archive-bucket-${i}`).join(',');
    expect(error({ ...base, 'starfish:allowedBuckets': buckets })).toMatch(/starfish:allowedBuckets .*takes \d+ characters of the Lambdas' 4 KB environment; keep them under 2600/);
  });

  it('checks Fargate sizes, log retention and bucket overlap', () => {
    expect(error({ ...base, 'starfish:fovJob': { vcpus: 1, memoryMiB: 512 } })).toMatch(/starfish:fovJob .*with 1 vCPU Fargate accepts 2048–8192 MiB/);
    expect(error({ ...base, 'starfish:logRetentionDays': 10 })).toMatch(/starfish:logRetentionDays .*retention period: 1, 3, 5, 7, 14/);
    expect(error({ ...base, 'starfish:readonlyBuckets': 'lab-data' })).toMatch(/starfish:readonlyBuckets .*also in allowedBuckets/);
  });

  it('reads the https hosts and Slack ids from -c strings, and null (cdk.json) or an empty value as not set', () => {
    expect(readSettings({ ...base, 'starfish:httpsHosts': 'data.lab.org, *.SpaceTx.org', 'starfish:slackTeamId': 'E0123ABCD' })).toMatchObject({
      httpsHosts: ['data.lab.org', '*.spacetx.org'],
      slackTeamId: 'E0123ABCD',
    });
    const unset = readSettings({ ...base, 'starfish:httpsHosts': null, 'starfish:slackTeamId': '', 'starfish:slackAppId': null });
    expect([unset.httpsHosts, unset.slackTeamId, unset.slackAppId]).toEqual([undefined, undefined, undefined]);
  });

  it('refuses malformed https hosts and Slack ids, naming the setting with its example', () => {
    const problem = (context: Record<string, unknown>) => error({ ...base, ...context });
    expect(problem({ 'starfish:httpsHosts': ['https://data.lab.org/'] })).toMatch(
      /^Setting starfish:httpsHosts is not valid: item 1: host names, or \*\.domain\. Example: -c 'starfish:httpsHosts=data\.lab\.org,\*\.spacetx\.org'/,
    );
    expect(problem({ 'starfish:slackTeamId': 'my-team' })).toMatch(/^Setting starfish:slackTeamId is not valid: must be a Slack team id, e\.g\. T0123ABCD\. Example: -c starfish:slackTeamId=T0123ABCD/);
    expect(problem({ 'starfish:slackAppId': 'T0123ABCD' })).toMatch(/^Setting starfish:slackAppId is not valid: must be a Slack app id, e\.g\. A0123ABCD .*Example: -c starfish:slackAppId=A0123ABCD/);
  });

  it('reserves Lambda concurrency by default, reads -c JSON, and allows null only as a way out for small accounts', () => {
    expect(readSettings(base).reservedConcurrency).toEqual({ slack: 10, events: 10 });
    expect(readSettings({ ...base, 'starfish:reservedConcurrency': '{"slack": 25}' }).reservedConcurrency).toEqual({ slack: 25, events: 10 });
    expect(readSettings({ ...base, 'starfish:reservedConcurrency': { slack: null, events: null } }).reservedConcurrency).toEqual({ slack: null, events: null });
    // Below 3 the SQS source (two notifier batches at once) would starve run events and the reconciler.
    expect(error({ ...base, 'starfish:reservedConcurrency': { events: 2 } })).toMatch(/starfish:reservedConcurrency is not valid: events: must be at least 3: two notifier batches/);
    expect(error({ ...base, 'starfish:reservedConcurrency': { slack: 0 } })).toMatch(/starfish:reservedConcurrency is not valid: slack: /);
    // A misspelt key inside the object is that setting's mistake, not an unknown setting.
    expect(error({ ...base, 'starfish:reservedConcurrency': { slak: 5 } })).toMatch(/^Setting starfish:reservedConcurrency is not valid: .*slak/);
  });

  it('versions the results bucket unless told not to', () => {
    expect(readSettings(base).versioning).toBe(true);
    expect(readSettings({ ...base, 'starfish:versioning': 'false' }).versioning).toBe(false);
  });

  it('checks the settings that reach the Lambdas with those variables’ own schemas', () => {
    expect(error({ ...base, 'starfish:downloadExpirySeconds': 700_000 })).toMatch(
      /^Setting starfish:downloadExpirySeconds is not valid: must be at most 604800 \(7 days, the longest S3 allows for a presigned URL\)\. Example: -c starfish:downloadExpirySeconds=21600/,
    );
    expect(error({ ...base, 'starfish:policy': '{"approval": ' })).toMatch(/^Setting starfish:policy is not valid: must be the policy object in JSON\. Example: -c 'starfish:policy=\{"approval"/);
  });
});

describe('the Lambdas’ environment the stack writes', () => {
  /** A deploy-time value, as CDK hands it over before synthesis resolves it. */
  const token = (value: string) => Lazy.string({ produce: () => value });
  const written = () => {
    const s = readSettings(starfishContext(cdkJsonContext()));
    return lambdaEnvironment({
      bucket: token('starfishchatops-resultsbucket-1a2b3c'),
      allowedBuckets: s.allowedBuckets,
      readonlyBuckets: s.readonlyBuckets,
      eventBus: token('StarfishChatopsRunEventBus'),
      queues: { spot: token('arn:aws:batch:eu-west-1:123456789012:job-queue/spot'), ondemand: token('arn:aws:batch:eu-west-1:123456789012:job-queue/ondemand') },
      fovJobDefinition: token('arn:aws:batch:eu-west-1:123456789012:job-definition/fov:1'),
      mergeJobDefinition: token('arn:aws:batch:eu-west-1:123456789012:job-definition/merge:1'),
      queueJobDefinitions: {},
      policy: s.policy,
      slackSecretArn: token('arn:aws:secretsmanager:eu-west-1:123456789012:secret:slack'),
      dlqUrl: token('https://sqs.eu-west-1.amazonaws.com/123456789012/dlq'),
      logGroup: token('/aws/batch/StarfishChatops'),
      downloadExpirySeconds: s.downloadExpirySeconds,
    });
  };

  it('parses with the reader the Lambdas start with, deploy-time values stood in for', () => {
    expect(() => checkLambdaEnvironment(written())).not.toThrow();
  });

  it('fails, naming the variable and its example, when a variable is left out or does not fit the policy', () => {
    const { STARFISH_EVENT_BUS: _left, ...rest } = written();
    expect(() => checkLambdaEnvironment(rest)).toThrow(/STARFISH_EVENT_BUS is not set: is required\. Example: STARFISH_EVENT_BUS=starfish-chatops/);
    // The queue map keeps its shape around the deploy-time ARNs, so the policy is checked against it.
    const env = written();
    const policy = JSON.parse(env.STARFISH_POLICY_JSON!) as { queues: { allowed: string[] } };
    policy.queues.allowed.push('gpu');
    expect(() => checkLambdaEnvironment({ ...env, STARFISH_POLICY_JSON: JSON.stringify(policy) })).toThrow(/STARFISH_JOB_QUEUES has no job queue for "gpu"/);
  });
});
