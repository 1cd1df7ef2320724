import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mockClient } from 'aws-sdk-client-mock';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { EventBridgeBus } from '../../src/aws/eventbridge-bus.js';
import { readAwsConfig } from '../../src/aws/config.js';
import { lambdaEnvironment } from '../../src/config.js';
import { createAwsLogger } from '../../src/aws/clients.js';
import { forgetSlackSecrets, slackSecret } from '../../src/aws/secrets.js';
import { S3Client } from '@aws-sdk/client-s3';
import { createAwsSystem } from '../../src/aws/system.js';
import { silentLogger } from '../../src/core.js';
import { CREDENTIALS, QUEUES, REGION, RecordingChat, testEnv } from './helpers.js';

describe('EventBridgeBus', () => {
  const mock = mockClient(EventBridgeClient);
  afterEach(() => mock.reset());
  const bus = () => new EventBridgeBus({ client: new EventBridgeClient({ region: REGION, credentials: CREDENTIALS }), busName: 'starfish-chatops' });

  it('puts one entry: Source starfish.chatops, DetailType the event type, Detail the event', async () => {
    mock.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'e-1' }] });
    const event = { type: 'RunApproved' as const, userId: 'U1', channel: 'C1', runId: '261125-k3f9' };
    await bus().publish(event);
    expect(mock.commandCalls(PutEventsCommand)[0]!.args[0].input).toEqual({
      Entries: [{ EventBusName: 'starfish-chatops', Source: 'starfish.chatops', DetailType: 'RunApproved', Detail: JSON.stringify(event) }],
    });
  });

  it('throws with the entry error when PutEvents reports a failed entry', async () => {
    mock.on(PutEventsCommand).resolves({ FailedEntryCount: 1, Entries: [{ ErrorCode: 'InternalFailure', ErrorMessage: 'try again' }] });
    await expect(bus().publish({ type: 'RunCancelled', userId: 'U1', channel: 'C1', runId: 'x' })).rejects.toThrow('EventBridge did not accept the RunCancelled event: InternalFailure: try again');
  });

  it('validates the event before publishing', async () => {
    await expect(bus().publish({ type: 'RunCancelled', userId: '', channel: 'C1', runId: 'x' })).rejects.toThrow();
    expect(mock.commandCalls(PutEventsCommand)).toHaveLength(0);
  });
});

describe('AWS configuration', () => {
  it('reads the variables infra sets', () => {
    const c = readAwsConfig(testEnv({ STARFISH_BUCKET: 'lab-starfish-results/starfish/', STARFISH_ALLOWED_BUCKETS: 'lab-data, lab-archive', STARFISH_READONLY_BUCKETS: 'spacetx-public-data,lab-data' }));
    expect(c).toMatchObject({
      bucket: 'lab-starfish-results',
      keyPrefix: 'starfish',
      buckets: ['lab-starfish-results', 'lab-data', 'lab-archive'],
      readOnlyBuckets: ['spacetx-public-data'],
      eventBus: 'starfish-chatops',
      queues: QUEUES,
      fovJobDefinition: 'starfish-process-fov',
      mergeJobDefinition: 'starfish-merge-results',
      logGroup: '/aws/batch/job',
      downloadExpirySeconds: 86_400,
      region: 'us-east-1',
    });
    expect(c.policy.approval.fovThreshold).toBe(1_000_000);
  });

  it('implies the results bucket in the allowlist, and defaults the policy', () => {
    const c = readAwsConfig(testEnv({ STARFISH_ALLOWED_BUCKETS: undefined, STARFISH_READONLY_BUCKETS: undefined, STARFISH_POLICY_JSON: undefined, STARFISH_DLQ_URL: undefined }));
    expect(c.buckets).toEqual(['lab-starfish-results']);
    expect(c.readOnlyBuckets).toEqual([]);
    expect(c.policy.queues).toEqual({ default: 'spot', allowed: ['spot', 'ondemand'] });
    expect(c.dlqUrl).toBeUndefined();
    expect(readAwsConfig(testEnv({ STARFISH_SLACK_SECRET_ARN: undefined })).slackSecretArn).toBeUndefined();
  });

  it('names every missing or invalid variable with an example', () => {
    let message = '';
    try {
      readAwsConfig({ AWS_REGION: 'us-east-1', STARFISH_JOB_QUEUES: '{not json', STARFISH_DOWNLOAD_EXPIRY_SECONDS: '700000', STARFISH_ALLOWED_BUCKETS: 's3://lab-data' });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain('STARFISH_BUCKET is not set: is required. Example: STARFISH_BUCKET=lab-starfish-results');
    expect(message).toContain('STARFISH_JOB_QUEUES=');
    expect(message).toContain('must be an object of queue name → job queue ARN in JSON. Example: STARFISH_JOB_QUEUES={"spot":"arn:aws:batch:');
    expect(message).toContain('STARFISH_DOWNLOAD_EXPIRY_SECONDS=700000 is not valid: must be at most 604800 (7 days');
    expect(message).toContain('STARFISH_ALLOWED_BUCKETS=s3://lab-data is not valid: item 1: must be an S3 bucket name (no s3://');
    expect(message).toContain('STARFISH_EVENT_BUS is not set');
    expect(message).not.toContain('STARFISH_SLACK_SECRET_ARN');
  });

  it('never echoes the policy or secret values in its messages', () => {
    expect(() => readAwsConfig(testEnv({ STARFISH_POLICY_JSON: '{"sekrit": ' }))).toThrow(/STARFISH_POLICY_JSON is not valid: must be the policy object in JSON/);
    try {
      readAwsConfig(testEnv({ STARFISH_POLICY_JSON: '{"sekrit": ' }));
    } catch (error) {
      expect((error as Error).message).not.toContain('sekrit');
    }
  });

  it('reports an invalid policy naming the field, with the example', () => {
    expect(() => readAwsConfig(testEnv({ STARFISH_POLICY_JSON: JSON.stringify({ approval: { fovThreshold: -1 } }) }))).toThrow(
      /STARFISH_POLICY_JSON is not valid: approval\.fovThreshold: .*\. Example: STARFISH_POLICY_JSON=\{"approval"/,
    );
  });

  it('reads back exactly what infra writes (lambdaEnvironment), the policy and queue maps included', () => {
    const policy = readAwsConfig(testEnv()).policy;
    const written = {
      bucket: 'lab-starfish-results',
      allowedBuckets: ['lab-data', 'lab-archive'],
      readonlyBuckets: ['spacetx.starfish.data.public'],
      eventBus: 'starfish-chatops',
      queues: QUEUES,
      fovJobDefinition: 'arn:aws:batch:us-east-1:123456789012:job-definition/starfish-process-fov:3',
      mergeJobDefinition: 'arn:aws:batch:us-east-1:123456789012:job-definition/starfish-merge-results:3',
      queueJobDefinitions: { highmem: { fov: 'starfish-process-fov-ec2', merge: 'starfish-merge-results-ec2' } },
      policy,
      slackSecretArn: testEnv().STARFISH_SLACK_SECRET_ARN!,
      dlqUrl: testEnv().STARFISH_DLQ_URL!,
      logGroup: '/aws/batch/StarfishChatops',
      downloadExpirySeconds: 21_600,
    };
    expect(readAwsConfig({ ...lambdaEnvironment(written), AWS_REGION: REGION })).toEqual({
      bucket: written.bucket,
      keyPrefix: '',
      buckets: ['lab-starfish-results', 'lab-data', 'lab-archive'],
      readOnlyBuckets: written.readonlyBuckets,
      eventBus: written.eventBus,
      queues: written.queues,
      fovJobDefinition: written.fovJobDefinition,
      mergeJobDefinition: written.mergeJobDefinition,
      queueJobDefinitions: written.queueJobDefinitions,
      policy,
      slackSecretArn: written.slackSecretArn,
      dlqUrl: written.dlqUrl,
      logGroup: written.logGroup,
      downloadExpirySeconds: written.downloadExpirySeconds,
      region: REGION,
    });
  });

  it('reads STARFISH_HTTPS_HOSTS (trimmed, lower case) into the S3 reader, and checks SLACK_TEAM_ID and SLACK_APP_ID', () => {
    const env = testEnv({ STARFISH_HTTPS_HOSTS: ' Data.Lab.org, *.spacetx.org ,', SLACK_TEAM_ID: 'T0123ABCD', SLACK_APP_ID: 'A0123ABCD' });
    expect(readAwsConfig(env).httpsHosts).toEqual(['data.lab.org', '*.spacetx.org']);
    expect(readAwsConfig(testEnv({ STARFISH_HTTPS_HOSTS: '' })).httpsHosts).toBeUndefined();
    const s3 = new S3Client({ region: REGION, credentials: CREDENTIALS });
    const { reader } = createAwsSystem(new RecordingChat(), env, { clients: { s3 }, log: silentLogger });
    expect(reader.checkReadable('https://data.lab.org/iss/experiment.json')).toEqual({ ok: true });
    expect(reader.checkReadable('https://tiles.spacetx.org/iss/experiment.json')).toEqual({ ok: true });
    const refused = reader.checkReadable('https://example.com/iss/experiment.json');
    expect(refused.ok).toBe(false);
    expect(!refused.ok && refused.reason).toMatch(/reads https inputs only from data\.lab\.org, \*\.spacetx\.org/);
    // Unset: any public host.
    const open = createAwsSystem(new RecordingChat(), testEnv(), { clients: { s3 }, log: silentLogger }).reader;
    expect(open.checkReadable('https://example.com/iss/experiment.json')).toEqual({ ok: true });
  });

  it('names a malformed https host list or Slack id with its example', () => {
    let message = '';
    try {
      readAwsConfig(testEnv({ STARFISH_HTTPS_HOSTS: 'https://data.lab.org/', SLACK_TEAM_ID: 'lab-workspace', SLACK_APP_ID: 'T0123ABCD' }));
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain('STARFISH_HTTPS_HOSTS=https://data.lab.org/ is not valid: item 1: host names, or *.domain. Example: STARFISH_HTTPS_HOSTS=data.lab.org,*.spacetx.org');
    expect(message).toContain('SLACK_TEAM_ID=lab-workspace is not valid: must be a Slack team id, e.g. T0123ABCD. Example: SLACK_TEAM_ID=T0123ABCD');
    expect(message).toContain('SLACK_APP_ID=T0123ABCD is not valid: must be a Slack app id, e.g. A0123ABCD (Basic Information → App ID). Example: SLACK_APP_ID=A0123ABCD');
  });

  it('reads back the optional hosts and Slack ids infra writes, and writes nothing for them when unset', () => {
    const input = {
      bucket: 'lab-starfish-results',
      allowedBuckets: ['lab-data'],
      readonlyBuckets: [],
      eventBus: 'starfish-chatops',
      queues: QUEUES,
      fovJobDefinition: 'starfish-process-fov',
      mergeJobDefinition: 'starfish-merge-results',
      queueJobDefinitions: {},
      policy: readAwsConfig(testEnv()).policy,
      slackSecretArn: testEnv().STARFISH_SLACK_SECRET_ARN!,
      dlqUrl: testEnv().STARFISH_DLQ_URL!,
      logGroup: '/aws/batch/StarfishChatops',
      downloadExpirySeconds: 21_600,
    };
    const unset = lambdaEnvironment(input);
    expect(unset).not.toHaveProperty('STARFISH_HTTPS_HOSTS');
    expect(unset).not.toHaveProperty('SLACK_TEAM_ID');
    expect(unset).not.toHaveProperty('SLACK_APP_ID');
    const env = lambdaEnvironment({ ...input, httpsHosts: ['data.lab.org', '*.spacetx.org'], slackTeamId: 'T0123ABCD', slackAppId: 'A0123ABCD' });
    expect(env).toMatchObject({ STARFISH_HTTPS_HOSTS: 'data.lab.org,*.spacetx.org', SLACK_TEAM_ID: 'T0123ABCD', SLACK_APP_ID: 'A0123ABCD' });
    expect(readAwsConfig({ ...env, AWS_REGION: REGION }).httpsHosts).toEqual(['data.lab.org', '*.spacetx.org']);
  });

  it('checks the Slack and logging variables the Lambdas read too, without echoing tokens', () => {
    let message = '';
    try {
      readAwsConfig(testEnv({ SLACK_BOT_TOKEN: 'xoxp-user-token-not-a-bot', LOG_LEVEL: 'verbose', SLACK_API_URL: '127.0.0.1 port 3999' }));
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain('SLACK_BOT_TOKEN is not valid: must be a bot token, starting xoxb-. Example: SLACK_BOT_TOKEN=xoxb-');
    expect(message).not.toContain('xoxp-user-token');
    expect(message).toContain('LOG_LEVEL=verbose is not valid: must be one of fatal, error, warn, info, debug, trace, silent');
    expect(message).toContain('SLACK_API_URL=127.0.0.1 port 3999 is not valid: must be a URL');
  });
});

describe('secrets and logs', () => {
  const sm = mockClient(SecretsManagerClient);
  beforeEach(() => forgetSlackSecrets());
  afterEach(() => sm.reset());

  it('reads the Slack secret once per container', async () => {
    sm.on(GetSecretValueCommand).resolves({ SecretString: JSON.stringify({ signingSecret: 'sig-123', botToken: 'xoxb-123' }) });
    const client = new SecretsManagerClient({ region: REGION, credentials: CREDENTIALS });
    expect(await slackSecret('arn:secret', client)).toEqual({ signingSecret: 'sig-123', botToken: 'xoxb-123' });
    await slackSecret('arn:secret', client);
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(1);
    expect(sm.commandCalls(GetSecretValueCommand)[0]!.args[0].input).toEqual({ SecretId: 'arn:secret' });
  });

  it('names the bad fields of the secret, never its values, and does not cache a failure', async () => {
    sm.on(GetSecretValueCommand).resolvesOnce({ SecretString: JSON.stringify({ signingSecret: 'sig-123', botToken: 'not-a-bot-token' }) }).resolves({ SecretString: JSON.stringify({ signingSecret: 's', botToken: 'xoxb-1' }) });
    const client = new SecretsManagerClient({ region: REGION, credentials: CREDENTIALS });
    const error = await slackSecret('arn:secret', client).catch((e: Error) => e);
    expect((error as Error).message).toContain('has no valid botToken');
    expect((error as Error).message).not.toContain('not-a-bot-token');
    expect((error as Error).message).not.toContain('sig-123');
    expect((await slackSecret('arn:secret', client)).botToken).toBe('xoxb-1');
  });

  it('the JSON logger redacts tokens, secrets and authorization headers', () => {
    const lines: string[] = [];
    const log = createAwsLogger({ destination: { write: (l) => lines.push(l) } });
    log.info({ token: 'xoxb-1', botToken: 'xoxb-2', signingSecret: 's3cr3t', headers: { authorization: 'Bearer abc' }, slack: { token: 'xoxb-3' }, runId: '261125-k3f9' }, 'hello');
    const out = lines.join('');
    expect(out).not.toMatch(/xoxb-|s3cr3t|Bearer abc/);
    const entry = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(entry).toMatchObject({ level: 'info', msg: 'hello', runId: '261125-k3f9', token: '[redacted]', app: 'starfish-chatops' });
  });
});
