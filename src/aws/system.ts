/**
 * The production backend, wired: S3 store and reader, AWS Batch executor, EventBridge bus, and
 * whatever Chat the caller brings (the Slack adapter in the Lambdas). The same launcher,
 * notifier and reconciler as the local backend. Cheap to build: no AWS call is made and the
 * Batch, SQS and Secrets Manager SDKs are not loaded until something uses them.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import type { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import type { BatchClient } from '@aws-sdk/client-batch';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { Chat, Clock } from '../ports.js';
import { systemClock } from '../ports.js';
import { PRODUCTION_SETTINGS, type CoreDeps, type Logger, type Settings } from '../core.js';
import { Launcher } from '../launcher/launcher.js';
import { Notifier } from '../notifier/notifier.js';
import { Reconciler } from '../reconciler/reconciler.js';
import type { DispatchDeps } from '../command/dispatcher.js';
import { readAwsConfig, type AwsConfig } from './config.js';
import { awsLogger, batchClient, eventBridgeClient, s3Client, sqsClient } from './clients.js';
import { S3Store } from './s3-store.js';
import { S3Reader } from './s3-reader.js';
import { BatchExecutor } from './batch-executor.js';
import { EventBridgeBus } from './eventbridge-bus.js';
import { SqsDeadLetters } from './dead-letters.js';

/** The deployed cadence, the one the notifier simulation in bench/ measures. */
const AWS_SETTINGS: Settings = PRODUCTION_SETTINGS;

export interface AwsSystemOptions {
  /** Clients to use instead of the per-container singletons (tests). */
  clients?: { s3?: S3Client; eventBridge?: EventBridgeClient; batch?: BatchClient; sqs?: SQSClient };
  clock?: Clock;
  log?: Logger;
  settings?: Partial<Settings>;
  /** Members of the policy's approver group (Slack usergroups.users.list), from the chat side. */
  approverGroupMembers?: () => Promise<string[]>;
}

/** The four AWS adapters, each on the client the options bring or the container's own. */
function awsAdapters(config: AwsConfig, options: AwsSystemOptions, log: Logger) {
  const clients = options.clients ?? {};
  const s3 = clients.s3 ?? s3Client(config.region);
  const store = new S3Store({ client: s3, bucket: config.bucket, prefix: config.keyPrefix, downloadExpirySeconds: config.downloadExpirySeconds });
  // https inputs under the URL policy, narrowed to STARFISH_HTTPS_HOSTS when it is set.
  const https = config.httpsHosts ? { allowedHosts: config.httpsHosts } : {};
  const reader = new S3Reader({ client: s3, buckets: config.buckets, readOnlyBuckets: config.readOnlyBuckets, https });
  const batch = clients.batch;
  const executor = new BatchExecutor({
    client: batch ?? (() => batchClient(config.region)),
    queues: config.queues,
    fovJobDefinition: config.fovJobDefinition,
    mergeJobDefinition: config.mergeJobDefinition,
    queueJobDefinitions: config.queueJobDefinitions,
    region: config.region,
    logGroup: config.logGroup,
    log,
  });
  const bus = new EventBridgeBus({ client: clients.eventBridge ?? eventBridgeClient(config.region), busName: config.eventBus });
  return { store, reader, executor, bus };
}

/** The AWS backend from the Lambdas' environment, read and checked first (src/aws/config.ts). */
export function createAwsSystem(chat: Chat, env: NodeJS.ProcessEnv = process.env, options: AwsSystemOptions = {}) {
  const config: AwsConfig = readAwsConfig(env);
  const log = options.log ?? awsLogger();
  const { store, reader, executor, bus } = awsAdapters(config, options, log);
  const policy = config.policy;
  const settings: Settings = { ...AWS_SETTINGS, ...options.settings };
  const deps: CoreDeps = {
    store,
    reader,
    executor,
    chat,
    policy,
    clock: options.clock ?? systemClock,
    log,
    settings,
    ...(options.approverGroupMembers ? { approverGroupMembers: options.approverGroupMembers } : {}),
  };
  const launcher = new Launcher(deps);
  const notifier = new Notifier(deps);
  // The reconciler replays the dead-letter queue before each pass, deleting each message only
  // once the notifier has processed it.
  const sqs = options.clients?.sqs;
  const deadLetters = config.dlqUrl ? new SqsDeadLetters({ client: sqs ?? (() => sqsClient(config.region)), queueUrl: config.dlqUrl, log }) : undefined;
  const reconciler = new Reconciler(deps, notifier, deadLetters);
  const dispatchDeps: DispatchDeps = { store, bus, reader, policy, allowPaths: settings.allowPaths };
  return { config, log, store, reader, executor, bus, policy, settings, deps, launcher, notifier, reconciler, dispatchDeps };
}

export type AwsSystem = ReturnType<typeof createAwsSystem>;
