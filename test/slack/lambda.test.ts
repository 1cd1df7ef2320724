/**
 * The Slack Lambda handler: Bolt's AwsLambdaReceiver with signed API Gateway events, its
 * credentials (environment or Secrets Manager, read once per container), the real AWS backend
 * with mocked SDK clients, and the esbuild bundle itself in a fresh Node process.
 */
import { passed } from '../../src/result.js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EXAMPLE_AWS_ENV } from '../aws/helpers.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { mockClient } from 'aws-sdk-client-mock';
import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { s3Error } from '../aws/helpers.js';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import type { Bus } from '../../src/ports.js';
import type { RunEvent } from '../../src/run/run-events.js';
import { DirectoryStore } from '../../src/local/dir-store.js';
import { parsePolicy } from '../../src/run/policy.js';
import { ConfigError } from '../../src/config.js';
import { createHandler, type SlackLambdaHandler } from '../../src/lambda/slack.js';
import { forgetSlackSecrets } from '../../src/aws/secrets.js';
import { resetClients } from '../../src/aws/clients.js';
import { ACTIONS } from '../../src/messages/blocks.js';
import { removeDir, tempDir } from '../helpers/local.js';
import { SlackStandIn } from './stand-in.js';
import { BOT_TOKEN, SIGNING_SECRET, clickBody, eventBody, functionUrlEvent, nowSeconds, signedHeaders, signedJsonHeaders, slashBody } from './signing.js';
import { CHANNEL, ALICE, APPROVER, textOf, waitFor } from './harness.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

/** The JSON body of an answer (Bolt always sets one). */
const answerOf = (res: APIGatewayProxyStructuredResultV2) => JSON.parse(res.body ?? '') as Record<string, unknown>;

class RecordingBus implements Bus {
  readonly events: RunEvent[] = [];
  async publish(event: RunEvent): Promise<void> {
    this.events.push(event);
  }
}

let standIn: SlackStandIn;
beforeAll(async () => {
  standIn = await SlackStandIn.start();
});
afterAll(async () => {
  await standIn.close();
});
beforeEach(() => standIn.reset());

describe('the Slack Lambda with SLACK_SIGNING_SECRET / SLACK_BOT_TOKEN', () => {
  let home: string;
  let bus: RecordingBus;
  let handler: SlackLambdaHandler;
  let backends = 0;

  beforeAll(async () => {
    home = await tempDir('slack-lambda');
    bus = new RecordingBus();
    const env = { SLACK_SIGNING_SECRET: SIGNING_SECRET, SLACK_BOT_TOKEN: BOT_TOKEN, SLACK_API_URL: standIn.apiUrl, LOG_LEVEL: 'error' };
    handler = createHandler({
      env,
      createBackend: () => {
        backends++;
        const policy = parsePolicy({ access: { channels: [CHANNEL] }, queues: { default: 'spot', allowed: ['spot'] } }, 'test');
        return { dispatchDeps: { store: new DirectoryStore(home), bus, reader: { checkReadable: () => passed }, policy, allowPaths: false } };
      },
    });
  });
  afterAll(async () => {
    await removeDir(home);
  });

  const slash = (text: string, channel = CHANNEL) => slashBody({ text, userId: ALICE, channel, responseUrl: standIn.responseUrl('lambda') });

  it('answers a signed /starfish help with 200 and the ephemeral help message', async () => {
    const body = slash('help');
    const res = await handler(functionUrlEvent(body, signedHeaders(body)));
    expect(res.statusCode).toBe(200);
    const json = answerOf(res);
    expect(json.response_type).toBe('ephemeral');
    expect(textOf(json)).toContain('/starfish run');
  });

  it('accepts a base64-encoded body (Lambda function URLs encode form posts)', async () => {
    const body = slash('help');
    const res = await handler(functionUrlEvent(body, signedHeaders(body), true));
    expect(res.statusCode).toBe(200);
  });

  it('returns 401 for a forged signature, a stale timestamp and a tampered body, publishing nothing', async () => {
    const body = slash(`run s3://lab-data/iss/experiment.json`);
    expect((await handler(functionUrlEvent(body, signedHeaders(body, { secret: 'forged' })))).statusCode).toBe(401);
    expect((await handler(functionUrlEvent(body, signedHeaders(body, { timestamp: nowSeconds() - 301 - 60 })))).statusCode).toBe(401);
    expect((await handler(functionUrlEvent(body.replace('lab-data', 'lab-dat4'), signedHeaders(body)))).statusCode).toBe(401);
    expect(bus.events).toHaveLength(0);
  });

  it('publishes RunRequested for /starfish run and acknowledges with the notice', async () => {
    const body = slash('run s3://lab-data/iss/experiment.json fovs=0-3');
    const res = await handler(functionUrlEvent(body, signedHeaders(body)));
    expect(res.statusCode).toBe(200);
    expect(answerOf(res).text).toContain('Reading s3://lab-data/iss/experiment.json to plan the run');
    expect(bus.events.at(-1)).toMatchObject({ type: 'RunRequested', userId: ALICE, channel: CHANNEL, request: { experiment: 's3://lab-data/iss/experiment.json' } });
  });

  it('refuses a command from a channel outside the policy in the ack body', async () => {
    const before = bus.events.length;
    const body = slash('run s3://lab-data/iss/experiment.json', 'C0ELSEWHERE');
    const res = await handler(functionUrlEvent(body, signedHeaders(body)));
    expect(answerOf(res).text).toContain('does not take commands in this channel');
    expect(bus.events.length).toBe(before);
  });

  it('publishes RunApproved for an Approve click with the clicker and the channel', async () => {
    const body = clickBody({ actionId: ACTIONS.approve, value: '261125-k3f9', userId: APPROVER, channel: CHANNEL, responseUrl: standIn.responseUrl('click') });
    const res = await handler(functionUrlEvent(body, signedHeaders(body)));
    expect(res.statusCode).toBe(200);
    expect(bus.events.at(-1)).toEqual({ type: 'RunApproved', userId: APPROVER, channel: CHANNEL, runId: '261125-k3f9' });
  });

  it('answers /starfish list through response_url (the store is read after the ack)', async () => {
    const body = slash('list');
    const res = await handler(functionUrlEvent(body, signedHeaders(body)));
    expect(res.statusCode).toBe(200);
    expect(res.body).toBe('');
    const answer = await waitFor('the list', () => standIn.ok('response_url')[0]);
    expect(answer.body.response_type).toBe('ephemeral');
    expect(textOf(answer.body)).toContain('No runs yet');
  });

  it('built its backend once for all these invocations', () => {
    expect(backends).toBe(1);
  });
});

describe('credentials from Secrets Manager (STARFISH_SLACK_SECRET_ARN)', () => {
  const secrets = mockClient(SecretsManagerClient);
  const arn = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:starfish/slack-AbCdEf';
  const fromSecret = 'signing-secret-from-secrets-manager';

  beforeEach(() => {
    secrets.reset();
    resetClients();
    forgetSlackSecrets();
  });
  afterAll(() => secrets.restore());

  function handlerWithSecret() {
    const bus = new RecordingBus();
    const policy = parsePolicy({}, 'test');
    const handler = createHandler({
      env: { STARFISH_SLACK_SECRET_ARN: arn, AWS_REGION: 'us-east-1', SLACK_SIGNING_SECRET: 'ignored-when-the-arn-is-set', LOG_LEVEL: 'error' },
      createBackend: () => ({ dispatchDeps: { store: new DirectoryStore('/nonexistent'), bus, reader: { checkReadable: () => passed }, policy, allowPaths: false } }),
    });
    return { handler, bus };
  }

  it('verifies requests with the secret signing secret, reading the secret once per container', async () => {
    secrets.on(GetSecretValueCommand, { SecretId: arn }).resolves({ SecretString: JSON.stringify({ signingSecret: fromSecret, botToken: 'xoxb-from-secret' }) });
    const { handler } = handlerWithSecret();
    const body = slashBody({ text: 'help', userId: ALICE, channel: CHANNEL, responseUrl: standIn.responseUrl('s') });
    expect((await handler(functionUrlEvent(body, signedHeaders(body, { secret: fromSecret })))).statusCode).toBe(200);
    expect((await handler(functionUrlEvent(body, signedHeaders(body, { secret: fromSecret })))).statusCode).toBe(200);
    expect((await handler(functionUrlEvent(body, signedHeaders(body, { secret: 'ignored-when-the-arn-is-set' })))).statusCode).toBe(401);
    expect(secrets.commandCalls(GetSecretValueCommand)).toHaveLength(1);
  });

  it('a failed secret read fails that invocation, names no value, and is retried on the next', async () => {
    secrets.on(GetSecretValueCommand).rejectsOnce(new Error('AccessDeniedException: not authorized')).resolves({ SecretString: JSON.stringify({ signingSecret: fromSecret, botToken: 'xoxb-from-secret' }) });
    const { handler } = handlerWithSecret();
    const body = slashBody({ text: 'help', userId: ALICE, channel: CHANNEL, responseUrl: standIn.responseUrl('s') });
    await expect(handler(functionUrlEvent(body, signedHeaders(body, { secret: fromSecret })))).rejects.toThrow(/AccessDenied/);
    expect((await handler(functionUrlEvent(body, signedHeaders(body, { secret: fromSecret })))).statusCode).toBe(200);
    expect(secrets.commandCalls(GetSecretValueCommand)).toHaveLength(2);
  });

  it('without an ARN or SLACK_* variables, says which variables to set', async () => {
    const handler = createHandler({ env: {} });
    const body = slashBody({ text: 'help', userId: ALICE, channel: CHANNEL, responseUrl: standIn.responseUrl('s') });
    await expect(handler(functionUrlEvent(body, signedHeaders(body)))).rejects.toThrow(/STARFISH_SLACK_SECRET_ARN=arn:aws:secretsmanager:.*SLACK_SIGNING_SECRET/);
  });
});

describe('a backend whose configuration is wrong (the real config reader on a bad environment)', () => {
  const handler = () =>
    createHandler({
      env: { ...EXAMPLE_AWS_ENV, STARFISH_POLICY_JSON: '{"approval": {"fovThreshold": "many"}}', SLACK_SIGNING_SECRET: SIGNING_SECRET, SLACK_BOT_TOKEN: BOT_TOKEN, LOG_LEVEL: 'error' },
    });

  it('tells the person who typed a signed command why nothing works, instead of Slack\'s "dispatch_failed"', async () => {
    const body = slashBody({ text: 'help', userId: ALICE, channel: CHANNEL, responseUrl: standIn.responseUrl('m') });
    const res = await handler()(functionUrlEvent(body, signedHeaders(body)));
    expect(res.statusCode).toBe(200);
    const answer = answerOf(res);
    expect(answer.response_type).toBe('ephemeral');
    expect(String(answer.text)).toMatch(/^:warning: starfish is not set up correctly, so it took nothing: .*approval\.fovThreshold: Invalid input: expected number.*A lab admin can fix it/s);
  });

  it('answers nothing of it to an unsigned request, and acknowledges a signed click without a word', async () => {
    const body = slashBody({ text: 'help', userId: ALICE, channel: CHANNEL, responseUrl: standIn.responseUrl('m') });
    expect((await handler()(functionUrlEvent(body, { 'content-type': 'application/x-www-form-urlencoded' }))).statusCode).toBe(401);
    const forged = await handler()(functionUrlEvent(body, signedHeaders(body, { secret: 'not-the-signing-secret' })));
    expect(forged.statusCode).toBe(401);
    expect(forged.body ?? '').not.toContain('fovThreshold');
    const click = clickBody({ actionId: ACTIONS.approve, value: '261125-k3f9', userId: APPROVER, channel: CHANNEL, responseUrl: standIn.responseUrl('m') });
    const clicked = await handler()(functionUrlEvent(click, signedHeaders(click)));
    expect(clicked).toMatchObject({ statusCode: 200, body: '' });
  });

  it("answers the events URL handshake, so that setting up the Slack app is not stopped; an event is acknowledged", async () => {
    const challenge = '3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P';
    const handshake = JSON.stringify({ token: 'deprecated-verification-token', challenge, type: 'url_verification' });
    const res = await handler()(functionUrlEvent(handshake, signedJsonHeaders(handshake)));
    expect(res).toMatchObject({ statusCode: 200 });
    expect(JSON.parse(String(res.body))).toEqual({ challenge });
    const opened = eventBody({ type: 'app_home_opened', user: ALICE, tab: 'home' });
    expect(await handler()(functionUrlEvent(opened, signedJsonHeaders(opened)))).toMatchObject({ statusCode: 200, body: '' });
    expect((await handler()(functionUrlEvent(handshake, { ...signedJsonHeaders(handshake), 'x-slack-signature': `v0=${'0'.repeat(64)}` }))).statusCode).toBe(401);
  });

  it('a malformed SLACK_TEAM_ID is told the same way, not thrown as a failed invocation', async () => {
    const wrongTeam = createHandler({ env: { ...EXAMPLE_AWS_ENV, SLACK_TEAM_ID: 'lab', SLACK_SIGNING_SECRET: SIGNING_SECRET, SLACK_BOT_TOKEN: BOT_TOKEN, LOG_LEVEL: 'error' } });
    const body = slashBody({ text: 'help', userId: ALICE, channel: CHANNEL, responseUrl: standIn.responseUrl('m') });
    const res = await wrongTeam(functionUrlEvent(body, signedHeaders(body)));
    expect(res.statusCode).toBe(200);
    expect(String(answerOf(res).text)).toMatch(/^:warning: starfish is not set up correctly, so it took nothing: the Slack team id must look like T0123ABCD \(got "lab"\).*SLACK_TEAM_ID=T0123ABCD/s);
    const forged = await wrongTeam(functionUrlEvent(body, signedHeaders(body, { secret: 'not-the-signing-secret' })));
    expect(forged).toMatchObject({ statusCode: 401, body: '' });
  });

  it('reads the configuration once per container: each later request is answered without building the backend again', async () => {
    let builds = 0;
    const once = createHandler({
      env: { SLACK_SIGNING_SECRET: SIGNING_SECRET, SLACK_BOT_TOKEN: BOT_TOKEN, LOG_LEVEL: 'error' },
      createBackend: () => {
        builds++;
        throw new ConfigError('STARFISH_POLICY_JSON is not valid: approval.fovThreshold: expected number');
      },
    });
    for (let i = 0; i < 3; i++) {
      const body = slashBody({ text: 'help', userId: ALICE, channel: CHANNEL, responseUrl: standIn.responseUrl('m') });
      const res = await once(functionUrlEvent(body, signedHeaders(body)));
      expect(String(answerOf(res).text)).toContain('approval.fovThreshold');
    }
    expect(builds).toBe(1);
  });
});

describe('the real AWS backend (createAwsSystem) behind the handler, SDK clients mocked', () => {
  const s3 = mockClient(S3Client);
  const events = mockClient(EventBridgeClient);
  const awsEnv = {
    SLACK_SIGNING_SECRET: SIGNING_SECRET,
    SLACK_BOT_TOKEN: BOT_TOKEN,
    LOG_LEVEL: 'error',
    STARFISH_BUCKET: 'lab-starfish-results',
    STARFISH_ALLOWED_BUCKETS: 'lab-data',
    STARFISH_EVENT_BUS: 'starfish-chatops',
    STARFISH_JOB_QUEUES: JSON.stringify({ spot: 'arn:aws:batch:us-east-1:123456789012:job-queue/starfish-spot' }),
    STARFISH_FOV_JOB_DEFINITION: 'starfish-process-fov',
    STARFISH_MERGE_JOB_DEFINITION: 'starfish-merge-results',
    STARFISH_POLICY_JSON: JSON.stringify({ access: { channels: [CHANNEL] }, queues: { default: 'spot', allowed: ['spot'] } }),
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'not-a-real-key',
  };

  /** The replay claims (requests/slack/…), written with If-None-Match: * as S3 honours it. */
  const claims = new Set<string>();
  beforeEach(() => {
    s3.reset();
    events.reset();
    resetClients();
    claims.clear();
    s3.on(PutObjectCommand).callsFake(async (input: { Key: string; IfNoneMatch?: string }) => {
      if (input.IfNoneMatch === '*' && claims.has(input.Key)) throw s3Error('PreconditionFailed', 412, 'At least one of the pre-conditions you specified did not hold');
      claims.add(input.Key);
      return { ETag: '"e"' };
    });
  });
  afterAll(() => {
    s3.restore();
    events.restore();
  });

  it('publishes /starfish run to EventBridge and reads S3 for /starfish list', async () => {
    events.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'e-1' }] });
    s3.on(ListObjectsV2Command).resolves({ Contents: [], IsTruncated: false });
    const handler = createHandler({ env: { ...awsEnv, SLACK_API_URL: standIn.apiUrl } });

    const run = slashBody({ text: 'run s3://lab-data/iss/experiment.json', userId: ALICE, channel: CHANNEL, responseUrl: standIn.responseUrl('aws') });
    // Signed once: a replay is the same bytes, so it must not be re-signed with a later timestamp.
    const runHeaders = signedHeaders(run);
    const res = await handler(functionUrlEvent(run, runHeaders));
    expect(res.statusCode).toBe(200);
    expect(answerOf(res).text).toContain('Reading s3://lab-data/iss/experiment.json');
    const put = events.commandCalls(PutEventsCommand);
    expect(put).toHaveLength(1);
    // The request was claimed once, by its signature, in the results bucket, before it was published.
    const claim = s3.commandCalls(PutObjectCommand)[0]!.args[0].input;
    expect(claim).toMatchObject({ Bucket: 'lab-starfish-results', IfNoneMatch: '*' });
    expect(claim.Key).toMatch(/^requests\/slack\/[0-9a-f]{64}$/);
    // The same signed request again: answered once, published once.
    const replay = await handler(functionUrlEvent(run, runHeaders));
    expect(replay).toEqual({ statusCode: 200, body: '' });
    expect(events.commandCalls(PutEventsCommand)).toHaveLength(1);
    const entry = put[0]!.args[0].input.Entries![0]!;
    expect(entry).toMatchObject({ EventBusName: 'starfish-chatops', Source: 'starfish.chatops', DetailType: 'RunRequested' });
    expect(JSON.parse(entry.Detail!)).toMatchObject({ userId: ALICE, channel: CHANNEL });

    const outside = slashBody({ text: 'run s3://other-bucket/x/experiment.json', userId: ALICE, channel: CHANNEL, responseUrl: standIn.responseUrl('aws') });
    const refused = await handler(functionUrlEvent(outside, signedHeaders(outside)));
    expect(answerOf(refused).text).toMatch(/^:warning: /);
    expect(events.commandCalls(PutEventsCommand)).toHaveLength(1);

    const list = slashBody({ text: 'list', userId: ALICE, channel: CHANNEL, responseUrl: standIn.responseUrl('aws-list') });
    expect((await handler(functionUrlEvent(list, signedHeaders(list)))).statusCode).toBe(200);
    expect(s3.commandCalls(ListObjectsV2Command).length).toBeGreaterThanOrEqual(1);
    expect(textOf((await waitFor('the list', () => standIn.ok('response_url')[0])).body)).toContain('No runs yet');
  });

  it('a store that cannot take the claim: "try again", nothing published', async () => {
    s3.on(PutObjectCommand).rejects(s3Error('InternalError', 500, 'We encountered an internal error. Please try again.'));
    events.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'e-1' }] });
    const handler = createHandler({ env: { ...awsEnv, SLACK_API_URL: standIn.apiUrl } });
    const run = slashBody({ text: 'run s3://lab-data/iss/experiment.json', userId: ALICE, channel: CHANNEL, responseUrl: standIn.responseUrl('aws') });
    const res = await handler(functionUrlEvent(run, signedHeaders(run)));
    expect(res.statusCode).toBe(200);
    expect(answerOf(res)).toMatchObject({ response_type: 'ephemeral', text: expect.stringContaining('Nothing was started; try again') });
    expect(events.commandCalls(PutEventsCommand)).toHaveLength(0);
  });

  it('turns an EventBridge failure into an ephemeral "try again", not a Slack timeout', async () => {
    events.on(PutEventsCommand).rejects(new Error('ServiceUnavailable'));
    const handler = createHandler({ env: { ...awsEnv, SLACK_API_URL: standIn.apiUrl } });
    const run = slashBody({ text: 'run s3://lab-data/iss/experiment.json', userId: ALICE, channel: CHANNEL, responseUrl: standIn.responseUrl('aws') });
    const res = await handler(functionUrlEvent(run, signedHeaders(run)));
    expect(res.statusCode).toBe(200);
    expect(answerOf(res).text).toContain('could not take /starfish run right now');
  });
});

/**
 * S3 on loopback for the bundle's fresh process (AWS_ENDPOINT_URL_S3): it takes the replay claim,
 * so nothing leaves the machine. Records each request; honours If-None-Match: *.
 */
async function s3OnLoopback(): Promise<{ server: Server; endpoint: string; puts: Array<{ path: string; ifNoneMatch: string | undefined }> }> {
  const puts: Array<{ path: string; ifNoneMatch: string | undefined }> = [];
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const ifNoneMatch = req.headers['if-none-match'] as string | undefined;
      if (req.method !== 'PUT') return void res.writeHead(501).end();
      const seen = puts.some((p) => p.path === req.url);
      puts.push({ path: req.url ?? '', ifNoneMatch });
      if (seen && ifNoneMatch === '*') return void res.writeHead(412, { 'content-type': 'application/xml' }).end('<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>');
      res.writeHead(200, { etag: '"e"' }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, puts };
}

describe('the bundle (scripts/bundle-lambdas.mjs)', () => {
  let s3: Awaited<ReturnType<typeof s3OnLoopback>>;
  beforeAll(async () => {
    s3 = await s3OnLoopback();
  });
  afterAll(async () => {
    s3.server.closeAllConnections();
    await new Promise<void>((resolve) => s3.server.close(() => resolve()));
  });

  it('dist/lambda/slack/index.mjs answers a signed help request in a fresh Node process (prewarmed as on Lambda)', async () => {
    const { bundleLambdas } = (await import(path.join(ROOT, 'scripts/bundle-lambdas.mjs'))) as {
      bundleLambdas(o: { only?: string[]; outDir?: string; log?: (s: string) => void }): Promise<Record<string, { file: string; totalBytes: number }>>;
    };
    // Inside the repository, so that the external @aws-sdk/* resolve from node_modules as the runtime's would.
    const out = await bundleLambdas({ only: ['slack'], outDir: path.join(ROOT, 'dist/lambda-test'), log: () => undefined });
    expect(out.slack!.totalBytes).toBeLessThan(1024 * 1024);
    const body = slashBody({ text: 'help', userId: ALICE, channel: CHANNEL, responseUrl: 'https://hooks.slack.com/commands/x' });
    const event = functionUrlEvent(body, signedHeaders(body));
    const script = `const { handler } = await import(${JSON.stringify(path.join(ROOT, out.slack!.file))}); const res = await handler(${JSON.stringify(event)}, {}); process.stdout.write(JSON.stringify(res));`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
      // AWS_LAMBDA_FUNCTION_NAME: the module prewarms with a top-level await, as in Lambda's INIT phase.
      env: { PATH: process.env.PATH, SLACK_SIGNING_SECRET: SIGNING_SECRET, SLACK_BOT_TOKEN: BOT_TOKEN, AWS_LAMBDA_FUNCTION_NAME: 'starfish-slack', ...awsEnvForBundle(s3.endpoint) },
      timeout: 30_000,
    });
    const res = JSON.parse(stdout) as { statusCode: number; body: string };
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(res.body).text).toContain('/starfish run');
    expect(s3.puts).toEqual([{ path: expect.stringMatching(/^\/lab-starfish-results\/requests\/slack\/[0-9a-f]{64}(\?.*)?$/), ifNoneMatch: '*' }]);

    // zod's locales are cut to English in the bundle: its default messages must still read well.
    // (A wrong configuration is told to the person who typed the command: the answer's text.)
    const bad = `const { handler } = await import(${JSON.stringify(path.join(ROOT, out.slack!.file))}); const res = await handler(${JSON.stringify(event)}, {}); process.stdout.write(JSON.parse(res.body).text);`;
    const failed = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', bad], {
      env: { PATH: process.env.PATH, SLACK_SIGNING_SECRET: SIGNING_SECRET, SLACK_BOT_TOKEN: BOT_TOKEN, ...awsEnvForBundle(s3.endpoint), STARFISH_POLICY_JSON: '{"approval":{"fovThreshold":"many"}}' },
      timeout: 30_000,
    });
    expect(failed.stdout).toContain('approval.fovThreshold: Invalid input: expected number, received string');
  });
});

/** The AWS backend's variables, with S3 on loopback and fixed credentials: no metadata service, no network. */
function awsEnvForBundle(s3Endpoint: string): Record<string, string> {
  return { ...EXAMPLE_AWS_ENV, AWS_ENDPOINT_URL_S3: s3Endpoint, AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'not-a-real-key', AWS_EC2_METADATA_DISABLED: 'true' };
}
