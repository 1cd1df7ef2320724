/**
 * Everything starfish-chatops needs on AWS (issue 7):
 *
 *   Slack ─▶ Function URL ─▶ slack Lambda ─PutEvents─▶ custom bus ─(source starfish.chatops)─▶ events Lambda
 *   Batch "Job State Change" (default bus, filtered) ─▶ SQS (batched, DLQ) ─▶ events Lambda
 *   every 5 minutes ─▶ events Lambda (reconciler)
 *   events Lambda ─SubmitJob/TerminateJob/DescribeJobs─▶ AWS Batch (Fargate Spot / Fargate / EC2 highmem)
 *   Batch jobs (process-fov, merge-results images) ─▶ results bucket outputs/<id>/…, logs ─▶ own log group
 *
 * IAM is written out statement by statement (not `grantReadWrite`, whose `s3:GetObject*`/`s3:List*`
 * wildcards are broader than the bot needs), with the key patterns taken from the storage layout
 * (src/run/layout.ts): the jobs write `outputs/` only, never the control state under `runs/`. The
 * few wildcard resources AWS requires are explained where they are granted and allow-listed in
 * test/infra.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Aws,
  CfnOutput,
  type CfnResource,
  Duration,
  IgnoreMode,
  RemovalPolicy,
  Size,
  Stack,
  type StackProps,
  Stage,
} from 'aws-cdk-lib';
import * as batch from 'aws-cdk-lib/aws-batch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecrAssets from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as cr from 'aws-cdk-lib/custom-resources';
import type { Construct } from 'constructs';
import { requestClaimKey, runKeys, RUNS_PREFIX, stagedPrefix } from '../src/run/layout.js';
import { lambdaEnvironment } from '../src/config.js';
import { APP_TAG, JOB_TAG_KEYS } from '../src/aws/batch-executor.js';
import { addNagSuppressions } from './nag.js';
import { BUNDLED_RECIPE, bundledRecipeUrl, readBundledRecipe, withBundledRecipe } from './recipe.js';
import { checkLambdaEnvironment, type QueueName, type Settings } from './settings.js';

/** The repository root (infra/ is one level below it). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Where the Lambda handlers live (written outside infra/: src/lambda/). */
export const LAMBDA_ENTRIES = {
  slack: 'src/lambda/slack.ts',
  events: 'src/lambda/events.ts',
} as const;

/** Run events the chat side publishes on the custom bus (src/run/run-events.ts). */
const RUN_EVENT_SOURCE = 'starfish.chatops';
export const RUN_EVENT_TYPES = ['RunRequested', 'RunApproved', 'RunRejected', 'RunCancelled', 'RunRetryRequested', 'StageRequested'] as const;

/** Job names are `starfish-<runId>-fov…`/`-merge` (src/run/batch-event.ts). */
export const JOB_NAME_PREFIX = 'starfish-';

/**
 * Per-FOV intermediates (`outputs/<id>/fovs/…`) expire through this object tag. S3 lifecycle
 * filters take a literal key prefix (no `outputs/*\/fovs/`), plus tags and sizes, and a run's
 * results (`outputs/<id>/results/…`) share the `outputs/` prefix with them: the tag tells them
 * apart. The writer (process-fov through containers/common/starfish_io.py) sets it on
 * `fov_NNN.csv`/`.error.json`; the job role may (s3:PutObjectTagging on outputs/*\/fovs/*).
 */
export const INTERMEDIATE_TAG = { key: 'starfish:lifecycle', value: 'intermediate' } as const;

/**
 * Where the Slack Lambda claims each signed request once (src/slack/request-guard.ts), so that a
 * replay is answered once: `requests/slack/<sha256 of the signature>`. Claims matter for the
 * 5 minutes a Slack timestamp is accepted; they expire after a day (S3's shortest lifecycle).
 */
const SLACK_CLAIMS_PREFIX = requestClaimKey('slack/');

/** Days a noncurrent (overwritten or deleted) version of a results-bucket object is kept. */
export const NONCURRENT_VERSION_DAYS = 30;

/**
 * Every S3 action that changes an object, its tags or its protection. The job role is denied
 * them on the control state and the inputs, and the bucket denies them on the control state to
 * every principal but the Lambdas.
 */
export const OBJECT_WRITE_ACTIONS = [
  's3:PutObject',
  's3:DeleteObject',
  's3:DeleteObjectVersion',
  's3:PutObjectTagging',
  's3:PutObjectVersionTagging',
  's3:DeleteObjectTagging',
  's3:DeleteObjectVersionTagging',
  's3:PutObjectAcl',
  's3:PutObjectVersionAcl',
  's3:PutObjectRetention',
  's3:PutObjectLegalHold',
] as const;

/**
 * The jobs' scratch space: the root filesystem is read-only, /tmp is a volume (the images'
 * WORKDIR; Python's tempfile), and HOME points there so that the caches the starfish stack keeps
 * under ~ (slicedimage tiles, matplotlib, fontconfig) have somewhere to go.
 */
export const JOB_SCRATCH = { volume: 'scratch', path: '/tmp' } as const;

export interface StarfishChatopsStackProps extends StackProps {
  settings: Settings;
  /** Repository root holding src/lambda and containers/; defaults to the one around infra/. */
  repoRoot?: string;
  /** Override the handler entry files (relative to repoRoot), e.g. for tests. */
  entries?: Partial<Record<keyof typeof LAMBDA_ENTRIES, string>>;
}

/** Docker build context exclusions for one image: everything but the files its Dockerfile COPYs. */
function dockerContextExcludes(repoRoot: string, image: string): string[] {
  const dockerfile = `containers/${image}/Dockerfile`;
  const ignoreFile = path.join(repoRoot, `${dockerfile}.dockerignore`);
  // The per-Dockerfile ignore file is BuildKit's; CDK stages from `exclude` instead, so reuse it.
  const patterns = existsSync(ignoreFile)
    ? readFileSync(ignoreFile, 'utf8')
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith('#'))
    : ['*', `!containers/common`, `!containers/${image}`];
  // CDK needs the Dockerfile itself inside the staged context.
  return [...patterns, `!${dockerfile}`];
}

export class StarfishChatopsStack extends Stack {
  readonly resultsBucket: s3.Bucket;
  readonly slackFunction: lambda.Function;
  readonly eventsFunction: lambda.Function;
  readonly eventBus: events.EventBus;
  readonly jobQueues: Partial<Record<QueueName, batch.JobQueue>> = {};

  constructor(scope: Construct, id: string, props: StarfishChatopsStackProps) {
    super(scope, id, props);
    const { settings } = props;
    const repoRoot = props.repoRoot ?? REPO_ROOT;
    const entries = { ...LAMBDA_ENTRIES, ...props.entries };

    // ───────────────────────── storage ─────────────────────────
    const accessLogs = new s3.Bucket(this, 'AccessLogsBucket', {
      encryption: s3.BucketEncryption.S3_MANAGED, // server access logging cannot deliver to SSE-KMS buckets
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [{ id: 'ExpireLogs', expiration: Duration.days(365) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });

    const resultsBucket = new s3.Bucket(this, 'ResultsBucket', {
      bucketName: settings.resultsBucketName,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: settings.versioning,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 'results-bucket/',
      lifecycleRules: [
        {
          id: 'ExpireFovIntermediates',
          prefix: `${path.posix.dirname(runKeys('*').outputs)}/`, // outputs/
          tagFilters: { [INTERMEDIATE_TAG.key]: INTERMEDIATE_TAG.value },
          expiration: Duration.days(settings.intermediateRetentionDays),
        },
        { id: 'ExpireSlackRequestClaims', prefix: SLACK_CLAIMS_PREFIX, expiration: Duration.days(1) },
        { id: 'AbortIncompleteUploads', abortIncompleteMultipartUploadAfter: Duration.days(7) },
        // Versioning keeps what a job overwrote or deleted restorable for a while, not forever.
        ...(settings.versioning
          ? [{ id: 'ExpireOldVersions', noncurrentVersionExpiration: Duration.days(NONCURRENT_VERSION_DAYS), expiredObjectDeleteMarker: true }]
          : []),
      ],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.resultsBucket = resultsBucket;

    // The bundled default recipe, written by CloudFormation with the deploy (issue 15). An
    // AwsCustomResource PutObject of the file's text rather than s3-deployment's BucketDeployment:
    // that one grants its handler s3:GetObject*/s3:List*/s3:DeleteObject*/s3:Abort* on the whole
    // results bucket (wildcard actions this stack allows nowhere) and ships a 22 MB AWS CLI
    // layer into cdk.out at every synth; one small text file needs neither. The text sits in the
    // template, so `cdk diff` shows a change to it. Deleting the stack deletes the object (the
    // bucket itself is kept), and moving it to another key deletes the old one: no default is
    // left behind for a policy that no longer names it.
    const recipeUrl = bundledRecipeUrl(resultsBucket.bucketName);
    const recipeObject = { Bucket: resultsBucket.bucketName, Key: BUNDLED_RECIPE.key };
    const putRecipe: cr.AwsSdkCall = {
      service: 'S3',
      action: 'putObject',
      parameters: { ...recipeObject, Body: readBundledRecipe(repoRoot), ContentType: 'text/x-python; charset=utf-8' },
      physicalResourceId: cr.PhysicalResourceId.of(recipeUrl),
      outputPaths: ['ETag'],
    };
    const bundledRecipe = new cr.AwsCustomResource(this, 'BundledRecipe', {
      onCreate: putRecipe,
      onUpdate: putRecipe,
      // The bucket is kept when the stack goes (RETAIN); once someone has emptied and deleted it by
      // hand, the object went with it, and `cdk destroy` must not stop at DELETE_FAILED over it.
      onDelete: { service: 'S3', action: 'deleteObject', parameters: recipeObject, ignoreErrorCodesMatching: '^NoSuchBucket$' },
      policy: cr.AwsCustomResourcePolicy.fromStatements([
        new iam.PolicyStatement({ sid: 'WriteBundledRecipe', actions: ['s3:PutObject', 's3:DeleteObject'], resources: [resultsBucket.arnForObjects(BUNDLED_RECIPE.key)] }),
      ]),
      // The runtime's SDK: installing the latest one would reach npm at deploy time.
      installLatestAwsSdk: false,
      logGroup: new logs.LogGroup(this, 'BundledRecipeLogs', { retention: settings.logRetentionDays as logs.RetentionDays, removalPolicy: RemovalPolicy.DESTROY }),
    });
    // A refactor that renamed this construct would create the new resource (writing the key), then
    // delete the old one (deleting the same key): the default would dangle. The id stays fixed.
    (bundledRecipe.node.findChild('Resource').node.defaultChild as CfnResource).overrideLogicalId('BundledRecipe');

    // Slack credentials: a generated placeholder signing secret (requests fail verification
    // until the real one is put), never a literal in code, template or environment.
    const slackSecret = new secretsmanager.Secret(this, 'SlackSecret', {
      description:
        'starfish-chatops Slack app credentials as JSON {"signingSecret": "...", "botToken": "xoxb-..."}; set with aws secretsmanager put-secret-value (infra/README.md)',
      generateSecretString: {
        secretStringTemplate: JSON.stringify({ botToken: 'xoxb-REPLACE-ME' }),
        generateStringKey: 'signingSecret',
        excludePunctuation: true,
        passwordLength: 32,
      },
    });

    // ───────────────────────── network for Batch ─────────────────────────
    const isolatedEgress = settings.natGateways > 0;
    const vpc = new ec2.Vpc(this, 'BatchVpc', {
      maxAzs: 2,
      natGateways: settings.natGateways,
      // Nothing here uses the default security group; restricting it needs a custom-resource Lambda.
      restrictDefaultSecurityGroup: false,
      subnetConfiguration: isolatedEgress
        ? [
            { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
            { name: 'jobs', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 },
          ]
        : [{ name: 'jobs', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 20 }],
      // Tiles and tables travel to S3 without NAT charges.
      gatewayEndpoints: { S3: { service: ec2.GatewayVpcEndpointAwsService.S3 } },
      flowLogs: {
        rejected: { destination: ec2.FlowLogDestination.toS3(accessLogs, 'vpc-flow-logs/'), trafficType: ec2.FlowLogTrafficType.REJECT },
      },
    });
    const jobSubnets: ec2.SubnetSelection = { subnetType: isolatedEgress ? ec2.SubnetType.PRIVATE_WITH_EGRESS : ec2.SubnetType.PUBLIC };
    const jobSecurityGroup = new ec2.SecurityGroup(this, 'BatchJobsSecurityGroup', {
      vpc,
      description: 'starfish Batch jobs: no inbound; outbound to ECR, S3 and CloudWatch Logs',
      allowAllOutbound: true,
    });

    // ───────────────────────── Batch ─────────────────────────
    const batchLogGroup = new logs.LogGroup(this, 'BatchJobLogs', {
      logGroupName: `/aws/batch/${this.stackName}`,
      retention: settings.logRetentionDays as logs.RetentionDays,
      removalPolicy: RemovalPolicy.DESTROY,
    });

    const fargate = (id: string, spot: boolean, maxvCpus: number) =>
      new batch.FargateComputeEnvironment(this, id, { vpc, vpcSubnets: jobSubnets, securityGroups: [jobSecurityGroup], spot, maxvCpus });
    const spotEnvironment = fargate('FargateSpotEnvironment', true, settings.maxVcpus.spot);
    const onDemandEnvironment = fargate('FargateOnDemandEnvironment', false, settings.maxVcpus.ondemand);
    this.jobQueues.spot = new batch.JobQueue(this, 'SpotQueue', { priority: 1, computeEnvironments: [{ computeEnvironment: spotEnvironment, order: 1 }] });
    this.jobQueues.ondemand = new batch.JobQueue(this, 'OnDemandQueue', { priority: 1, computeEnvironments: [{ computeEnvironment: onDemandEnvironment, order: 1 }] });

    const jobRole = new iam.Role(this, 'JobRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'starfish Batch jobs (process-fov, merge-results): read inputs, write outputs/* in the results bucket',
    });
    const executionRole = new iam.Role(this, 'JobExecutionRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'starfish Batch jobs: pull the image asset, write the job log group',
    });

    const image = (name: 'process-fov' | 'merge-results') =>
      new ecrAssets.DockerImageAsset(this, `${name === 'process-fov' ? 'ProcessFov' : 'MergeResults'}Image`, {
        directory: repoRoot, // the Dockerfiles COPY containers/common from the repository root
        file: `containers/${name}/Dockerfile`,
        exclude: dockerContextExcludes(repoRoot, name),
        ignoreMode: IgnoreMode.DOCKER,
        // spacetx/starfish:0.4.0 is an amd64 image; build it as such on arm64 laptops too.
        platform: ecrAssets.Platform.LINUX_AMD64,
      });
    const processFovImage = ecs.ContainerImage.fromDockerImageAsset(image('process-fov'));
    const mergeResultsImage = ecs.ContainerImage.fromDockerImageAsset(image('merge-results'));
    const logging = ecs.LogDriver.awsLogs({ logGroup: batchLogGroup, streamPrefix: 'starfish' });

    // Recipe code cannot change the image it runs in: read-only root, a scratch volume for /tmp.
    // The jobs' https reads follow the same host allowlist as the Lambdas' (containers/common/starfish_io.py).
    const hardened = {
      readonlyRootFilesystem: true,
      volumes: [batch.EcsVolume.host({ name: JOB_SCRATCH.volume, containerPath: JOB_SCRATCH.path, readonly: false })],
      environment: { HOME: JOB_SCRATCH.path, ...(settings.httpsHosts?.length ? { STARFISH_HTTPS_HOSTS: settings.httpsHosts.join(',') } : {}) },
    };
    const fargateJob = (id: string, img: ecs.ContainerImage, size: { vcpus: number; memoryMiB: number }, timeout: Duration) => {
      const definition = new batch.EcsJobDefinition(this, id, {
        container: new batch.EcsFargateContainerDefinition(this, `${id}Container`, {
          image: img,
          cpu: size.vcpus,
          memory: Size.mebibytes(size.memoryMiB),
          jobRole,
          executionRole,
          logging,
          ...hardened,
          assignPublicIp: !isolatedEgress, // public subnets without NAT: the task needs a public IP to reach ECR
          fargatePlatformVersion: ecs.FargatePlatformVersion.LATEST,
          fargateCpuArchitecture: ecs.CpuArchitecture.X86_64,
          fargateOperatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
        }),
        propagateTags: true,
        timeout,
      });
      // On Fargate a volume is only named (task storage bind-mounted); Batch says `host` "isn't
      // applicable to jobs that are running on Fargate resources and shouldn't be provided", and
      // EcsVolume.host renders an empty one.
      (definition.node.defaultChild as batch.CfnJobDefinition).addPropertyDeletionOverride('ContainerProperties.Volumes.0.Host');
      return definition;
    };
    const fovJob = fargateJob('ProcessFovJob', processFovImage, settings.fovJob, Duration.hours(4));
    const mergeJob = fargateJob('MergeResultsJob', mergeResultsImage, settings.mergeJob, Duration.hours(2));
    const jobDefinitions: batch.EcsJobDefinition[] = [fovJob, mergeJob];
    let highmemInstanceRole: Construct | undefined;
    const queueJobDefinitions: Record<string, { fov: string; merge: string }> = {};

    if (settings.highmemEnabled) {
      const highmemEnvironment = new batch.ManagedEc2EcsComputeEnvironment(this, 'HighmemEnvironment', {
        vpc,
        vpcSubnets: jobSubnets,
        securityGroups: [jobSecurityGroup],
        instanceTypes: settings.highmemInstanceTypes.map((t) => new ec2.InstanceType(t)),
        useOptimalInstanceClasses: false,
        minvCpus: 0,
        maxvCpus: settings.maxVcpus.highmem,
        spot: false,
        allocationStrategy: batch.AllocationStrategy.BEST_FIT_PROGRESSIVE,
      });
      highmemInstanceRole = highmemEnvironment;
      this.jobQueues.highmem = new batch.JobQueue(this, 'HighmemQueue', { priority: 1, computeEnvironments: [{ computeEnvironment: highmemEnvironment, order: 1 }] });
      // EC2 queues need EC2 job definitions (a Fargate one is refused there): see infra/README.md.
      const ec2Job = (id: string, img: ecs.ContainerImage, timeout: Duration) =>
        new batch.EcsJobDefinition(this, id, {
          container: new batch.EcsEc2ContainerDefinition(this, `${id}Container`, {
            image: img,
            cpu: 4,
            memory: Size.gibibytes(60),
            jobRole,
            executionRole,
            logging,
            ...hardened, // on EC2 the scratch volume is a Docker-managed one on the instance
          }),
          propagateTags: true,
          timeout,
        });
      const highmemFov = ec2Job('ProcessFovHighmemJob', processFovImage, Duration.hours(8));
      const highmemMerge = ec2Job('MergeResultsHighmemJob', mergeResultsImage, Duration.hours(4));
      queueJobDefinitions.highmem = { fov: highmemFov.jobDefinitionArn, merge: highmemMerge.jobDefinitionArn };
      jobDefinitions.push(highmemFov, highmemMerge);
      new CfnOutput(this, 'HighmemFovJobDefinition', { value: highmemFov.jobDefinitionArn, description: 'process-fov on the EC2 highmem queue' });
      new CfnOutput(this, 'HighmemMergeJobDefinition', { value: highmemMerge.jobDefinitionArn, description: 'merge-results on the EC2 highmem queue' });
    }
    const queues = Object.values(this.jobQueues);

    // ───────────────────────── S3 access, by prefix ─────────────────────────
    const objects = (bucket: string, pattern: string) => `arn:${Aws.PARTITION}:s3:::${bucket}/${pattern}`;
    const bucketArn = (bucket: string) => `arn:${Aws.PARTITION}:s3:::${bucket}`;
    // The patterns are the layout's own keys for any run (src/run/layout.ts): IAM `*` also matches `/`.
    const anyRun = runKeys('*');
    const results = {
      /** Control state: manifests, claims, input snapshots. The control plane writes it; jobs never do. */
      runs: resultsBucket.arnForObjects(`${RUNS_PREFIX}*`),
      /** The recipe and experiment.json as they were at launch: the jobs read them. */
      runInputs: resultsBucket.arnForObjects(`${path.posix.dirname(anyRun.recipeSnapshot)}/*`),
      /** Claims on run requests (duplicate deliveries of a RunRequested). */
      requests: resultsBucket.arnForObjects(requestClaimKey('*')),
      /** The Slack Lambda's claims on signed requests (replays answered once). */
      slackClaims: resultsBucket.arnForObjects(`${SLACK_CLAIMS_PREFIX}*`),
      /** Experiments staged by /starfish stage. */
      experiments: resultsBucket.arnForObjects(stagedPrefix('*')),
      /** What the jobs write, and nothing else: FOV tables and failure reasons, merged results. */
      outputs: resultsBucket.arnForObjects(anyRun.outputs),
      fovOutputs: resultsBucket.arnForObjects(`${anyRun.fovOutputs}/*`),
      /** The bundled default recipe: the launcher reads it to snapshot it, like any recipe. */
      bundledRecipe: resultsBucket.arnForObjects(BUNDLED_RECIPE.key),
      /** Where the deploy writes the bundled recipe: only the deploy's. */
      bundledRecipes: resultsBucket.arnForObjects(`${path.posix.dirname(BUNDLED_RECIPE.key)}/*`),
      /** Recipes kept in this bucket (the deploy's under recipes/bundled/): code later runs execute, so never the jobs' to write. */
      recipes: resultsBucket.arnForObjects(`${BUNDLED_RECIPE.key.split('/')[0]}/*`),
    };
    const inputBuckets = [...settings.allowedBuckets, ...settings.readonlyBuckets];
    const inputObjects = inputBuckets.map((b) => objects(b, '*'));
    // Without s3:ListBucket, S3 answers 403 instead of 404 for a missing key, and "not found"
    // (no such run, missing tile) becomes "access denied". A prefix condition would not help:
    // that check carries no s3:prefix. The results bucket holds only the layout's prefixes.
    const listResults = new iam.PolicyStatement({ sid: 'ListResultsBucket', actions: ['s3:ListBucket'], resources: [resultsBucket.bucketArn] });
    const listInputs = inputBuckets.length
      ? new iam.PolicyStatement({ sid: 'ListInputBuckets', actions: ['s3:ListBucket'], resources: inputBuckets.map(bucketArn) })
      : undefined;

    // Jobs run the scientists' recipe code: they read the run's input snapshot, staged experiments,
    // the input buckets and other jobs' outputs (the merge reads the FOV tables), and write only
    // under outputs/. Manifests and claims, which the control plane decides from, are out of reach.
    jobRole.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'ReadInputs', actions: ['s3:GetObject'], resources: [results.runInputs, results.experiments, results.outputs, ...inputObjects] }),
    );
    jobRole.addToPrincipalPolicy(new iam.PolicyStatement({ sid: 'WriteRunOutputs', actions: ['s3:PutObject'], resources: [results.outputs] }));
    // process-fov deletes a stale fov_NNN.error.json, and tags FOV tables for expiry.
    jobRole.addToPrincipalPolicy(new iam.PolicyStatement({ sid: 'ManageFovTables', actions: ['s3:DeleteObject', 's3:PutObjectTagging'], resources: [results.fovOutputs] }));
    jobRole.addToPrincipalPolicy(listResults);
    if (listInputs) jobRole.addToPrincipalPolicy(listInputs);
    // And explicitly never, whatever is granted later: the control state, the request claims, the
    // input snapshots (under runs/), the staged experiments other runs read, and the deployed
    // recipes (a job that replaced the default recipe would run its code in every later run).
    jobRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'NeverWriteControlStateOrInputs',
        effect: iam.Effect.DENY,
        actions: [...OBJECT_WRITE_ACTIONS],
        resources: [results.runs, results.requests, results.experiments, results.recipes],
      }),
    );

    // ───────────────────────── queues ─────────────────────────
    // Two dead-letter queues, because their contents are handled differently:
    // - Batch events the notifier failed on: replayed by the reconciler (STARFISH_DLQ_URL);
    // - run events / schedules that failed (async invocation records, undeliverable events):
    //   left for a person, since replaying a RunRequested could launch a run twice.
    const deadLetters = new sqs.Queue(this, 'BatchEventsDeadLetterQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    const failedInvocations = new sqs.Queue(this, 'FailedInvocationsQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    const eventsTimeout = Duration.minutes(15); // staging a large experiment copies tens of thousands of tiles
    const batchEvents = new sqs.Queue(this, 'BatchEventsQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED, // SSE-SQS: EventBridge can send to it (an AWS-managed KMS key would refuse)
      enforceSSL: true,
      // Lambda's guidance: at least six times the function timeout, so retried batches are not redelivered early.
      visibilityTimeout: Duration.minutes(eventsTimeout.toMinutes() * 6),
      retentionPeriod: Duration.days(4),
      deadLetterQueue: { queue: deadLetters, maxReceiveCount: 5 },
    });

    // ───────────────────────── bus ─────────────────────────
    const bus = new events.EventBus(this, 'RunEventBus', { description: 'starfish-chatops run events (source starfish.chatops)' });
    this.eventBus = bus;

    // ───────────────────────── Lambdas ─────────────────────────
    const queueArns: Record<string, string> = {};
    for (const [name, queue] of Object.entries(this.jobQueues)) queueArns[name] = queue.jobQueueArn;
    // Written by the configuration module (src/config.ts) and parsed back with the Lambdas' own
    // reader before anything deploys: a variable left out or written wrongly fails the synth.
    // The results bucket is always allowed (readAwsConfig adds it: runs read experiments staged into it).
    const environment = lambdaEnvironment({
      bucket: resultsBucket.bucketName,
      allowedBuckets: settings.allowedBuckets,
      readonlyBuckets: settings.readonlyBuckets,
      eventBus: bus.eventBusName,
      queues: queueArns,
      fovJobDefinition: fovJob.jobDefinitionArn,
      mergeJobDefinition: mergeJob.jobDefinitionArn,
      // EC2 queues refuse Fargate job definitions: the executor picks these per queue.
      queueJobDefinitions,
      // The lab's policy, with the bundled recipe as its default when it names none.
      policy: withBundledRecipe(settings.policy, recipeUrl),
      slackSecretArn: slackSecret.secretArn,
      dlqUrl: deadLetters.queueUrl,
      logGroup: batchLogGroup.logGroupName,
      downloadExpirySeconds: settings.downloadExpirySeconds,
      httpsHosts: settings.httpsHosts,
      // Read by the Slack Lambda (its request guard); the events Lambda only checks their form.
      slackTeamId: settings.slackTeamId,
      slackAppId: settings.slackAppId,
    });
    checkLambdaEnvironment(environment);

    const lambdaFunction = (
      id: string,
      entry: string,
      bundleAwsSDK: boolean,
      props: { timeout: Duration; memorySize: number; description: string; reservedConcurrentExecutions?: number },
    ) => {
      const absolute = path.resolve(repoRoot, entry);
      if (!existsSync(absolute)) {
        throw new Error(
          `infra: the Lambda entry ${entry} does not exist (looked at ${absolute}). ` +
            `The stack bundles the handlers in src/lambda/ (slack.ts: Bolt AwsLambdaReceiver; events.ts: run events, Batch events from SQS, the reconciler). ` +
            `Add the handler (or pull the commit that adds it), then synthesize again.`,
        );
      }
      const logGroup = new logs.LogGroup(this, `${id}Logs`, {
        retention: settings.logRetentionDays as logs.RetentionDays,
        removalPolicy: RemovalPolicy.DESTROY,
      });
      // The bundle is built by scripts/bundle-lambdas.mjs (esbuild with the plugins that keep the
      // Slack function under 1 MB and its cold import fast), run at synth, so that what deploys is
      // exactly what `npm run build` measures. NodejsFunction cannot take esbuild plugins.
      // Each synth bundles inside its own output directory (cdk.out, or a test's), so concurrent
      // synths never share files, and the next synth to the same place starts from an empty one
      // rather than leaving ~2 MB behind each time (a temp directory per synth filled /tmp).
      const name = path.basename(entry, '.ts');
      const out = path.join(Stage.of(this)!.outdir, `bundle-${name}`);
      rmSync(out, { recursive: true, force: true });
      mkdirSync(out, { recursive: true });
      return new lambda.Function(this, id, {
        code: lambda.Code.fromCustomCommand(path.join(out, name), ['node', 'scripts/bundle-lambdas.mjs', '--only', name, '--out', out, ...(bundleAwsSDK ? ['--bundle-aws-sdk'] : ['--external-aws-sdk'])], {
          commandOptions: { cwd: repoRoot, stdio: 'pipe' },
        }),
        handler: 'index.handler',
        runtime: lambda.Runtime.NODEJS_22_X,
        architecture: lambda.Architecture.ARM_64,
        environment,
        logGroup,
        ...props,
      });
    };

    // The SDK choice follows scripts/bundle-lambdas.mjs: the Slack function reads S3, calls
    // PutEvents and creates its request claims with If-None-Match, which the bucket refuses without
    // the header (SlackRequestClaimsCreateOnly), so a runtime SDK that dropped it would fail closed;
    // it takes the runtime's SDK v3 (smaller bundle, faster cold start, 3 s ack);
    // the events function pins package-lock's SDK, because the launcher's compare-and-swap needs
    // S3 If-None-Match/If-Match, which an older SDK would drop silently.
    // Reserved concurrency caps how many copies run at once (null: unreserved). AWS has no
    // throttle on a function URL itself; Lambda documents reserved concurrency as the way to
    // throttle one (at most about 10 × the reserved concurrency requests per second), so it is
    // what bounds the public endpoint, and what unsigned floods can cost.
    const reserved = (n: number | null) => (n === null ? {} : { reservedConcurrentExecutions: n });
    const slackFunction = lambdaFunction('SlackFunction', entries.slack, false, {
      timeout: Duration.seconds(15), // Slack waits 3 s for the ack; the handler does no slow work
      memorySize: 1024,
      description: 'starfish-chatops: Slack slash commands and buttons (Bolt); publishes run events',
      ...reserved(settings.reservedConcurrency.slack),
    });
    this.slackFunction = slackFunction;
    const slackUrl = slackFunction.addFunctionUrl({ authType: lambda.FunctionUrlAuthType.NONE });

    const eventsFunction = lambdaFunction('EventsFunction', entries.events, true, {
      timeout: eventsTimeout,
      memorySize: 1024,
      description: 'starfish-chatops: launcher (run events), notifier (Batch events via SQS), reconciler (schedule)',
      // At least 3 (settings): the two notifier batches the SQS source may run, and room for run events.
      ...reserved(settings.reservedConcurrency.events),
    });
    this.eventsFunction = eventsFunction;
    // The policy names the bundled recipe: it is written before the Lambdas that read the policy
    // start, and deleted only after they are gone.
    for (const fn of [slackFunction, eventsFunction]) fn.node.addDependency(bundledRecipe);

    // Run events → events Lambda (async; a failure after 2 retries lands in the DLQ).
    eventsFunction.configureAsyncInvoke({ retryAttempts: 2, maxEventAge: Duration.hours(6), onFailure: new destinations.SqsDestination(failedInvocations) });
    new events.Rule(this, 'RunEventsRule', {
      description: 'starfish run events → events Lambda',
      eventBus: bus,
      eventPattern: { source: [RUN_EVENT_SOURCE], detailType: [...RUN_EVENT_TYPES] },
      targets: [new targets.LambdaFunction(eventsFunction, { deadLetterQueue: failedInvocations, retryAttempts: 4, maxEventAge: Duration.hours(2) })],
    });

    // Batch job state changes of this app's queues → SQS → events Lambda in batches. Array
    // children only when FAILED: a 10,000-FOV run would otherwise send ~50,000 events; progress
    // comes from the parent's status summary (DESIGN.md "Scale rules").
    new events.Rule(this, 'BatchJobEventsRule', {
      description: 'starfish Batch job state changes (parents, plain jobs, failed children) → SQS',
      eventPattern: {
        source: ['aws.batch'],
        detailType: ['Batch Job State Change'],
        detail: {
          jobQueue: queues.map((q) => q.jobQueueArn),
          jobName: [{ prefix: JOB_NAME_PREFIX }],
          $or: [{ arrayProperties: { index: [{ exists: false }] } }, { status: ['FAILED'] }],
        },
      },
      targets: [new targets.SqsQueue(batchEvents, { deadLetterQueue: deadLetters, retryAttempts: 8 })],
    });
    eventsFunction.addEventSource(
      new SqsEventSource(batchEvents, {
        batchSize: 100,
        maxBatchingWindow: Duration.seconds(30),
        reportBatchItemFailures: true,
        // Two concurrent notifiers at most: Slack's chat.update limit is per channel, and the
        // notifier coalesces per run within a batch.
        maxConcurrency: 2,
      }),
    );

    // The reconciler: lost events, expired approvals, stuck runs.
    new events.Rule(this, 'ReconcileSchedule', {
      description: 'starfish reconciler every 5 minutes',
      schedule: events.Schedule.rate(Duration.minutes(5)),
      targets: [new targets.LambdaFunction(eventsFunction, { deadLetterQueue: failedInvocations, retryAttempts: 2, maxEventAge: Duration.minutes(10) })],
    });

    // ───────────────────────── Lambda permissions ─────────────────────────
    // Slack Lambda: publish run events, read run manifests (status, list), read its secret.
    bus.grantPutEventsTo(slackFunction);
    slackSecret.grantRead(slackFunction);
    slackFunction.addToRolePolicy(new iam.PolicyStatement({ sid: 'ReadRuns', actions: ['s3:GetObject'], resources: [results.runs] }));
    // Claims on signed requests, created once (If-None-Match; the bucket refuses any other write there).
    slackFunction.addToRolePolicy(new iam.PolicyStatement({ sid: 'ClaimSlackRequests', actions: ['s3:PutObject'], resources: [results.slackClaims] }));
    slackFunction.addToRolePolicy(listResults);

    // Events Lambda: Batch, the control state (runs/*, requests/*), staging (experiments/*), the
    // jobs' outputs (read: failure reasons, summary, spots.png; download links to results), inputs, DLQ, secret.
    slackSecret.grantRead(eventsFunction);
    eventsFunction.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'SubmitJobs',
        actions: ['batch:SubmitJob'],
        resources: [...jobDefinitions.map((d) => d.jobDefinitionArn), ...queues.map((q) => q.jobQueueArn)],
      }),
    );
    // Job ARNs carry the job id, known only after SubmitJob: `job/*` is the narrowest resource, so
    // a tag says which jobs are this app's. TerminateJob only on jobs tagged starfish:app (the
    // executor tags each submission, and checks name, tags and queue before terminating too).
    // CancelJob is not granted: the executor never calls it.
    const jobs = `arn:${Aws.PARTITION}:batch:${Aws.REGION}:${Aws.ACCOUNT_ID}:job/*`;
    eventsFunction.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'TerminateOwnJobs',
        actions: ['batch:TerminateJob'],
        resources: [jobs],
        conditions: { StringEquals: { [`aws:ResourceTag/${APP_TAG.key}`]: APP_TAG.value } },
      }),
    );
    // SubmitJob with tags is authorized for batch:TagResource as well (reported against the job
    // definition ARN, hence both). Only this app's three tag keys, and its own app tag value.
    // The IfExists/ForAllValues forms hold when a key is absent from the request context, so they
    // can narrow tag-on-submit but never break it.
    eventsFunction.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'TagJobsOnSubmit',
        actions: ['batch:TagResource'],
        resources: [jobs, ...jobDefinitions.map((d) => d.jobDefinitionArn)],
        conditions: {
          'ForAllValues:StringEquals': { 'aws:TagKeys': [...JOB_TAG_KEYS] },
          StringEqualsIfExists: { [`aws:RequestTag/${APP_TAG.key}`]: APP_TAG.value },
        },
      }),
    );
    // DescribeJobs and ListJobs (the reconciler's failed children) support no resource-level
    // permissions: AWS requires Resource "*".
    eventsFunction.addToRolePolicy(new iam.PolicyStatement({ sid: 'DescribeJobs', actions: ['batch:DescribeJobs', 'batch:ListJobs'], resources: ['*'] }));
    eventsFunction.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'ReadStoreAndInputs',
        actions: ['s3:GetObject'],
        resources: [results.runs, results.experiments, results.outputs, results.bundledRecipe, ...inputObjects],
      }),
    );
    // PutObject covers conditional create/replace (If-None-Match/If-Match) and the CopyObject
    // destination (staging); DeleteObject gives claims back. Nothing here writes outputs/.
    eventsFunction.addToRolePolicy(
      new iam.PolicyStatement({ sid: 'WriteStore', actions: ['s3:PutObject', 's3:DeleteObject'], resources: [results.runs, results.requests, results.experiments] }),
    );
    eventsFunction.addToRolePolicy(listResults);
    if (listInputs) eventsFunction.addToRolePolicy(listInputs);
    // The reconciler replays the Batch-event dead letters (ReceiveMessage, DeleteMessageBatch).
    deadLetters.grantConsumeMessages(eventsFunction);

    // ───────────────────────── the bucket's own guard on the control state ─────────────────────────
    // Whatever any identity policy in the account grants (a job role, a broad admin or CI role),
    // manifests, claims, input snapshots (runs/) and request claims (requests/) change only
    // through the Lambdas' roles. The events Lambda writes them; the Slack Lambda is not granted
    // writes by its own policy. A person who must repair one by hand edits this policy first.
    // (staged experiments are left to IAM: people may upload experiments themselves.)
    /** Denies every object write on `resources` to every principal but `writers`, whatever their identity policies grant. */
    const onlyWrittenBy = (sid: string, resources: string[], writers: string | string[]) =>
      resultsBucket.addToResourcePolicy(
        new iam.PolicyStatement({
          sid,
          effect: iam.Effect.DENY,
          principals: [new iam.AnyPrincipal()],
          actions: [...OBJECT_WRITE_ACTIONS],
          resources,
          conditions: { ArnNotEquals: { 'aws:PrincipalArn': writers } },
        }),
      );
    onlyWrittenBy('ControlStateOnlyThroughTheLambdas', [results.runs, results.requests], [eventsFunction.role!.roleArn, slackFunction.role!.roleArn]);
    // A Slack request claim is created, never overwritten (S3 conditional-write enforcement:
    // a PutObject there without If-None-Match is refused), so a claim cannot be reset to replay.
    resultsBucket.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'SlackRequestClaimsCreateOnly',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['s3:PutObject'],
        resources: [results.slackClaims],
        conditions: { Null: { 's3:if-none-match': 'true' } },
      }),
    );

    // The bundled default recipe changes only with a deploy: whatever any identity policy in the
    // account grants, only the role CloudFormation writes it with may write under recipes/bundled/.
    // (A lab's own recipes belong in its own bucket, or anywhere else in this one.)
    const recipeWriter = bundledRecipe.grantPrincipal;
    if (!(recipeWriter instanceof iam.Role)) throw new Error('infra: the bundled recipe is expected to be written by a role of this stack');
    onlyWrittenBy('BundledRecipesOnlyThroughDeploys', [results.bundledRecipes], recipeWriter.roleArn);

    // ───────────────────────── outputs ─────────────────────────
    new CfnOutput(this, 'SlackRequestUrl', { value: slackUrl.url, description: 'Request URL for the Slack app manifest (slash command, interactivity, events)' });
    new CfnOutput(this, 'SlackSecretArn', { value: slackSecret.secretArn, description: 'put {"signingSecret","botToken"} here' });
    new CfnOutput(this, 'ResultsBucketName', { value: resultsBucket.bucketName });
    new CfnOutput(this, 'BundledRecipeUrl', { value: recipeUrl, description: 'the recipe a run uses when it names none and starfish:policy has no defaultRecipe' });
    new CfnOutput(this, 'EventBusName', { value: bus.eventBusName });
    new CfnOutput(this, 'JobQueues', { value: this.toJsonString(queueArns) });
    new CfnOutput(this, 'BatchLogGroup', { value: batchLogGroup.logGroupName });
    new CfnOutput(this, 'DeadLetterQueueUrl', { value: deadLetters.queueUrl, description: 'Batch events the notifier failed on; the reconciler replays them' });
    new CfnOutput(this, 'FailedInvocationsQueueUrl', { value: failedInvocations.queueUrl, description: 'run events and schedules that failed after retries; for a person to inspect' });

    addNagSuppressions(this, { slackFunction, slackUrl, eventsFunction, jobRole, executionRole, resultsBucket, slackSecret, failedInvocations, inputBuckets, highmemInstanceRole, recipeWriter });
  }
}
