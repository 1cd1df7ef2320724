/**
 * The Lambdas' configuration: their rows of the one configuration table (src/config.ts), which
 * infra writes with `lambdaEnvironment` and checks with this same function at synth. Read once
 * per container, when the system is built; every problem is named with its example.
 */
import { ConfigError, exampleOf, lambdaEnvSchema, parseEnvironment } from '../config.js';
import type { Policy } from '../run/policy.js';
import { DEFAULT_DOWNLOAD_EXPIRY_SECONDS } from './s3-store.js';
import { DEFAULT_LOG_GROUP } from './batch-executor.js';

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
  /** Read by whoever needs the Slack credentials (the two Lambdas), not by the system itself. */
  slackSecretArn?: string;
  dlqUrl?: string;
  logGroup: string;
  downloadExpirySeconds: number;
  region: string;
  /** STARFISH_HTTPS_HOSTS: the hosts https inputs may come from; absent: any public host. */
  httpsHosts?: string[];
}

export function readAwsConfig(env: NodeJS.ProcessEnv = process.env): AwsConfig {
  const e = parseEnvironment(lambdaEnvSchema, env, "The AWS backend's configuration is not valid:");
  const policy = e.STARFISH_POLICY_JSON;
  const needed = [...new Set([policy.queues.default, ...policy.queues.allowed])];
  const missing = needed.filter((q) => !e.STARFISH_JOB_QUEUES[q]);
  if (missing.length) {
    throw new ConfigError(
      `STARFISH_JOB_QUEUES has no job queue for ${missing.map((q) => `"${q}"`).join(', ')}, which the policy allows (queues.allowed/default in STARFISH_POLICY_JSON). Example: ${exampleOf('STARFISH_JOB_QUEUES')}`,
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
    // The adapters' own defaults, which the table's meanings name.
    logGroup: e.STARFISH_LOG_GROUP ?? DEFAULT_LOG_GROUP,
    downloadExpirySeconds: e.STARFISH_DOWNLOAD_EXPIRY_SECONDS ?? DEFAULT_DOWNLOAD_EXPIRY_SECONDS,
    region: e.AWS_REGION,
    ...(e.STARFISH_HTTPS_HOSTS?.length ? { httpsHosts: e.STARFISH_HTTPS_HOSTS } : {}),
  };
}
