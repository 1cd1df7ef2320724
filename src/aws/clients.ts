/**
 * AWS SDK clients and the JSON logger, created once per container (Lambda reuses a container
 * for many invocations) and only when first used: a Lambda that never submits a job never loads
 * the Batch client. Every client retries throttling and transient errors the SDK way
 * ('standard' mode: exponential backoff with jitter and a retry quota) up to MAX_ATTEMPTS.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import type { BatchClient } from '@aws-sdk/client-batch';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { pino, type Logger as PinoLogger } from 'pino';

/** Attempts per call, the first included: SubmitJob and DescribeJobs throttle under bursts. */
export const MAX_ATTEMPTS = 5;
export const RETRY_MODE = 'standard' as const;

/** The configuration every client gets; tests build clients with it plus a fake HTTP handler. */
export function clientConfig(region?: string): { region?: string; retryMode: typeof RETRY_MODE; maxAttempts: number } {
  const r = region ?? process.env.AWS_REGION;
  return { ...(r ? { region: r } : {}), retryMode: RETRY_MODE, maxAttempts: MAX_ATTEMPTS };
}

let s3: S3Client | undefined;
let eventBridge: EventBridgeClient | undefined;
let batch: Promise<BatchClient> | undefined;
let sqs: Promise<SQSClient> | undefined;
let secrets: Promise<SecretsManagerClient> | undefined;

export function s3Client(region?: string): S3Client {
  return (s3 ??= new S3Client(clientConfig(region)));
}

export function eventBridgeClient(region?: string): EventBridgeClient {
  return (eventBridge ??= new EventBridgeClient(clientConfig(region)));
}

export function batchClient(region?: string): Promise<BatchClient> {
  return (batch ??= import('@aws-sdk/client-batch').then(({ BatchClient }) => new BatchClient(clientConfig(region))));
}

export function sqsClient(region?: string): Promise<SQSClient> {
  return (sqs ??= import('@aws-sdk/client-sqs').then(({ SQSClient }) => new SQSClient(clientConfig(region))));
}

export function secretsClient(region?: string): Promise<SecretsManagerClient> {
  return (secrets ??= import('@aws-sdk/client-secrets-manager').then(({ SecretsManagerClient }) => new SecretsManagerClient(clientConfig(region))));
}

/** Forgets the cached clients (tests). */
export function resetClients(): void {
  s3 = eventBridge = undefined;
  batch = sqs = secrets = undefined;
}

/**
 * Paths pino replaces with "[redacted]". Slack tokens, signing secrets, authorization headers
 * and Secrets Manager values must never reach CloudWatch, whatever object a caller logs.
 */
const REDACT_PATHS = [
  'token',
  'botToken',
  'signingSecret',
  'secret',
  'SecretString',
  'authorization',
  'Authorization',
  'headers.authorization',
  'headers.Authorization',
  'headers["x-slack-signature"]',
  '*.token',
  '*.botToken',
  '*.signingSecret',
  '*.secret',
  '*.SecretString',
  '*.authorization',
  '*.Authorization',
  '*.headers.authorization',
  '*.headers.Authorization',
  '*.headers["x-slack-signature"]',
];

let logger: PinoLogger | undefined;

/** One JSON logger per container; LOG_LEVEL picks the level (info by default). */
export function awsLogger(): PinoLogger {
  return (logger ??= createAwsLogger());
}

export function createAwsLogger(options: { level?: string; destination?: { write(line: string): void } } = {}): PinoLogger {
  const level = options.level ?? process.env.LOG_LEVEL ?? 'info';
  const config = {
    level,
    base: { app: 'starfish-chatops' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    // Lambda adds its own timestamps and request ids; keep ISO time for log insights queries.
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  return options.destination ? pino(config, options.destination) : pino(config);
}
