/* eslint-disable @typescript-eslint/no-explicit-any -- a synthesized CloudFormation template is untyped JSON, walked by key */
/**
 * Synthesizes the stack for the infra tests: cdk.json context (feature flags, example settings)
 * plus overrides, Lambda bundling skipped (`aws:cdk:bundling-stacks: []`; `npm run synth`
 * bundles for real), Docker image assets staged (never built). Call once per test file.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { App, type CfnResource, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
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

export function requireLambdaEntries(): void {
  const missing = Object.values(LAMBDA_ENTRIES).filter((e) => !existsSync(path.join(REPO_ROOT, e)));
  if (missing.length) {
    throw new Error(
      `The infra tests synthesize the real Lambda handlers, and ${missing.join(', ')} ${missing.length > 1 ? 'do' : 'does'} not exist yet. ` +
        'They are written in src/lambda/ (slack.ts: Bolt AwsLambdaReceiver; events.ts: run events, Batch events from SQS, the reconciler); pull them, then run the tests again.',
    );
  }
}

export function synth(overrides: Record<string, unknown> = {}): Synthesized {
  requireLambdaEntries();
  const context = { ...cdkJsonContext(), ...overrides };
  const settings = readSettings(starfishContext(context));
  const outdir = mkdtempSync(path.join(os.tmpdir(), 'starfish-cdk-'));
  const app = new App({ outdir, context: { ...context, 'aws:cdk:bundling-stacks': [] } });
  const stack = new StarfishChatopsStack(app, 'StarfishTest', { settings });
  // writeSuppressionsToCloudFormation: acknowledgements appear as cdk_nag metadata in the template.
  const packs = nagPlugins(app, { verbose: true, writeSuppressionsToCloudFormation: true });
  const nag = packs.map((p) => p.validateScope(stack));
  const template = Template.fromStack(stack);
  return { app, stack, settings, template, outdir, nag };
}

export type Resources = Record<string, { Type: string; Properties?: Record<string, any>; Metadata?: Record<string, any> }>;

export const resourcesOf = (t: Template, type?: string): Resources => {
  const all = t.toJSON().Resources as Resources;
  return type ? Object.fromEntries(Object.entries(all).filter(([, r]) => r.Type === type)) : all;
};

export const logicalId = (stack: Stack, construct: { node: { defaultChild?: unknown } }) =>
  stack.getLogicalId(construct.node.defaultChild as CfnResource);
