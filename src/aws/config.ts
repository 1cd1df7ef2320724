/**
 * The AWS backend's configuration: environment variables set on the Lambdas by infra/,
 * validated once per container with messages that name the variable and show an example.
 * docs/aws.md lists them.
 */
import { z } from 'zod';
import { ConfigError } from '../config.js';
import { parsePolicy, type Policy } from '../run/policy.js';
import { DEFAULT_DOWNLOAD_EXPIRY_SECONDS, MAX_DOWNLOAD_EXPIRY_SECONDS } from './s3-store.js';
import { DEFAULT_LOG_GROUP } from './batch-executor.js';

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export const AWS_ENV_EXAMPLES = {
  STARFISH_BUCKET: 'STARFISH_BUCKET=lab-starfish-results (or lab-starfish-results/starfish for a key prefix)',
  STARFISH_ALLOWED_BUCKETS: 'STARFISH_ALLOWED_BUCKETS=lab-data,lab-imaging-archive',
  STARFISH_READONLY_BUCKETS: 'STARFISH_READONLY_BUCKETS=spacetx.starfish.data.public',
  STARFISH_EVENT_BUS: 'STARFISH_EVENT_BUS=starfish-chatops',
  STARFISH_JOB_QUEUES: 'STARFISH_JOB_QUEUES={"spot":"arn:aws:batch:us-east-1:123456789012:job-queue/starfish-spot","ondemand":"arn:aws:batch:us-east-1:123456789012:job-queue/starfish-ondemand"}',
  STARFISH_FOV_JOB_DEFINITION: 'STARFISH_FOV_JOB_DEFINITION=starfish-process-fov (or name:revision, or its ARN)',
  STARFISH_MERGE_JOB_DEFINITION: 'STARFISH_MERGE_JOB_DEFINITION=starfish-merge-results',
  STARFISH_QUEUE_JOB_DEFINITIONS: 'STARFISH_QUEUE_JOB_DEFINITIONS={"highmem":{"fov":"starfish-process-fov-ec2","merge":"starfish-merge-results-ec2"}}',
  STARFISH_POLICY_JSON: 'STARFISH_POLICY_JSON={"approval":{"fovThreshold":500,"approvers":["U012ABCDEF"]},"queues":{"default":"spot","allowed":["spot","ondemand"]}}',
  STARFISH_SLACK_SECRET_ARN: 'STARFISH_SLACK_SECRET_ARN=arn:aws:secretsmanager:us-east-1:123456789012:secret:starfish/slack-AbCdEf',
  STARFISH_DLQ_URL: 'STARFISH_DLQ_URL=https://sqs.us-east-1.amazonaws.com/123456789012/starfish-batch-events-dlq',
  STARFISH_LOG_GROUP: `STARFISH_LOG_GROUP=${DEFAULT_LOG_GROUP}`,
  STARFISH_DOWNLOAD_EXPIRY_SECONDS: 'STARFISH_DOWNLOAD_EXPIRY_SECONDS=86400',
  AWS_REGION: 'AWS_REGION=us-east-1',
} as const;

const list = (name: string) =>
  z
    .string()
    .default('')
    .transform((s) => s.split(',').map((b) => b.trim()).filter(Boolean))
    .pipe(z.array(z.string().regex(BUCKET, `each entry must be a bucket name (no s3://), e.g. ${AWS_ENV_EXAMPLES[name as keyof typeof AWS_ENV_EXAMPLES]}`)));

const json = (what: string) =>
  z.string().transform((s, ctx) => {
    try {
      return JSON.parse(s) as unknown;
    } catch {
      ctx.addIssue({ code: 'custom', message: `must be ${what} in JSON` });
      return z.NEVER;
    }
  });

export const awsEnvSchema = z.object({
  STARFISH_BUCKET: z
    .string({ error: 'is required' })
    .min(1, 'is required')
    .transform((s) => {
      const [bucket, ...rest] = s.replace(/^s3:\/\//, '').split('/');
      return { bucket: bucket!, prefix: rest.join('/').replace(/\/+$/, '') };
    })
    .refine((v) => BUCKET.test(v.bucket), 'must be an S3 bucket name, optionally followed by /prefix'),
  STARFISH_ALLOWED_BUCKETS: list('STARFISH_ALLOWED_BUCKETS'),
  STARFISH_READONLY_BUCKETS: list('STARFISH_READONLY_BUCKETS'),
  STARFISH_EVENT_BUS: z.string({ error: 'is required' }).min(1, 'is required'),
  STARFISH_JOB_QUEUES: json('an object of queue name → job queue ARN').pipe(
    z.record(z.string().regex(/^[A-Za-z0-9_-]+$/, 'queue names are letters, digits, - and _'), z.string().min(1, 'each queue needs an ARN or name')).refine((r) => Object.keys(r).length > 0, 'must name at least one queue'),
  ),
  STARFISH_FOV_JOB_DEFINITION: z.string({ error: 'is required' }).min(1, 'is required'),
  STARFISH_MERGE_JOB_DEFINITION: z.string({ error: 'is required' }).min(1, 'is required'),
  /** Queues whose compute needs other job definitions (EC2 queues refuse Fargate ones). */
  STARFISH_QUEUE_JOB_DEFINITIONS: json('an object of queue name → {"fov": …, "merge": …}')
    .pipe(z.record(z.string(), z.object({ fov: z.string().min(1), merge: z.string().min(1) })))
    .default({}),
  STARFISH_POLICY_JSON: json('the policy object').default({}),
  /** Read by whoever needs the Slack credentials (the two Lambdas), not by the system itself. */
  STARFISH_SLACK_SECRET_ARN: z.string().min(1, 'must be the secret ARN when set').optional(),
  STARFISH_DLQ_URL: z.string().url('must be the SQS queue URL').optional(),
  STARFISH_LOG_GROUP: z.string().min(1).default(DEFAULT_LOG_GROUP),
  STARFISH_DOWNLOAD_EXPIRY_SECONDS: z.coerce
    .number()
    .int('must be a whole number of seconds')
    .min(1, 'must be at least 1 second')
    .max(MAX_DOWNLOAD_EXPIRY_SECONDS, `must be at most ${MAX_DOWNLOAD_EXPIRY_SECONDS} (7 days, the longest S3 allows for a presigned URL)`)
    .default(DEFAULT_DOWNLOAD_EXPIRY_SECONDS),
  AWS_REGION: z.string({ error: 'is required (Lambda sets it)' }).regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'must be a region name'),
});

export interface AwsConfig {
  bucket: string;
  keyPrefix: string;
  /** Read-write buckets: the results bucket and STARFISH_ALLOWED_BUCKETS. */
  buckets: string[];
  readOnlyBuckets: string[];
  eventBus: string;
  queues: Record<string, string>;
  fovJobDefinition: string;
  mergeJobDefinition: string;
  queueJobDefinitions: Record<string, { fov: string; merge: string }>;
  policy: Policy;
  slackSecretArn?: string;
  dlqUrl?: string;
  logGroup: string;
  downloadExpirySeconds: number;
  region: string;
}

const SECRET_LIKE = /SECRET|TOKEN|POLICY/;

export function readAwsConfig(env: NodeJS.ProcessEnv = process.env): AwsConfig {
  const parsed = awsEnvSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const name = String(issue.path[0]);
      const value = env[name];
      // Show what was set, except for anything that could be a secret or is very long.
      const shown = value === undefined ? ' is not set' : SECRET_LIKE.test(name) || value.length > 200 ? ' is not valid' : `=${value} is not valid`;
      const example = AWS_ENV_EXAMPLES[name as keyof typeof AWS_ENV_EXAMPLES];
      return `${name}${shown}: ${issue.message}.${example ? ` Example: ${example}` : ''}`;
    });
    throw new ConfigError(`The AWS backend's configuration is not valid:\n${[...new Set(lines)].join('\n')}`);
  }
  const e = parsed.data;
  let policy: Policy;
  try {
    policy = parsePolicy(e.STARFISH_POLICY_JSON, 'STARFISH_POLICY_JSON');
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  const needed = [...new Set([policy.queues.default, ...policy.queues.allowed])];
  const missing = needed.filter((q) => !e.STARFISH_JOB_QUEUES[q]);
  if (missing.length) {
    throw new ConfigError(
      `STARFISH_JOB_QUEUES has no job queue for ${missing.map((q) => `"${q}"`).join(', ')}, which the policy allows (queues.allowed/default in STARFISH_POLICY_JSON). Example: ${AWS_ENV_EXAMPLES.STARFISH_JOB_QUEUES}`,
    );
  }
  const buckets = [...new Set([e.STARFISH_BUCKET.bucket, ...e.STARFISH_ALLOWED_BUCKETS])];
  return {
    bucket: e.STARFISH_BUCKET.bucket,
    keyPrefix: e.STARFISH_BUCKET.prefix,
    buckets,
    readOnlyBuckets: e.STARFISH_READONLY_BUCKETS.filter((b) => !buckets.includes(b)),
    eventBus: e.STARFISH_EVENT_BUS,
    queues: e.STARFISH_JOB_QUEUES,
    fovJobDefinition: e.STARFISH_FOV_JOB_DEFINITION,
    mergeJobDefinition: e.STARFISH_MERGE_JOB_DEFINITION,
    queueJobDefinitions: e.STARFISH_QUEUE_JOB_DEFINITIONS,
    policy,
    ...(e.STARFISH_SLACK_SECRET_ARN ? { slackSecretArn: e.STARFISH_SLACK_SECRET_ARN } : {}),
    ...(e.STARFISH_DLQ_URL ? { dlqUrl: e.STARFISH_DLQ_URL } : {}),
    logGroup: e.STARFISH_LOG_GROUP,
    downloadExpirySeconds: e.STARFISH_DOWNLOAD_EXPIRY_SECONDS,
    region: e.AWS_REGION,
  };
}
