/**
 * cdk-nag (v3: a CDK policy-validation plugin, acknowledged through `Validations.of(…)`).
 *
 * `nagPlugins()` is what the app registers and the tests run: the AwsSolutions pack plus a
 * small pack with cdk-nag's Function URL rules, which no built-in pack includes, so that the
 * deliberate `authType: NONE` is a finding acknowledged with its reason instead of a silence.
 *
 * Every acknowledgement names one finding (v3 has no blanket suppression) and says why.
 */
import { Stack, Validations, type CfnResource, type IPolicyValidationPlugin } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { AwsSolutionsChecks, NagMessageLevel, NagPack, rules, type NagPackProps } from 'cdk-nag';
import type { IConstruct } from 'constructs';

/** cdk-nag's Lambda Function URL rules, which are in no built-in pack. */
class FunctionUrlChecks extends NagPack {
  readonly name = 'StarfishFunctionUrl';

  constructor(scope?: IConstruct, props?: NagPackProps) {
    super(scope, props);
    this.packName = 'Starfish';
  }

  protected checkResource(node: CfnResource): void {
    this.applyRule({
      info: 'The Lambda Function URL allows for public, unauthenticated access.',
      explanation: 'Setting the authentication of a Function URL to NONE allows anyone on the internet to invoke the function.',
      level: NagMessageLevel.ERROR,
      rule: rules.lambda.LambdaFunctionUrlAuth,
      node,
    });
  }
}

export function nagPlugins(scope?: IConstruct, props: NagPackProps = { verbose: true }): Array<IPolicyValidationPlugin & NagPack> {
  return [new AwsSolutionsChecks(scope, props), new FunctionUrlChecks(scope, props)];
}

export interface NagRefs {
  slackFunction: lambda.Function;
  slackUrl: lambda.FunctionUrl;
  eventsFunction: lambda.Function;
  jobRole: iam.Role;
  executionRole: iam.Role;
  resultsBucket: s3.Bucket;
  slackSecret: secretsmanager.Secret;
  failedInvocations: sqs.Queue;
  inputBuckets: string[];
  highmemInstanceRole?: IConstruct;
  /** The role of the custom resource that writes the bundled recipe (infra/recipe.ts). */
  recipeWriter: iam.Role;
}

/** The acknowledgements, each with its reason (test/infra checks every reason is given). */
export function addNagSuppressions(stack: Stack, refs: NagRefs): void {
  const ack = (scope: IConstruct, id: string, reason: string) => Validations.of(scope).acknowledge({ id, reason });
  const bucketArn = `<${stack.getLogicalId(refs.resultsBucket.node.defaultChild as CfnResource)}.Arn>`;
  const iam5 = (finding: string) => `AwsSolutions-IAM5[Resource::${finding}]`;

  ack(
    refs.slackUrl,
    'Starfish-LambdaFunctionUrlAuth',
    'Slack cannot sign AWS IAM (SigV4) requests; it signs each request with the app signing secret, which the handler verifies (Bolt AwsLambdaReceiver) before doing anything.',
  );

  ack(
    refs.slackSecret,
    'AwsSolutions-SMG4',
    'The signing secret and bot token are issued by Slack; they are rotated in the Slack app settings and put here by hand (infra/README.md), not by a rotation Lambda.',
  );

  ack(
    refs.failedInvocations,
    'AwsSolutions-SQS3',
    'This queue is itself a dead-letter destination (the events Lambda on-failure destination and the EventBridge targets DLQ), which SQS3 only recognises for queue redrive; a DLQ for it would only move the problem.',
  );

  ack(
    refs.recipeWriter,
    'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
    "The basic execution role lets the custom resource's Lambda (it writes the bundled recipe at deploy) write its own logs: logs:CreateLogGroup/CreateLogStream/PutLogEvents only; its S3 permission is PutObject/DeleteObject on the one key.",
  );

  for (const fn of [refs.slackFunction, refs.eventsFunction]) {
    ack(
      fn,
      'AwsSolutions-L1',
      'Node.js 22 is the runtime the project targets and tests (package.json engines, tsconfig ES2022, esbuild target node22); moving to a newer runtime is a deliberate upgrade.',
    );
    ack(
      fn,
      'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      'The basic execution role grants only logs:CreateLogGroup/CreateLogStream/PutLogEvents, which every Lambda needs for its own logs.',
    );
  }

  // Object prefixes of the storage layout (src/run/layout.ts): a wildcard after a fixed prefix is
  // how IAM scopes objects, and run ids and experiment names are created at run time.
  const prefixes: Array<{ pattern: string; scopes: IConstruct[]; reason: string }> = [
    {
      pattern: 'runs/*',
      scopes: [refs.slackFunction, refs.eventsFunction],
      reason: 'Control state of the results bucket under runs/<run-id>/ (manifest, claims, input snapshots), which the Lambdas read and the events Lambda writes; run ids are created at run time.',
    },
    {
      pattern: 'requests/*',
      scopes: [refs.eventsFunction],
      reason: 'Claims on run requests under requests/<request-id>, created once per request so that a duplicate delivery launches nothing; request ids are created at run time.',
    },
    {
      pattern: 'requests/slack/*',
      scopes: [refs.slackFunction],
      reason: 'Claims on signed Slack requests under requests/slack/<sha256 of the signature>, created once (If-None-Match, enforced by the bucket policy) so that a replayed request is answered once; the names exist only per request.',
    },
    {
      pattern: 'experiments/*',
      scopes: [refs.jobRole, refs.eventsFunction],
      reason: 'Experiments staged into the results bucket under experiments/<name>/ (named at run time by /starfish stage), so the prefix ends in a wildcard.',
    },
    {
      pattern: 'outputs/*',
      scopes: [refs.jobRole, refs.eventsFunction],
      reason: 'Job outputs under outputs/<run-id>/ (FOV tables, failure reasons, merged results): the jobs write only here; the events Lambda reads them and signs download links.',
    },
    {
      pattern: 'runs/*/inputs/*',
      scopes: [refs.jobRole],
      reason: 'Read-only: the recipe and experiment.json of any run as snapshotted at launch (runs/<run-id>/inputs/), which its jobs run from.',
    },
    {
      pattern: 'outputs/*/fovs/*',
      scopes: [refs.jobRole],
      reason: 'Per-FOV tables of any run (outputs/<run-id>/fovs/fov_NNN.csv): process-fov deletes its stale error record and tags the table for lifecycle expiry.',
    },
  ];
  for (const { pattern, scopes, reason } of prefixes) for (const scope of scopes) ack(scope, iam5(`${bucketArn}/${pattern}`), reason);
  for (const bucket of refs.inputBuckets) {
    const reason = `Read-only access to the objects of input bucket ${bucket}, which the deployment settings allow scientists to name (experiments, tiles, recipes, codebooks live anywhere in it).`;
    for (const scope of [refs.jobRole, refs.eventsFunction]) ack(scope, iam5(`arn:<AWS::Partition>:s3:::${bucket}/*`), reason);
  }

  ack(
    refs.eventsFunction,
    iam5('arn:<AWS::Partition>:batch:<AWS::Region>:<AWS::AccountId>:job/*'),
    'batch:TerminateJob and batch:TagResource act on job ARNs (job/<job-id>); the ids exist only after SubmitJob, so job/* in this account and region is the narrowest resource.',
  );
  ack(
    refs.eventsFunction,
    iam5('*'),
    'batch:DescribeJobs and batch:ListJobs do not support resource-level permissions; AWS requires Resource "*" (Service Authorization Reference, AWS Batch).',
  );
  ack(
    refs.executionRole,
    iam5('*'),
    'ecr:GetAuthorizationToken does not support resource-level permissions; AWS requires Resource "*" to pull the job images (the pull itself is scoped to the asset repository).',
  );

  if (refs.highmemInstanceRole) {
    ack(
      refs.highmemInstanceRole,
      'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role]',
      'The ECS container instance policy AWS Batch documents for EC2 compute environments (ECS agent registration, image pull, logs); the jobs themselves run with the job role.',
    );
  }
}
