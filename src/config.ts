/**
 * Configuration: one table for every entry point, and the schemas built from it.
 *
 * - the `starfish` command (src/cli.ts, and `starfish serve`) reads its environment variables
 *   with `readEnv` before it does anything;
 * - the two Lambdas read theirs with `readAwsConfig` (src/aws/config.ts) when they start;
 * - the CDK app (infra/settings.ts) reads its `starfish:<name>` settings (cdk.json or `-c`), writes
 *   the Lambdas' environment with `lambdaEnvironment`, and parses it with `readAwsConfig` before
 *   anything is deployed.
 *
 * A row is one thing a person sets: who reads it, the zod schema that checks it, an example and
 * what it means. A mistake is an error naming the variable (or setting), what is wrong with it,
 * and its example. README.md, docs/aws.md and infra/README.md show the rows of their readers;
 * test/infra/config-table.test.ts keeps them equal to this table.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { z } from 'zod';
import { parsePolicy, policySchema, type Policy } from './run/policy.js';

export class ConfigError extends Error {}

/** Who reads a row: the `starfish` command, the two Lambdas, or the CDK app. */
export type Reader = 'command' | 'lambdas' | 'cdk';

interface Row<S extends z.ZodType = z.ZodType, R extends readonly Reader[] = readonly Reader[]> {
  readBy: R;
  schema: S;
  /** A value that works, as a person would set it. */
  example: string;
  meaning: string;
  /** Never echoed in an error: tokens, secrets, the policy. */
  secret?: boolean;
}

const row = <const R extends readonly Reader[], S extends z.ZodType>(readBy: R, schema: S, example: string, meaning: string, secret = false): Row<S, R> => ({
  readBy,
  schema,
  example,
  meaning,
  ...(secret ? { secret } : {}),
});

/** Deployment settings are CDK context values named `starfish:<name>`. */
export const SETTING_PREFIX = 'starfish:';

// ───────────────────────── building blocks ─────────────────────────

/** S3 bucket names: 3–63 characters, lowercase, no `..`; dotted public dataset buckets are allowed. */
const BUCKET_NAME = /^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const bucketName = z.string().regex(BUCKET_NAME, 'must be an S3 bucket name (no s3://, no /key)');
const bucketList = z
  .string()
  .default('')
  .transform((s) => s.split(',').map((b) => b.trim()).filter(Boolean))
  .pipe(z.array(bucketName));

const json = (what: string) =>
  z.string().transform((s, ctx) => {
    try {
      return JSON.parse(s) as unknown;
    } catch {
      ctx.addIssue({ code: 'custom', message: `must be ${what} in JSON` });
      return z.NEVER;
    }
  });

const required = (what = 'is required') => z.string({ error: what }).min(1, what);

/** The longest a presigned S3 URL may live (SigV4): 7 days. */
const MAX_LINK_SECONDS = 604_800;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** CloudWatch Logs accepts only these retention periods (days). */
const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653] as const;
/** Fargate's vCPU → [min MiB, max MiB, step MiB] (the Fargate task size table). */
const FARGATE_MEMORY: Record<string, [number, number, number]> = {
  '0.25': [512, 2048, 512],
  '0.5': [1024, 4096, 1024],
  '1': [2048, 8192, 1024],
  '2': [4096, 16384, 1024],
  '4': [8192, 30720, 1024],
  '8': [16384, 61440, 4096],
  '16': [32768, 122880, 8192],
};

const jobSize = z
  .object({ vcpus: z.number().positive(), memoryMiB: z.number().int().positive() })
  .superRefine((size, ctx) => {
    const range = FARGATE_MEMORY[String(size.vcpus)];
    if (!range) {
      ctx.addIssue({ code: 'custom', message: `vcpus must be one of ${Object.keys(FARGATE_MEMORY).join(', ')} (Fargate task sizes), got ${size.vcpus}` });
      return;
    }
    const [min, max, step] = range;
    if (size.memoryMiB < min || size.memoryMiB > max || (size.memoryMiB - min) % step !== 0) {
      ctx.addIssue({ code: 'custom', message: `with ${size.vcpus} vCPU Fargate accepts ${min}–${max} MiB in steps of ${step}, got ${size.memoryMiB}` });
    }
  });

// Context values from cdk.json arrive as JSON (arrays, numbers, booleans, objects); `-c` gives strings.
const listFrom = <T extends z.ZodType>(item: T) => z.preprocess((v) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v), z.array(item));
const intFrom = (schema: z.ZodNumber) => z.preprocess((v) => (typeof v === 'string' && v.trim() !== '' ? Number(v) : v), schema);
const boolFrom = z.preprocess((v) => (v === 'true' ? true : v === 'false' ? false : v), z.boolean());
const jsonFrom = <T extends z.ZodType>(schema: T) =>
  z.preprocess((v) => {
    if (typeof v !== 'string') return v;
    try {
      return JSON.parse(v) as unknown;
    } catch {
      return v; // the schema reports "expected object"
    }
  }, schema);

/** A setting that reaches the Lambdas as a variable: its context value, as that variable, checked by the variable's schema. */
const asVariable = <S extends z.ZodType>(variable: Row<S>) =>
  z.preprocess((v) => {
    if (v === undefined || typeof v === 'string') return v;
    if (Array.isArray(v)) return v.join(',');
    return typeof v === 'object' ? JSON.stringify(v) : String(v);
  }, variable.schema);

// ───────────────────────── the variables both sides share ─────────────────────────

const ALLOWED_BUCKETS = row(
  ['lambdas'],
  bucketList,
  'lab-data,lab-imaging-archive',
  'further buckets read and written, which scientists may name in /starfish run s3://…, comma-separated; the results bucket is always one',
);
const READONLY_BUCKETS = row(['lambdas'], bucketList, 'spacetx.starfish.data.public', 'buckets only read, e.g. public datasets to /starfish stage from, comma-separated');
const POLICY_JSON = row(
  ['lambdas'],
  json('the policy object').pipe(policySchema).prefault('{}'),
  '{"approval":{"fovThreshold":500,"approvers":["U012ABCDEF"]},"queues":{"default":"spot","allowed":["spot","ondemand"]}}',
  'who may run and approve, and on which queues (src/run/policy.ts); default: anyone, approval above 500 FOVs',
  true,
);
const DOWNLOAD_EXPIRY = row(
  ['lambdas'],
  z.coerce
    .number({ error: 'must be a whole number of seconds' })
    .int('must be a whole number of seconds')
    .min(60, 'must be at least 60 seconds')
    .max(MAX_LINK_SECONDS, `must be at most ${MAX_LINK_SECONDS} (7 days, the longest S3 allows for a presigned URL)`)
    .optional(),
  '86400',
  'lifetime of result download links, in seconds (default 86400); links signed by a Lambda also end with its credentials, after a few hours',
);

const SLACK_TEAM_ID = row(
  ['command', 'lambdas'],
  z.string().regex(/^[TE][A-Z0-9]{2,}$/, 'must be a Slack team id, e.g. T0123ABCD').optional(),
  'T0123ABCD',
  'the workspace whose requests starfish takes; requests from any other team are refused (403)',
);
const SLACK_APP_ID = row(
  ['command', 'lambdas'],
  z.string().regex(/^A[A-Z0-9]{2,}$/, 'must be a Slack app id, e.g. A0123ABCD (Basic Information → App ID)').optional(),
  'A0123ABCD',
  'the Slack app the requests must be for; any other api_app_id is refused (403)',
);
const HTTPS_HOSTS = row(
  ['command', 'lambdas'],
  z
    .string()
    .optional()
    .transform((s) => s?.split(',').map((h) => h.trim().toLowerCase()).filter(Boolean))
    .pipe(z.array(z.string().regex(/^(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*$/, 'host names, or *.domain')).optional()),
  'data.lab.org,*.spacetx.org',
  'hosts https inputs may come from, comma-separated, *.lab.org meaning any name under lab.org; unset: any public host (internal addresses are always refused)',
);

/** An optional setting: `null` (how cdk.json shows it unset) or an empty `-c` value means not set. */
const unsetWhenNull = <T extends z.ZodType>(schema: T) => z.preprocess((v) => (v === null || v === '' ? undefined : v), schema);

/**
 * Everything a person can set, by name. Environment variables for the command and the Lambdas,
 * `starfish:<name>` settings for the CDK app.
 */
export const CONFIG = {
  // ───── the starfish command ─────
  STARFISH_HOME: row(['command'], z.string().min(1).default('.starfish'), '/data/starfish', 'the folder where runs, logs and staged experiments are kept (default .starfish in the current folder)'),
  STARFISH_CONCURRENCY: row(
    ['command'],
    z.coerce.number({ error: 'must be a whole number' }).int('must be a whole number').positive('must be 1 or more').optional(),
    '4',
    'how many FOVs are processed at once on this machine (default: the number of CPUs)',
  ),
  STARFISH_PYTHON: row(
    ['command'],
    z
      .string()
      .min(1)
      .refine((p) => !p.includes('/') || existsSync(p), 'there is no such file')
      .optional(),
    '/usr/bin/python3',
    'the Python that runs recipes, with numpy, scipy, scikit-image and tifffile (default /usr/bin/python3 if it exists, else python3)',
  ),
  STARFISH_POLICY: row(['command'], z.string().min(1).optional(), 'lab-policy.json', 'a JSON file saying who may run and approve (docs/slack.md); without it you approve your own runs'),
  STARFISH_CHANNEL: row(['command'], z.string().min(1).default('starfish'), 'starfish', "the console channel's name (default starfish)"),
  SLACK_APP_TOKEN: row(
    ['command'],
    z.string().startsWith('xapp-', 'must be an app-level token, starting xapp-').optional(),
    'xapp-1-A0123456789-1234567890123-0123456789abcdef',
    'the Slack app-level token (connections:write) for starfish serve (Socket Mode)',
    true,
  ),
  // ───── the Lambdas (infra sets these from the deployment settings) ─────
  STARFISH_BUCKET: row(
    ['lambdas'],
    required()
      .transform((s) => {
        const [bucket, ...rest] = s.replace(/^s3:\/\//, '').split('/');
        return { bucket: bucket!, prefix: rest.join('/').replace(/\/+$/, '') };
      })
      .refine((v) => BUCKET_NAME.test(v.bucket), 'must be an S3 bucket name, optionally followed by /prefix'),
    'lab-starfish-results',
    'the results bucket: runs, outputs, staged experiments; lab-starfish-results/starfish keeps them under a key prefix',
  ),
  STARFISH_ALLOWED_BUCKETS: ALLOWED_BUCKETS,
  STARFISH_READONLY_BUCKETS: READONLY_BUCKETS,
  STARFISH_EVENT_BUS: row(['lambdas'], required(), 'starfish-chatops', "name or ARN of the app's EventBridge bus"),
  STARFISH_JOB_QUEUES: row(
    ['lambdas'],
    json('an object of queue name → job queue ARN').pipe(
      z
        .record(z.string().regex(/^[A-Za-z0-9_-]+$/, 'queue names are letters, digits, - and _'), z.string().min(1, 'each queue needs an ARN or name'))
        .refine((r) => Object.keys(r).length > 0, 'must name at least one queue'),
    ),
    '{"spot":"arn:aws:batch:us-east-1:123456789012:job-queue/starfish-spot","ondemand":"arn:aws:batch:us-east-1:123456789012:job-queue/starfish-ondemand"}',
    'the queue names people type (queue=) → Batch job queue ARNs; must cover every queue the policy allows',
  ),
  STARFISH_FOV_JOB_DEFINITION: row(['lambdas'], required(), 'starfish-process-fov', 'the process-fov job definition: name, name:revision or ARN'),
  STARFISH_MERGE_JOB_DEFINITION: row(['lambdas'], required(), 'starfish-merge-results', 'the merge-results job definition: name, name:revision or ARN'),
  STARFISH_QUEUE_JOB_DEFINITIONS: row(
    ['lambdas'],
    json('an object of queue name → {"fov": …, "merge": …}')
      .pipe(z.record(z.string(), z.object({ fov: z.string().min(1), merge: z.string().min(1) })))
      .default(() => ({})),
    '{"highmem":{"fov":"starfish-process-fov-ec2","merge":"starfish-merge-results-ec2"}}',
    'job definitions for queues that refuse the two above (an EC2 queue refuses Fargate ones)',
  ),
  STARFISH_POLICY_JSON: POLICY_JSON,
  STARFISH_SLACK_SECRET_ARN: row(
    ['lambdas'],
    z.string().min(1).optional(),
    'arn:aws:secretsmanager:us-east-1:123456789012:secret:starfish/slack-AbCdEf',
    'the Secrets Manager secret {"signingSecret": "…", "botToken": "xoxb-…"} the Lambdas read their Slack credentials from',
  ),
  STARFISH_DLQ_URL: row(
    ['lambdas'],
    z.string().url('must be the SQS queue URL').optional(),
    'https://sqs.us-east-1.amazonaws.com/123456789012/starfish-batch-events-dlq',
    "the Batch-event queue's dead-letter queue, replayed on every schedule",
  ),
  STARFISH_LOG_GROUP: row(['lambdas'], z.string().min(1).optional(), '/aws/batch/StarfishChatops', 'the log group of the Batch jobs, for log links (default /aws/batch/job)'),
  STARFISH_DOWNLOAD_EXPIRY_SECONDS: DOWNLOAD_EXPIRY,
  STARFISH_SLACK_PREWARM: row(
    ['lambdas'],
    z.enum(['true', 'false'], { error: 'must be true or false' }).optional(),
    'false',
    "false: the Slack Lambda skips its first request's work during INIT (default true)",
  ),
  AWS_REGION: row(
    ['lambdas'],
    z.string({ error: 'is required (Lambda sets it)' }).regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'must be a region name'),
    'us-east-1',
    'the region of the bucket, queues and logs (Lambda sets it)',
  ),
  SLACK_SIGNING_SECRET: row(
    ['lambdas'],
    z.string().min(1).optional(),
    '8f742231b10e8888abcd99yyyzzz85a5',
    "the Slack app's signing secret, only without STARFISH_SLACK_SECRET_ARN (development stacks)",
    true,
  ),
  // ───── both: Slack and logging ─────
  SLACK_BOT_TOKEN: row(
    ['command', 'lambdas'],
    z.string().startsWith('xoxb-', 'must be a bot token, starting xoxb-').optional(),
    'xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx',
    'the Slack bot token, for starfish serve; on a Lambda only without STARFISH_SLACK_SECRET_ARN (development stacks)',
    true,
  ),
  SLACK_API_URL: row(['command', 'lambdas'], z.string().url('must be a URL').optional(), 'http://127.0.0.1:3999/api/', 'another Slack Web API endpoint (a stand-in, for tests)'),
  SLACK_TEAM_ID,
  SLACK_APP_ID,
  STARFISH_HTTPS_HOSTS: HTTPS_HOSTS,
  LOG_LEVEL: row(
    ['command', 'lambdas'],
    z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` }).optional(),
    'info',
    'how much the JSON logs say (default warn for the starfish command, info on the Lambdas)',
  ),
  // ───── the CDK app (cdk.json context, or -c starfish:<name>=<value>) ─────
  'starfish:allowedBuckets': row(
    ['cdk'],
    asVariable(ALLOWED_BUCKETS).pipe(z.array(z.string()).min(1, 'needs at least one bucket')),
    ALLOWED_BUCKETS.example,
    'buckets scientists may name in /starfish run s3://…, read by the jobs and the launcher (STARFISH_ALLOWED_BUCKETS)',
  ),
  'starfish:readonlyBuckets': row(['cdk'], asVariable(READONLY_BUCKETS), READONLY_BUCKETS.example, 'buckets only read, e.g. public datasets to /starfish stage from (STARFISH_READONLY_BUCKETS)'),
  'starfish:httpsHosts': row(
    ['cdk'],
    unsetWhenNull(asVariable(HTTPS_HOSTS)),
    HTTPS_HOSTS.example,
    'hosts https inputs may come from (STARFISH_HTTPS_HOSTS, for the Lambdas and the Batch jobs); null or unset: any public host',
  ),
  'starfish:slackTeamId': row(
    ['cdk'],
    unsetWhenNull(asVariable(SLACK_TEAM_ID)),
    SLACK_TEAM_ID.example,
    'the Slack workspace the Slack Lambda serves (SLACK_TEAM_ID); other teams get 403; null or unset: not checked',
  ),
  'starfish:slackAppId': row(
    ['cdk'],
    unsetWhenNull(asVariable(SLACK_APP_ID)),
    SLACK_APP_ID.example,
    'the Slack app the Slack Lambda serves (SLACK_APP_ID, Basic Information → App ID); other app ids get 403; null or unset: not checked',
  ),
  'starfish:resultsBucketName': row(['cdk'], bucketName.optional(), 'my-lab-starfish-results', 'a fixed name for the results bucket (default: generated by CloudFormation)'),
  'starfish:policy': row(
    ['cdk'],
    asVariable(POLICY_JSON),
    POLICY_JSON.example,
    'the approval and access policy (STARFISH_POLICY_JSON); may name only deployed queues; at most 2,048 characters',
  ),
  'starfish:maxVcpus': row(
    ['cdk'],
    jsonFrom(
      z
        .object({
          spot: z.number().int().positive().max(10_000).default(256),
          ondemand: z.number().int().positive().max(10_000).default(64),
          highmem: z.number().int().positive().max(10_000).default(64),
        })
        .strict(),
    ).default({ spot: 256, ondemand: 64, highmem: 64 }),
    '{"spot":256,"ondemand":64,"highmem":64}',
    'the most vCPUs each compute environment runs at once (default 256, 64, 64)',
  ),
  'starfish:highmemEnabled': row(['cdk'], boolFrom.default(false), 'true', 'adds the EC2 highmem compute environment, queue and job definitions (default false)'),
  'starfish:highmemInstanceTypes': row(
    ['cdk'],
    listFrom(z.string().regex(/^[a-z0-9-]+\.[a-z0-9]+$/, 'must be an EC2 instance type, e.g. r6i.4xlarge')).default(['r6i.4xlarge', 'r6i.8xlarge']),
    'r6i.4xlarge,r6i.8xlarge',
    'the instance types of the highmem environment (default r6i.4xlarge,r6i.8xlarge)',
  ),
  'starfish:intermediateRetentionDays': row(['cdk'], intFrom(z.number().int().min(1).max(3650)).default(14), '14', 'days after which the per-FOV tables (tagged, in outputs/…/fovs/) expire (default 14)'),
  'starfish:logRetentionDays': row(
    ['cdk'],
    intFrom(
      z
        .number()
        .int()
        .refine((d) => (LOG_RETENTION_DAYS as readonly number[]).includes(d), `must be a CloudWatch Logs retention period: ${LOG_RETENTION_DAYS.join(', ')}`),
    ).default(90),
    '90',
    'days the job and Lambda logs are kept: a CloudWatch Logs retention period (default 90)',
  ),
  'starfish:downloadExpirySeconds': row(
    ['cdk'],
    asVariable(DOWNLOAD_EXPIRY).default(21_600),
    '21600',
    'lifetime of result download links (STARFISH_DOWNLOAD_EXPIRY_SECONDS; default 21600: the Lambda credentials that sign them last hours)',
  ),
  'starfish:versioning': row(['cdk'], boolFrom.default(true), 'true', 'versioning on the results bucket, so an overwritten or deleted object can be restored; old versions expire after 30 days (default true)'),
  'starfish:natGateways': row(
    ['cdk'],
    intFrom(z.number().int().min(0).max(3)).default(0),
    '0',
    '0: jobs run in public subnets with a public IP and no inbound rule, no NAT cost (default); 1 to 3: private subnets behind NAT',
  ),
  'starfish:fovJob': row(['cdk'], jsonFrom(jobSize).default({ vcpus: 1, memoryMiB: 4096 }), '{"vcpus":1,"memoryMiB":4096}', 'the Fargate size of a FOV job (default 1 vCPU, 4096 MiB)'),
  'starfish:mergeJob': row(['cdk'], jsonFrom(jobSize).default({ vcpus: 2, memoryMiB: 8192 }), '{"vcpus":2,"memoryMiB":8192}', 'the Fargate size of the merge job (default 2 vCPU, 8192 MiB)'),
  'starfish:reservedConcurrency': row(
    ['cdk'],
    jsonFrom(
      z
        .object({
          slack: z.number().int().min(1).max(1000).nullable().default(10),
          events: z.number().int().min(3, 'must be at least 3: two notifier batches (the SQS source) plus run events and the reconciler').max(1000).nullable().default(10),
        })
        .strict(),
    ).default({ slack: 10, events: 10 }),
    '{"slack":10,"events":10}',
    'reserved concurrency of the Slack and events Lambdas: the most copies that run at once, which also throttles the public function URL (default 10 each; null leaves a function unreserved, for accounts whose Lambda quota cannot spare 100 + these)',
  ),
} as const;

type Table = typeof CONFIG;
export type ConfigName = keyof Table;
type ReadBy<R extends Reader> = { [K in ConfigName]: R extends Table[K]['readBy'][number] ? K : never }[ConfigName];
type ShapeOf<R extends Reader> = { [K in ReadBy<R>]: Table[K]['schema'] };

/** The names one reader reads, in table order. */
export function namesReadBy<R extends Reader>(reader: R): Array<ReadBy<R>> {
  return (Object.keys(CONFIG) as ConfigName[]).filter((name) => (CONFIG[name].readBy as readonly Reader[]).includes(reader)) as Array<ReadBy<R>>;
}

const shapeOf = <R extends Reader>(reader: R) => Object.fromEntries(namesReadBy(reader).map((name) => [name, CONFIG[name].schema])) as ShapeOf<R>;

/** The Lambdas' variables, as one object schema (src/aws/config.ts adds the checks across variables). */
export const lambdaEnvSchema = z.object(shapeOf('lambdas'));

type SettingsShape = { [K in ReadBy<'cdk'> as K extends `${typeof SETTING_PREFIX}${infer N}` ? N : never]: Table[K]['schema'] };
/** The deployment settings by their names without `starfish:` (infra/settings.ts adds the checks across settings). */
export const SETTINGS_SHAPE = Object.fromEntries(namesReadBy('cdk').map((name) => [name.slice(SETTING_PREFIX.length), CONFIG[name].schema])) as SettingsShape;

// ───────────────────────── errors ─────────────────────────

/** How a person sets a row: `NAME=value` in the environment, `-c starfish:name=value` for the CDK app. */
export function exampleOf(name: ConfigName): string {
  const { example } = CONFIG[name];
  if (!name.startsWith(SETTING_PREFIX)) return `${name}=${example}`;
  return /^[\w.,:/-]+$/.test(example) ? `-c ${name}=${example}` : `-c '${name}=${example}'`;
}

const isName = (name: string): name is ConfigName => Object.hasOwn(CONFIG, name);

/**
 * One line per problem: the name, what is wrong, the example and what it is for. Values are shown
 * unless they are secret or long; `setting` words it for `starfish:<name>` settings.
 */
export function describeIssues(issues: readonly z.core.$ZodIssue[], values: Record<string, unknown>, form: 'variable' | 'setting' = 'variable'): string[] {
  const lines = issues.map((issue) => {
    const key = String(issue.path[0] ?? '');
    const name = form === 'setting' ? `${SETTING_PREFIX}${key}` : key;
    const value = values[key];
    const rest = issue.path.slice(1).map((p) => (typeof p === 'number' ? `item ${p + 1}` : String(p)));
    const where = rest.length ? ` ${rest.join('.')}:` : '';
    let head: string;
    if (form === 'setting') head = value === undefined ? `Setting ${name} is required` : `Setting ${name} is not valid:${where} ${issue.message}`;
    else if (value === undefined) head = `${name} is not set: ${issue.message}`;
    else {
      const shown = (isName(name) && CONFIG[name].secret) || String(value).length > 200 ? '' : `=${String(value)}`;
      head = `${name}${shown} is not valid:${where} ${issue.message}`;
    }
    return isName(name) ? `${head}. Example: ${exampleOf(name)} — ${CONFIG[name].meaning}` : `${head}.`;
  });
  return [...new Set(lines)];
}

/** Parses an environment with one of the schemas above; an empty variable counts as not set. */
export function parseEnvironment<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv, heading?: string): z.output<S> {
  const set = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ''));
  const parsed = schema.safeParse(set);
  if (parsed.success) return parsed.data;
  const lines = describeIssues(parsed.error.issues, set);
  throw new ConfigError([...(heading ? [heading] : []), ...lines].join('\n'));
}

// ───────────────────────── the starfish command ─────────────────────────

const commandSchema = z.object({ ...shapeOf('command'), LOG_LEVEL: CONFIG.LOG_LEVEL.schema.default('warn') });

export type Env = z.output<typeof commandSchema>;

/** The command's variables, checked before it does anything. */
export function readEnv(env: NodeJS.ProcessEnv = process.env): Env {
  return parseEnvironment(commandSchema, env);
}

/** Debian's interpreter sees the python3-* packages; a pyenv python3 on PATH may not. */
export function defaultPython(env: Env): string {
  if (env.STARFISH_PYTHON) return env.STARFISH_PYTHON;
  return existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
}

/** The policy file STARFISH_POLICY, or one person at one machine who approves their own large runs. */
export function loadPolicy(env: Env, localUser: string): Policy {
  return withLocalWidth(readPolicyFile(env, localUser), env);
}

function readPolicyFile(env: Env, localUser: string): Policy {
  if (!env.STARFISH_POLICY) {
    return parsePolicy({ approval: { approvers: [localUser], allowSelfApproval: true }, queues: { default: 'local', allowed: ['local'] } }, 'the built-in local policy');
  }
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(env.STARFISH_POLICY, 'utf8'));
  } catch (error) {
    throw new ConfigError(`Could not read the policy file STARFISH_POLICY=${env.STARFISH_POLICY}: ${(error as Error).message}. Example: ${exampleOf('STARFISH_POLICY')} — ${CONFIG.STARFISH_POLICY.meaning}`);
  }
  try {
    return parsePolicy(raw, env.STARFISH_POLICY);
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
}

/**
 * The local queue runs as many FOVs at once as the process executor does (STARFISH_CONCURRENCY,
 * else the CPUs): the estimate's wall time and the packing use that width, unless the policy
 * sets cost.queues.local.maxVcpus itself.
 */
function withLocalWidth(policy: Policy, env: Env): Policy {
  if (policy.cost?.queues?.local?.maxVcpus !== undefined) return policy;
  const maxVcpus = env.STARFISH_CONCURRENCY ?? os.availableParallelism();
  const queues = { ...policy.cost?.queues, local: { ...policy.cost?.queues?.local, maxVcpus } };
  return { ...policy, cost: { ...policy.cost, queues } };
}

export function homeDir(env: Env): string {
  return path.resolve(env.STARFISH_HOME);
}

export const localUser = () => process.env.USER || os.userInfo().username || 'you';

// ───────────────────────── the Lambdas' environment, written by infra ─────────────────────────

/** What the CDK app knows when it writes the Lambdas' environment (names and ARNs may be deploy-time tokens without quotes). */
export interface LambdaEnvironmentInput {
  bucket: string;
  allowedBuckets: readonly string[];
  readonlyBuckets: readonly string[];
  eventBus: string;
  queues: Readonly<Record<string, string>>;
  fovJobDefinition: string;
  mergeJobDefinition: string;
  queueJobDefinitions: Readonly<Record<string, { fov: string; merge: string }>>;
  policy: Policy;
  slackSecretArn: string;
  dlqUrl: string;
  logGroup: string;
  downloadExpirySeconds: number;
  /** Hosts https inputs may come from; absent or empty: any public host. */
  httpsHosts?: readonly string[] | undefined;
  /** The Slack workspace and app the Slack Lambda serves; absent: not checked. */
  slackTeamId?: string | undefined;
  slackAppId?: string | undefined;
}

/** The environment `readAwsConfig` parses back into the same values (AWS_REGION is Lambda's own). */
export function lambdaEnvironment(c: LambdaEnvironmentInput): Record<string, string> {
  const env: Partial<Record<ReadBy<'lambdas'>, string>> = {
    STARFISH_BUCKET: c.bucket,
    STARFISH_ALLOWED_BUCKETS: c.allowedBuckets.join(','),
    STARFISH_READONLY_BUCKETS: c.readonlyBuckets.join(','),
    STARFISH_EVENT_BUS: c.eventBus,
    STARFISH_JOB_QUEUES: JSON.stringify(c.queues),
    STARFISH_FOV_JOB_DEFINITION: c.fovJobDefinition,
    STARFISH_MERGE_JOB_DEFINITION: c.mergeJobDefinition,
    STARFISH_POLICY_JSON: JSON.stringify(c.policy),
    STARFISH_SLACK_SECRET_ARN: c.slackSecretArn,
    STARFISH_DLQ_URL: c.dlqUrl,
    STARFISH_LOG_GROUP: c.logGroup,
    STARFISH_DOWNLOAD_EXPIRY_SECONDS: String(c.downloadExpirySeconds),
    // Only queues whose compute refuses the default job definitions (EC2) need an entry.
    ...(Object.keys(c.queueJobDefinitions).length ? { STARFISH_QUEUE_JOB_DEFINITIONS: JSON.stringify(c.queueJobDefinitions) } : {}),
    // Unset, these are not checked: an empty variable would read the same, but is noise.
    ...(c.httpsHosts?.length ? { STARFISH_HTTPS_HOSTS: c.httpsHosts.join(',') } : {}),
    ...(c.slackTeamId ? { SLACK_TEAM_ID: c.slackTeamId } : {}),
    ...(c.slackAppId ? { SLACK_APP_ID: c.slackAppId } : {}),
  };
  return env as Record<string, string>;
}
