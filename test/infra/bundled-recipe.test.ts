/**
 * Issue 15: with the documented deploy and no recipe uploaded, `/starfish run s3://…/experiment.json`
 * runs the bundled recipe (infra/recipe.ts). What the template must hold for that: the recipe
 * written to its key at every deploy, the Lambdas' policy naming it unless the lab names its own,
 * and every permission on the run's path (the launcher reads it and snapshots it, the jobs read
 * the snapshot); and what it must refuse: anyone but the deploy replacing it.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BatchClient } from '@aws-sdk/client-batch';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { S3Client } from '@aws-sdk/client-s3';
import { BUNDLED_RECIPE, MAX_BUNDLED_RECIPE_BYTES, MAX_CUSTOM_RESOURCE_EVENT_BYTES, readBundledRecipe, updateEventBytes } from '../../infra/recipe.js';
import { readSettings } from '../../infra/settings.js';
import { OBJECT_WRITE_ACTIONS, REPO_ROOT } from '../../infra/stack.js';
import { createAwsSystem } from '../../src/aws/system.js';
import { silentLogger } from '../../src/core.js';
import { listManifests } from '../../src/run/manifest-store.js';
import { runKeys } from '../../src/run/layout.js';
import { approvalReasons, parsePolicy } from '../../src/run/policy.js';
import { makePlan } from '../../src/run/plan.js';
import { CREDENTIALS, ManualClock, REGION, RecordingChat, fakeBatch, fakeS3, putExperiment, testEnv, type FakeBatch, type FakeS3 } from '../aws/helpers.js';
import { allowed, policiesOf, render, roleId, type Policies, type Statement } from './policy.js';
import { logicalId, resourcesOf, synth, type Synthesized } from './synth.js';

const RESULTS = 'lab-starfish-results';
const BUNDLED_URL = `s3://${RESULTS}/${BUNDLED_RECIPE.key}`;
const recipeText = readFileSync(path.join(REPO_ROOT, BUNDLED_RECIPE.source), 'utf8');

/** cdk.json's example policy: no defaultRecipe, no approvedRecipePrefixes. */
let plain: Synthesized;
/** A lab with its own default recipe and a list of approved recipe locations. */
let own: Synthesized;

beforeAll(() => {
  // A fixed bucket name makes the Lambdas' environment plain text, as the deployed Lambdas read it.
  plain = synth({ 'starfish:resultsBucketName': RESULTS });
  own = synth({
    'starfish:resultsBucketName': RESULTS,
    'starfish:policy': {
      approval: { approvers: ['U012ABCDEF'], approvedRecipePrefixes: ['s3://lab-data/recipes/'] },
      defaultRecipe: 's3://lab-data/recipes/iss.py',
    },
  });
});

/** A template value as CloudFormation resolves it: the results bucket's Ref is its (fixed) name. */
function deployed(s: Synthesized, value: unknown): string {
  const bucket = logicalId(s.stack, s.stack.resultsBucket);
  expect((resourcesOf(s.template, 'AWS::S3::Bucket')[bucket]!.Properties as unknown as { BucketName: string }).BucketName).toBe(RESULTS);
  return render(value).replaceAll(`<${bucket}>`, RESULTS);
}

interface SdkCall {
  service: string;
  action: string;
  parameters: Record<string, string>;
  physicalResourceId?: { id: string };
}

/** The S3 calls CloudFormation makes through the custom resource, as the template says. */
function recipeCalls(s: Synthesized): Record<'Create' | 'Update' | 'Delete', SdkCall> {
  const resource = resourcesOf(s.template)['BundledRecipe'];
  expect(resource?.Type, 'the custom resource keeps its logical id BundledRecipe').toBe('Custom::AWS');
  const props = resource!.Properties as Record<'Create' | 'Update' | 'Delete', unknown>;
  const call = (phase: 'Create' | 'Update' | 'Delete') => JSON.parse(deployed(s, props[phase])) as SdkCall;
  return { Create: call('Create'), Update: call('Update'), Delete: call('Delete') };
}

const lambdaVariables = (s: Synthesized, fn: 'slackFunction' | 'eventsFunction') => resourcesOf(s.template, 'AWS::Lambda::Function')[logicalId(s.stack, s.stack[fn])]!.Properties!.Environment.Variables;

const deployedPolicy = (s: Synthesized, fn: 'slackFunction' | 'eventsFunction' = 'eventsFunction') => parsePolicy(JSON.parse(deployed(s, lambdaVariables(s, fn).STARFISH_POLICY_JSON)), 'the template');

describe('the bundled recipe in the results bucket', () => {
  it('is the repository file, byte for byte, written to recipes/bundled/iss_starfish.py at every deploy', () => {
    const { Create, Update } = recipeCalls(plain);
    for (const call of [Create, Update]) {
      expect(call).toMatchObject({ service: 'S3', action: 'putObject', physicalResourceId: { id: BUNDLED_URL } });
      expect(call.parameters).toMatchObject({ Bucket: RESULTS, Key: BUNDLED_RECIPE.key, ContentType: 'text/x-python; charset=utf-8' });
      expect(Buffer.from(call.parameters.Body!, 'utf8').equals(readFileSync(path.join(REPO_ROOT, BUNDLED_RECIPE.source)))).toBe(true);
    }
    const outputs = plain.template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(deployed(plain, outputs.BundledRecipeUrl?.Value)).toBe(BUNDLED_URL);
  });

  it('is deleted with the stack (the bucket is kept), so no default outlives the policy naming it', () => {
    const { Delete } = recipeCalls(plain);
    expect(Delete).toMatchObject({ service: 'S3', action: 'deleteObject', parameters: { Bucket: RESULTS, Key: BUNDLED_RECIPE.key } });
    // A bucket someone emptied and deleted by hand took the object with it: `cdk destroy` goes on
    // (the handler matches the SDK error's name); any other error, AccessDenied first, still fails it.
    const ignored = new RegExp((Delete as SdkCall & { ignoreErrorCodesMatching?: string }).ignoreErrorCodesMatching ?? '(?!)');
    expect(['NoSuchBucket', 'AccessDenied', 'NoSuchBucketPolicy', 'InternalError'].filter((name) => ignored.test(name))).toEqual(['NoSuchBucket']);
  });

  it('fits the event CloudFormation sends the custom resource when the text changes (Lambda: 256 KB asynchronous)', () => {
    // The update event as CloudFormation builds it: the new and the old properties, each with the
    // Create, Update and Delete calls, plus a presigned response URL and ids.
    const props = resourcesOf(plain.template)['BundledRecipe']!.Properties as Record<string, unknown>;
    const resolved = Object.fromEntries(Object.entries(props).map(([k, v]) => [k, typeof v === 'string' || typeof v === 'boolean' ? v : deployed(plain, v)]));
    const event = JSON.stringify({
      RequestType: 'Update',
      ResponseURL: `https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/${'x'.repeat(1200)}`,
      StackId: `arn:aws:cloudformation:us-east-1:123456789012:stack/StarfishChatops/${'0'.repeat(36)}`,
      RequestId: '0'.repeat(36),
      LogicalResourceId: 'BundledRecipe',
      PhysicalResourceId: BUNDLED_URL,
      ResourceType: 'Custom::AWS',
      ResourceProperties: resolved,
      OldResourceProperties: resolved,
    });
    expect(Buffer.byteLength(event)).toBeLessThanOrEqual(updateEventBytes(recipeText));
    expect(updateEventBytes(recipeText)).toBeLessThanOrEqual(MAX_CUSTOM_RESOURCE_EVENT_BYTES);
  });

  it('is written before the Lambdas that name it start, and deleted only after they are gone', () => {
    for (const fn of ['slackFunction', 'eventsFunction'] as const) {
      const resource = resourcesOf(plain.template)[logicalId(plain.stack, plain.stack[fn])] as { DependsOn?: string[] };
      expect(resource.DependsOn, fn).toContain('BundledRecipe');
    }
  });

  it('needs neither Docker nor the internet: no s3-deployment AWS CLI layer, the runtime SDK at deploy', () => {
    const props = resourcesOf(plain.template)['BundledRecipe']!.Properties as Record<string, unknown>;
    expect(props.InstallLatestAwsSdk).toBe(false);
    expect(Object.values(resourcesOf(plain.template)).filter((r) => r.Type === 'AWS::Lambda::LayerVersion')).toEqual([]);
  });
});

describe('the Lambdas’ policy', () => {
  it('names the bundled recipe as the default when the lab’s policy names none (both Lambdas)', () => {
    for (const fn of ['slackFunction', 'eventsFunction'] as const) expect(deployedPolicy(plain, fn).defaultRecipe).toBe(BUNDLED_URL);
    // An empty approvedRecipePrefixes means any recipe is fine: it stays empty.
    expect(deployedPolicy(plain).approval.approvedRecipePrefixes).toEqual([]);
  });

  it('keeps a lab’s own defaultRecipe, and counts the bundled recipe among its approved recipes', () => {
    const policy = deployedPolicy(own);
    expect(policy.defaultRecipe).toBe('s3://lab-data/recipes/iss.py');
    expect(policy.approval.approvedRecipePrefixes).toEqual(['s3://lab-data/recipes/', BUNDLED_URL]);
    const plan = makePlan([0, 1, 2], { kind: 'all' });
    if (!plan.ok) throw new Error(plan.reason);
    expect(approvalReasons(policy, plan.value, 'spot', BUNDLED_URL)).toEqual([]);
    expect(approvalReasons(policy, plan.value, 'spot', 's3://lab-data/recipes/iss.py')).toEqual([]);
    // Only that one file: a neighbour of it still needs an approver.
    expect(approvalReasons(policy, plan.value, 'spot', `s3://${RESULTS}/recipes/bundled/iss_starfish.py.bak`)).toEqual([expect.stringMatching(/outside the approved recipes/)]);
  });

  it('counts the bundled recipe in the policy’s 2,048-character limit when the stack adds it', () => {
    const policyOf = (approvers: number, defaultRecipe?: string) => ({
      approval: { approvers: Array.from({ length: approvers }, (_, i) => `U${String(i).padStart(10, '0')}`) },
      ...(defaultRecipe ? { defaultRecipe } : {}),
    });
    // The most approvers that fit as the lab wrote it (a short defaultRecipe of its own)…
    let n = 1;
    while (JSON.stringify(parsePolicy(policyOf(n + 1, 's3://b/r.py'), 'test')).length <= 2048) n += 1;
    expect(() => readSettings({ 'starfish:allowedBuckets': 'lab-data', 'starfish:policy': policyOf(n, 's3://b/r.py') })).not.toThrow();
    // …do not fit once the bundled recipe's URL (with a bucket name of up to 63 characters) is added.
    expect(() => readSettings({ 'starfish:allowedBuckets': 'lab-data', 'starfish:policy': policyOf(n) })).toThrow(/starfish:policy.*with the bundled default recipe the stack adds/s);
  });
});

describe('permissions on the run’s path', () => {
  let p: Policies;
  let bucket: string;
  const RUN = '261125-k3f9';
  beforeAll(() => {
    bucket = logicalId(plain.stack, plain.stack.resultsBucket);
    p = policiesOf(plain.template, bucket);
  });
  const object = (key: string) => `<${bucket}.Arn>/${key}`;
  const role = (prefix: string) => {
    const id = roleId(p, prefix);
    return { statements: p.roles[id]!, arn: `<${id}.Arn>` };
  };
  const can = (who: { statements: Statement[]; arn: string }, action: string, key: string) => allowed(p, who.statements, { action, resource: object(key), context: { 'aws:PrincipalArn': who.arn } });
  const S3_EVERYTHING: Statement = { Effect: 'Allow', Action: ['s3:*'], Resource: ['*'] };

  it('the launcher (events Lambda) reads the bundled recipe and writes its snapshot; the jobs read the snapshot', () => {
    const events = role('EventsFunctionServiceRole');
    expect(can(events, 's3:GetObject', BUNDLED_RECIPE.key)).toBe(true);
    expect(can(events, 's3:PutObject', runKeys(RUN).recipeSnapshot)).toBe(true);
    expect(can(role('JobRole'), 's3:GetObject', runKeys(RUN).recipeSnapshot)).toBe(true);
  });

  it('only the deploy writes it: not the jobs (even granted s3:*), not the Lambdas, not an account role holding s3:*', () => {
    const job = role('JobRole');
    const everyone: Array<[string, { statements: Statement[]; arn: string }]> = [
      ['the job role', job],
      ['the job role granted s3:* on everything', { ...job, statements: [...job.statements, S3_EVERYTHING] }],
      ['the events Lambda', role('EventsFunctionServiceRole')],
      ['the Slack Lambda', role('SlackFunctionServiceRole')],
      ['a CI or admin role with s3:*', { statements: [S3_EVERYTHING], arn: 'arn:aws:iam::123456789012:role/ci-admin' }],
    ];
    for (const [who, principal] of everyone) {
      for (const action of OBJECT_WRITE_ACTIONS) expect(can(principal, action, BUNDLED_RECIPE.key), `${who} ${action}`).toBe(false);
      expect(can(principal, 's3:PutObject', 'recipes/bundled/other.py'), who).toBe(false);
    }
    // The job role's own Deny covers all of recipes/, where a lab may keep its recipes too.
    expect(can({ ...job, statements: [...job.statements, S3_EVERYTHING] }, 's3:PutObject', 'recipes/lab/iss.py')).toBe(false);
    // The custom resource's role writes and deletes that one key, and nothing else (positive control).
    const writer = role('AWS679f53fac002430cb0da5b7982bd2287ServiceRole');
    expect(can(writer, 's3:PutObject', BUNDLED_RECIPE.key)).toBe(true);
    expect(can(writer, 's3:DeleteObject', BUNDLED_RECIPE.key)).toBe(true);
    for (const key of ['recipes/bundled/other.py', runKeys(RUN).manifest, runKeys(RUN).summaryJson]) expect(can(writer, 's3:PutObject', key), key).toBe(false);
  });
});

describe('the headline command on the deployed configuration', () => {
  let s3: FakeS3;
  let batch: FakeBatch;
  beforeEach(() => {
    s3 = fakeS3();
    batch = fakeBatch();
  });
  afterEach(() => {
    s3.mock.restore();
    batch.mock.restore();
  });

  it('runs /starfish run <experiment> with no recipe=: the launcher snapshots the bundled recipe and the jobs run that copy', async () => {
    // What the deploy leaves in S3 (the custom resource's PutObject) and in the events Lambda's environment.
    const put = recipeCalls(plain).Create.parameters;
    s3.put(`s3://${put.Bucket}/${put.Key}`, put.Body!);
    const vars = lambdaVariables(plain, 'eventsFunction');
    const env = Object.fromEntries(
      ['STARFISH_BUCKET', 'STARFISH_ALLOWED_BUCKETS', 'STARFISH_READONLY_BUCKETS', 'STARFISH_POLICY_JSON'].map((name) => [name, deployed(plain, vars[name])]),
    );
    expect(env.STARFISH_BUCKET).toBe(RESULTS);
    const { experiment } = putExperiment(s3, 2);
    const chat = new RecordingChat();
    const system = createAwsSystem(chat, testEnv(env), {
      clients: {
        s3: new S3Client({ region: REGION, credentials: CREDENTIALS }),
        batch: new BatchClient({ region: REGION, credentials: CREDENTIALS }),
        eventBridge: new EventBridgeClient({ region: REGION, credentials: CREDENTIALS }),
      },
      log: silentLogger,
      clock: new ManualClock(),
    });
    await system.launcher.handle({ type: 'RunRequested', userId: 'U0RUNNER01', channel: 'C0STARFISH', request: { experiment, fovs: { kind: 'all' }, dryRun: false } });

    const [m] = await listManifests(system.store);
    expect(chat.calls.map((c) => c.text).join('\n')).not.toMatch(/No recipe given/);
    expect(m?.status).toBe('running');
    expect(m!.request.recipe).toBe(BUNDLED_URL);
    const snapshot = `s3://${RESULTS}/${runKeys(m!.runId).recipeSnapshot}`;
    expect(s3.text(snapshot)).toBe(recipeText);
    const fovJob = batch.submitted[0]!;
    expect(fovJob.containerOverrides?.environment).toContainEqual({ name: 'STARFISH_RECIPE', value: snapshot });
  });
});

describe('reading the bundled recipe at synth', () => {
  const roots: string[] = [];
  afterAll(() => roots.forEach((root) => rmSync(root, { recursive: true, force: true })));
  const repoWith = (content: Buffer | string) => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'starfish-recipe-'));
    roots.push(root);
    mkdirSync(path.join(root, path.dirname(BUNDLED_RECIPE.source)), { recursive: true });
    writeFileSync(path.join(root, BUNDLED_RECIPE.source), content);
    return root;
  };

  it('refuses a recipe too large for the template, one that is not UTF-8, and one without process_fov, saying what to do', () => {
    const big = `def process_fov(fov_index, experiment_url):\n    return []\n${'#'.repeat(MAX_BUNDLED_RECIPE_BYTES)}\n`;
    expect(() => readBundledRecipe(repoWith(big))).toThrow(/is 65,\d{3} bytes; at most 65,536 fit in the template\. .*"defaultRecipe": "s3:\/\/lab-data\/recipes\/iss\.py"/);
    expect(() => readBundledRecipe(repoWith(Buffer.from([0x64, 0x65, 0x66, 0xff, 0x0a])))).toThrow(/is not UTF-8 text; save it as UTF-8/);
    expect(() => readBundledRecipe(repoWith('def run(fov):\n    return []\n'))).toThrow(/defines no process_fov function/);
    // Under the byte limit, but escaped twice in each of the update event's four copies: over Lambda's.
    const quoted = `def process_fov(fov_index, experiment_url):\n    return []\n${'PATTERN = "\\\\d+\\"\\n"\n'.repeat(1800)}`;
    expect(Buffer.byteLength(quoted)).toBeLessThan(MAX_BUNDLED_RECIPE_BYTES);
    expect(() => readBundledRecipe(repoWith(quoted))).toThrow(/would make CloudFormation's update event for it \d{3},\d{3} bytes .*Lambda takes at most 262,144\. .*"defaultRecipe"/);
    expect(readBundledRecipe(REPO_ROOT)).toBe(recipeText);
  });
});
