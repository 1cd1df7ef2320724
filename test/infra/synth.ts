/**
 * Synthesizes the stack for the infra tests: cdk.json context (feature flags, example settings)
 * plus overrides, Lambda bundling skipped (`aws:cdk:bundling-stacks: []`; `npm run synth`
 * bundles for real), Docker image assets staged (never built). Call once per test file.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { App, type CfnResource, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { afterAll } from 'vitest';
import type { PolicyValidationPluginReport } from 'aws-cdk-lib';
import { cdkJsonContext, starfishContext } from '../../infra/context.js';
import { nagPlugins } from '../../infra/nag.js';
import { readSettings, type Settings } from '../../infra/settings.js';
import { LAMBDA_ENTRIES, REPO_ROOT, StarfishChatopsStack } from '../../infra/stack.js';

export interface Synthesized {
  app: App;
  stack: StarfishChatopsStack;
  settings: Settings;
  template: Template;
  outdir: string;
  nag: PolicyValidationPluginReport[];
}

function requireLambdaEntries(): void {
  const missing = Object.values(LAMBDA_ENTRIES).filter((e) => !existsSync(path.join(REPO_ROOT, e)));
  if (missing.length) {
    throw new Error(
      `The infra tests synthesize the real Lambda handlers, and ${missing.join(', ')} ${missing.length > 1 ? 'do' : 'does'} not exist yet. ` +
        'They are written in src/lambda/ (slack.ts: Bolt AwsLambdaReceiver; events.ts: run events, Batch events from SQS, the reconciler); pull them, then run the tests again.',
    );
  }
}

/** This test file's synth outputs (with the Lambda bundles the stack builds inside them), removed when it ends. */
const outdirs: string[] = [];
afterAll(() => {
  for (const dir of outdirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

export function synth(overrides: Record<string, unknown> = {}): Synthesized {
  requireLambdaEntries();
  const context = { ...cdkJsonContext(), ...overrides };
  const settings = readSettings(starfishContext(context));
  const outdir = mkdtempSync(path.join(os.tmpdir(), 'starfish-cdk-'));
  outdirs.push(outdir);
  const app = new App({ outdir, context: { ...context, 'aws:cdk:bundling-stacks': [] } });
  const stack = new StarfishChatopsStack(app, 'StarfishTest', { settings });
  // writeSuppressionsToCloudFormation: acknowledgements appear as cdk_nag metadata in the template.
  const packs = nagPlugins(app, { verbose: true, writeSuppressionsToCloudFormation: true });
  const nag = packs.map((p) => p.validateScope(stack));
  const template = Template.fromStack(stack);
  return { app, stack, settings, template, outdir, nag };
}

/** CloudFormation intrinsics as they appear in the synthesized template. */
type GetAtt = { 'Fn::GetAtt': [string, string] };
type Join = { 'Fn::Join': [string, unknown[]] };

/**
 * The properties the infra tests read, per resource type: what a test reads is spelled out and
 * type-checked, and the values stay the assertions' business.
 */
export interface CfnProperties {
  'AWS::S3::Bucket': {
    BucketEncryption: { ServerSideEncryptionConfiguration: Array<{ ServerSideEncryptionByDefault: { SSEAlgorithm: string } }> };
    PublicAccessBlockConfiguration: Record<string, boolean>;
    LoggingConfiguration: { DestinationBucketName?: unknown };
    VersioningConfiguration?: unknown;
    LifecycleConfiguration: { Rules: Array<{ ExpirationInDays?: number }> };
  };
  'AWS::SecretsManager::Secret': { SecretString?: string; GenerateSecretString: { GenerateStringKey: string; SecretStringTemplate: string } };
  'AWS::Lambda::Function': {
    Code: unknown;
    Runtime: string;
    Architectures: string[];
    Handler: string;
    Environment: { Variables: Record<string, unknown> & { STARFISH_POLICY_JSON: string | Join; STARFISH_JOB_QUEUES: Join; STARFISH_QUEUE_JOB_DEFINITIONS?: Join } };
    LoggingConfig: { LogGroup: { Ref: string } };
  };
  'AWS::Lambda::Url': Record<string, unknown>;
  'AWS::Batch::JobDefinition': {
    PlatformCapabilities?: string[];
    PropagateTags: boolean;
    Timeout: { AttemptDurationSeconds: number };
    ContainerProperties: {
      ResourceRequirements: Array<{ Type: string; Value: string }>;
      Image: { 'Fn::Sub': string };
      LogConfiguration: unknown;
      JobRoleArn: GetAtt;
      ExecutionRoleArn: GetAtt;
      NetworkConfiguration: unknown;
      Environment?: Array<{ Name: string; Value: unknown }>;
    };
  };
  'AWS::Batch::ComputeEnvironment': { ComputeResources: { Type: string; MaxvCpus: number } & Record<string, unknown> };
  'AWS::Batch::JobQueue': Record<string, unknown>;
  'AWS::Logs::LogGroup': { LogGroupName?: string; RetentionInDays: number };
  'AWS::SQS::Queue': { SqsManagedSseEnabled: boolean; RedrivePolicy?: unknown; VisibilityTimeout: number };
  'AWS::Events::Rule': { EventPattern?: { source?: string[] }; EventBusName?: unknown; Targets: unknown[] };
  'AWS::IAM::Policy': { PolicyDocument: { Statement: Array<{ Sid?: string; Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown }> }; Roles: Array<{ Ref: string }> };
  'AWS::IAM::Role': { ManagedPolicyArns?: unknown[] };
}

/** cdk-nag's acknowledgements, as written into a resource's metadata. */
interface NagMetadata {
  cdk_nag?: { rules_to_suppress?: Array<{ id: string; reason?: string }> };
}

export interface Resource<P = Record<string, unknown>> {
  Type: string;
  Properties?: P;
  Metadata?: NagMetadata;
}

export function resourcesOf<T extends keyof CfnProperties>(t: Template, type: T): Record<string, Resource<CfnProperties[T]>>;
export function resourcesOf(t: Template): Record<string, Resource>;
export function resourcesOf(t: Template, type?: string): Record<string, Resource<unknown>> {
  // The template is JSON CDK types as `any`; the overloads above say what each caller reads.
  const all = t.toJSON().Resources as Record<string, Resource<unknown>>;
  return type ? Object.fromEntries(Object.entries(all).filter(([, r]) => r.Type === type)) : all;
}

export const logicalId = (stack: Stack, construct: { node: { defaultChild?: unknown } }) =>
  stack.getLogicalId(construct.node.defaultChild as CfnResource);
