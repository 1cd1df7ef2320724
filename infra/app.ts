/**
 * The CDK app: `npx cdk deploy` (cdk.json runs this file with tsx) or `npm run synth` (this file
 * alone, offline: no Docker, no AWS credentials; the stack is environment-agnostic and does no
 * lookups). Settings come from cdk.json context and `-c starfish:<name>=<value>`
 * (infra/settings.ts: the `starfish:` rows of the configuration table in src/config.ts);
 * `-c stackName=…` deploys a second copy; `-c nag=false` skips cdk-nag. A configuration mistake
 * is one message naming the setting, before anything is built.
 */
import path from 'node:path';
import { App, Tags, Validations } from 'aws-cdk-lib';
import { ConfigError } from '../src/config.js';
import { cdkJsonContext, starfishContext } from './context.js';
import { nagPlugins } from './nag.js';
import { readSettings } from './settings.js';
import { REPO_ROOT, StarfishChatopsStack } from './stack.js';

const underCli = Boolean(process.env.CDK_OUTDIR);
const app = new App({
  context: cdkJsonContext(),
  // Without the CLI, App would write to a temporary directory.
  ...(underCli ? {} : { outdir: path.join(REPO_ROOT, 'cdk.out') }),
});

function configured<T>(build: () => T, what: string): T {
  try {
    return build();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`${what}:\n${error.message}`);
    process.exit(1);
  }
}

const settings = configured(() => readSettings(starfishContext(app.node.getAllContext() as Record<string, unknown>)), 'cdk.json / -c settings are not valid');
const stackName = String(app.node.tryGetContext('stackName') ?? 'StarfishChatops');
const stack = configured(
  () =>
    new StarfishChatopsStack(app, stackName, {
      settings,
      description: 'starfish-chatops: Slack bot running starfish pipelines on AWS Batch (infra/README.md)',
    }),
  'The stack would not configure the Lambdas',
);
Tags.of(stack).add('project', 'starfish-chatops');

const nag = app.node.tryGetContext('nag') !== false && app.node.tryGetContext('nag') !== 'false';
if (nag) {
  // cdk-nag v3 is a policy-validation plugin: any unacknowledged finding fails synthesis, and
  // the report lands in cdk.out/validation-report.json (the CLI prints it too).
  Validations.of(app).addPlugins(...nagPlugins(app));
}

let assembly;
try {
  assembly = app.synth();
} catch (error) {
  if (!underCli) console.error(`Synthesis failed: ${(error as Error).message}`);
  throw error;
}

if (!underCli) {
  const messages = assembly.getStackArtifact(stack.artifactId).messages;
  for (const m of messages) if (m.level !== 'info') console.error(`[${m.level}] ${m.id}: ${String(m.entry.data)}`);
  if (messages.some((m) => m.level === 'error')) process.exit(1);
  console.log(`Synthesized ${stack.stackName} to ${path.relative(process.cwd(), assembly.directory) || '.'}/${stack.templateFile} ${nag ? '(cdk-nag: no unacknowledged findings)' : '(cdk-nag skipped)'}`);
}
