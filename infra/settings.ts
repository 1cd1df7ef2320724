/**
 * Deployment settings of the starfish-chatops stack: the `starfish:<name>` rows of the one
 * configuration table (src/config.ts), read from CDK context (cdk.json, or
 * `-c starfish:<name>=<value>`), plus the checks only a deployment has: the queues it deploys and
 * the Lambdas' 4 KB environment. The settings that reach the Lambdas are checked by their
 * variables' own schemas, and `checkLambdaEnvironment` parses what the stack writes with the
 * Lambdas' own reader. Every error names the setting and shows its example, because the person
 * reading it is about to deploy.
 *
 * Context values from cdk.json arrive as JSON (arrays, numbers, objects); values given with
 * `-c` arrive as strings. Lists therefore also accept a comma-separated string, numbers and
 * booleans accept their string forms, and objects accept a JSON string.
 */
import { StringConcat, Tokenization } from 'aws-cdk-lib';
import { z } from 'zod';
import { CONFIG, ConfigError, describeIssues, SETTING_PREFIX, SETTINGS_SHAPE } from '../src/config.js';
import { readAwsConfig } from '../src/aws/config.js';
import { DEFAULT_QUEUE_PRICES, type QueuePrice } from '../src/run/cost.js';
import type { Policy } from '../src/run/policy.js';
import { deployedPolicyLength } from './recipe.js';

/** The queues this stack can deploy; the approval policy may only name these. */
const QUEUE_NAMES = ['spot', 'ondemand', 'highmem'] as const;
export type QueueName = (typeof QUEUE_NAMES)[number];

const settingsSchema = z
  .object(SETTINGS_SHAPE)
  .strict()
  .superRefine((s, ctx) => {
    const deployed: QueueName[] = QUEUE_NAMES.filter((q) => q !== 'highmem' || s.highmemEnabled);
    const named = new Set([s.policy.queues.default, ...s.policy.queues.allowed, ...s.policy.approval.queues]);
    for (const queue of named) {
      if (!(deployed as string[]).includes(queue)) {
        ctx.addIssue({
          code: 'custom',
          path: ['policy'],
          message: `names queue "${queue}", but this stack deploys only ${deployed.join(', ')}${queue === 'highmem' ? ' (set starfish:highmemEnabled=true for highmem)' : ''}`,
        });
      }
    }
    if (!s.policy.queues.allowed.includes(s.policy.queues.default)) {
      ctx.addIssue({ code: 'custom', path: ['policy'], message: `queues.default "${s.policy.queues.default}" is not in queues.allowed (${s.policy.queues.allowed.join(', ')})` });
    }
    // Lambda environment variables share a 4 KB budget with the ARNs and bucket lists. What counts
    // is the policy as deployed: with this stack's job sizes in its price model and the bundled recipe.
    const policy = withDeployedSizes(s).policy;
    const policyLength = deployedPolicyLength(policy);
    if (policyLength > 2048) {
      ctx.addIssue({ code: 'custom', path: ['policy'], message: `is ${policyLength} characters as JSON${deployedNote(s.policy, policy)}; keep it under 2048 (Lambda environment variables are limited to 4 KB in total), e.g. use approverGroup instead of listing approvers` });
    }
    // The ARNs, URLs and names the stack adds resolve to about 1.3 KB at deploy time, which synth
    // cannot see: what the settings put in the environment must leave room for them.
    const budget = 2600;
    const hosts = s.httpsHosts?.join(',').length ?? 0;
    const used = policyLength + s.allowedBuckets.join(',').length + s.readonlyBuckets.join(',').length + hosts;
    if (used > budget) {
      ctx.addIssue({
        code: 'custom',
        path: ['allowedBuckets'],
        message: `with the policy, readonlyBuckets${hosts ? ' and httpsHosts' : ''} takes ${used} characters of the Lambdas' 4 KB environment; keep them under ${budget} (fewer buckets or hosts, or an approverGroup instead of listed approvers)`,
      });
    }
    const overlap = s.allowedBuckets.filter((b) => s.readonlyBuckets.includes(b));
    if (overlap.length) {
      ctx.addIssue({ code: 'custom', path: ['readonlyBuckets'], message: `lists ${overlap.join(', ')}, which is also in allowedBuckets; a bucket is either one or the other` });
    }
  });

export type Settings = z.infer<typeof settingsSchema>;

/** What the stack adds to the lab's policy and counts towards its length: its job sizes (withDeployedSizes) and the bundled default recipe (infra/recipe.ts). */
function deployedNote(lab: Policy, deployed: Policy): string {
  const added = [
    ...(deployed !== lab ? ['the job sizes and queue widths of this stack added to its price model (cost.queues)'] : []),
    ...(lab.defaultRecipe ? [] : ['the bundled default recipe the stack adds, since it names no defaultRecipe']),
  ];
  return added.length ? ` (with ${added.join(', and with ')})` : '';
}

export class SettingsError extends ConfigError {}

/** Which settings exist, so a typo in cdk.json (`starfish:allowedBucket`) is caught, not ignored. */
export const SETTING_NAMES = Object.keys(SETTINGS_SHAPE) as Array<keyof Settings>;

/**
 * Settings from a context lookup (`node.tryGetContext`) or a plain object of context values.
 * Unknown `starfish:` keys are errors; keys without the prefix are ignored (feature flags etc.).
 */
export function readSettings(context: Record<string, unknown>): Settings {
  const raw: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(context)) {
    if (!key.startsWith(SETTING_PREFIX) || value === undefined) continue;
    raw[key.slice(SETTING_PREFIX.length)] = value;
  }
  const parsed = settingsSchema.safeParse(raw);
  if (parsed.success) return withDeployedSizes(parsed.data);
  // An unknown key at the top is a setting name; inside a setting's object it is that setting's mistake.
  const isUnknownSetting = (issue: z.core.$ZodIssue) => issue.code === 'unrecognized_keys' && issue.path.length === 0;
  const unknown = parsed.error.issues.flatMap((issue) => (isUnknownSetting(issue) && issue.code === 'unrecognized_keys' ? issue.keys : []));
  const lines = [
    ...(unknown.length ? [`Unknown setting ${unknown.map((k) => SETTING_PREFIX + k).join(', ')}. Known settings: ${SETTING_NAMES.map((k) => SETTING_PREFIX + k).join(', ')}`] : []),
    ...describeIssues(
      parsed.error.issues.filter((issue) => !isUnknownSetting(issue)),
      raw,
      'setting',
    ),
  ];
  throw new SettingsError(lines.join('\n'));
}

/**
 * The price model estimates with the job sizes and queue widths this stack deploys
 * (starfish:fovJob, starfish:maxVcpus), so that "≈ 35 min at 256 vCPUs" is this deployment's.
 * Only what differs from the model's defaults is written into the policy (it travels in the
 * Lambdas' 4 KB environment, whose budget the schema checks with these added), and a lab's own
 * cost.queues fields win.
 */
function withDeployedSizes(s: Settings): Settings {
  const fargate = { vcpus: s.fovJob.vcpus, memoryGiB: s.fovJob.memoryMiB / 1024 };
  const deployed: Record<string, Partial<QueuePrice>> = {
    spot: { ...fargate, maxVcpus: s.maxVcpus.spot },
    ondemand: { ...fargate, maxVcpus: s.maxVcpus.ondemand },
    ...(s.highmemEnabled ? { highmem: { maxVcpus: s.maxVcpus.highmem } } : {}),
  };
  const queues: Record<string, Partial<QueuePrice>> = { ...s.policy.cost?.queues };
  for (const [queue, sizes] of Object.entries(deployed)) {
    const defaults = DEFAULT_QUEUE_PRICES[queue]!;
    const differing = Object.fromEntries(Object.entries(sizes).filter(([k, v]) => defaults[k as keyof QueuePrice] !== v));
    const merged = { ...differing, ...queues[queue] };
    if (Object.keys(merged).length) queues[queue] = merged;
  }
  if (!Object.keys(queues).length) return s;
  return { ...s, policy: { ...s.policy, cost: { ...s.policy.cost, queues } } };
}

/** What CloudFormation fills in at deploy time: a whole value becomes the variable's example, a part of JSON a placeholder. */
function standIn(name: string, value: string): string {
  const fragments = Tokenization.reverseString(value);
  if (!fragments.tokens.length) return value;
  if (fragments.length === 1) return Object.hasOwn(CONFIG, name) ? CONFIG[name as keyof typeof CONFIG].example : 'deploy-time-value';
  return String(fragments.mapTokens({ mapToken: () => 'deploy-time-value' }).join(new StringConcat()));
}

/**
 * Parses the environment the stack gives the Lambdas with the reader they run at start
 * (`readAwsConfig`), so that a variable infra leaves out or writes wrongly fails the synth, not
 * the first Slack command. Names and ARNs known only at deploy time are stood in for.
 */
export function checkLambdaEnvironment(environment: Record<string, string>): void {
  const standIns = Object.fromEntries(Object.entries(environment).map(([name, value]) => [name, standIn(name, value)]));
  try {
    readAwsConfig({ ...standIns, AWS_REGION: CONFIG.AWS_REGION.example });
  } catch (error) {
    throw new ConfigError(`infra: the Lambdas' environment would not start them (the values CloudFormation fills in are stood in for):\n${(error as Error).message}`);
  }
}
