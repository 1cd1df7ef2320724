/**
 * The synthesized template of infra/ with cdk.json's example settings (highmem off): each
 * resource the bot needs, the exact event patterns, the Lambda environment, the Docker assets
 * staged without Docker, and cdk-nag (AwsSolutions) with every acknowledgement reasoned.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Match, type Template } from 'aws-cdk-lib/assertions';
import { App, Validations } from 'aws-cdk-lib';
import type { CfnBucket } from 'aws-cdk-lib/aws-s3';
import { INTERMEDIATE_TAG, JOB_NAME_PREFIX, REPO_ROOT, RUN_EVENT_TYPES, StarfishChatopsStack } from '../../infra/stack.js';
import { BUNDLED_RECIPE } from '../../infra/recipe.js';
import { render } from './policy.js';
import { readSettings } from '../../infra/settings.js';
import { cdkJsonContext } from '../../infra/context.js';
import { logicalId, resourcesOf, synth, type CfnProperties, type Synthesized } from './synth.js';

let s: Synthesized;
let t: Template;
const ids: Record<string, string> = {};

beforeAll(() => {
  s = synth();
  t = s.template;
  const st = s.stack;
  ids.results = logicalId(st, st.resultsBucket);
  ids.slack = logicalId(st, st.slackFunction);
  ids.events = logicalId(st, st.eventsFunction);
  ids.bus = logicalId(st, st.eventBus);
  ids.spot = logicalId(st, st.jobQueues.spot!);
  ids.ondemand = logicalId(st, st.jobQueues.ondemand!);
});

const ENV_NAMES = [
  'STARFISH_BUCKET',
  'STARFISH_ALLOWED_BUCKETS',
  'STARFISH_READONLY_BUCKETS',
  'STARFISH_EVENT_BUS',
  'STARFISH_JOB_QUEUES',
  'STARFISH_FOV_JOB_DEFINITION',
  'STARFISH_MERGE_JOB_DEFINITION',
  'STARFISH_POLICY_JSON',
  'STARFISH_SLACK_SECRET_ARN',
  'STARFISH_DLQ_URL',
  'STARFISH_LOG_GROUP',
  'STARFISH_DOWNLOAD_EXPIRY_SECONDS',
].sort();

const one = <T extends keyof CfnProperties>(type: T, predicate: (props: CfnProperties[T], id: string) => boolean = () => true) => {
  const found = Object.entries(resourcesOf(t, type)).filter(([id, r]) => r.Properties && predicate(r.Properties, id));
  expect(found, `exactly one ${type} matching`).toHaveLength(1);
  return { id: found[0]![0], props: found[0]![1].Properties! };
};

describe('results bucket', () => {
  it('is encrypted, blocks public access, and is TLS-only (1.2+)', () => {
    const { props } = one('AWS::S3::Bucket', (_p, id) => id === ids.results);
    expect(props.BucketEncryption.ServerSideEncryptionConfiguration[0]?.ServerSideEncryptionByDefault.SSEAlgorithm).toBe('AES256');
    expect(props.PublicAccessBlockConfiguration).toEqual({ BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true });
    expect(props.LoggingConfiguration.DestinationBucketName).toBeDefined();
    expect(props.VersioningConfiguration).toEqual({ Status: 'Enabled' }); // the default, and cdk.json's
    t.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: ids.results },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Action: 's3:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          Match.objectLike({ Effect: 'Deny', Action: 's3:*', Condition: { NumericLessThan: { 's3:TlsVersion': 1.2 } } }),
        ]),
      },
    });
  });

  it('expires tagged per-FOV intermediates under outputs/ after the configured days (prefix + tag: S3 filters take no wildcard)', () => {
    const { props } = one('AWS::S3::Bucket', (_p, id) => id === ids.results);
    expect(props.LifecycleConfiguration.Rules).toContainEqual({
      Id: 'ExpireFovIntermediates',
      Status: 'Enabled',
      Prefix: 'outputs/',
      TagFilters: [{ Key: INTERMEDIATE_TAG.key, Value: INTERMEDIATE_TAG.value }],
      ExpirationInDays: s.settings.intermediateRetentionDays,
    });
    // Nothing else expires but the Slack request claims (needed for minutes): manifests and results stay.
    const expiring = props.LifecycleConfiguration.Rules.filter((r) => r.ExpirationInDays !== undefined);
    expect(expiring).toEqual([
      expect.objectContaining({ Id: 'ExpireFovIntermediates' }),
      { Id: 'ExpireSlackRequestClaims', Status: 'Enabled', Prefix: 'requests/slack/', ExpirationInDays: 1 },
    ]);
  });

  it('turns versioning off when asked (and with it the noncurrent-version rule)', () => {
    const unversioned = new StarfishChatopsStack(new App({ context: { ...cdkJsonContext(), 'aws:cdk:bundling-stacks': [] } }), 'Unversioned', {
      settings: readSettings({ 'starfish:allowedBuckets': 'lab-data', 'starfish:versioning': 'false' }),
    });
    const cfn = unversioned.resultsBucket.node.defaultChild as CfnBucket;
    expect(unversioned.resolve(cfn.versioningConfiguration)).toBeUndefined();
    expect(JSON.stringify(unversioned.resolve(cfn.lifecycleConfiguration))).not.toContain('noncurrentVersionExpiration');
  });
});

describe('Slack secret', () => {
  it('is generated from a placeholder template: no secret value in the template or the environment', () => {
    const { props } = one('AWS::SecretsManager::Secret');
    expect(props.SecretString).toBeUndefined();
    expect(props.GenerateSecretString.GenerateStringKey).toBe('signingSecret');
    expect(JSON.parse(props.GenerateSecretString.SecretStringTemplate)).toEqual({ botToken: 'xoxb-REPLACE-ME' });
    for (const fn of Object.values(resourcesOf(t, 'AWS::Lambda::Function'))) {
      const vars = JSON.stringify(fn.Properties?.Environment ?? {});
      expect(vars).not.toMatch(/xoxb-|signingSecret|SLACK_SIGNING_SECRET|SLACK_BOT_TOKEN/);
    }
  });
});

describe('Lambdas', () => {
  it('deploy the bundle scripts/bundle-lambdas.mjs builds: the Slack one under 1 MB', () => {
    const { props } = one('AWS::Lambda::Function', (_p, lid) => lid === ids.slack);
    const key = JSON.stringify(props.Code).match(/([0-9a-f]{64})\.zip/)?.[1];
    expect(key).toBeDefined();
    const dir = path.join(s.outdir, `asset.${key}`);
    expect(existsSync(path.join(dir, 'index.mjs'))).toBe(true);
    const size = (d: string): number => readdirSync(d, { withFileTypes: true }).reduce((n, e) => n + (e.isDirectory() ? size(path.join(d, e.name)) : readFileSync(path.join(d, e.name)).length), 0);
    expect(size(dir)).toBeLessThan(1024 * 1024);
  });

  it('are bundled inside the synth’s output directory, so nothing is left in the system temp directory', () => {
    const bundles = readdirSync(s.outdir).filter((name) => name.startsWith('bundle-')).sort();
    expect(bundles).toEqual(['bundle-events', 'bundle-slack']);
    expect(existsSync(path.join(s.outdir, 'bundle-slack', 'slack', 'index.mjs'))).toBe(true);
  });

  it('are Node.js 22 on arm64 with exactly the STARFISH_* environment', () => {
    for (const id of [ids.slack, ids.events]) {
      const { props } = one('AWS::Lambda::Function', (_p, lid) => lid === id);
      expect(props.Runtime).toBe('nodejs22.x');
      expect(props.Architectures).toEqual(['arm64']);
      expect(props.Handler).toBe('index.handler');
      const vars = props.Environment.Variables;
      expect(Object.keys(vars).sort()).toEqual(ENV_NAMES);
      expect(vars.STARFISH_BUCKET).toEqual({ Ref: ids.results });
      expect(vars.STARFISH_ALLOWED_BUCKETS).toBe(s.settings.allowedBuckets.join(','));
      expect(vars.STARFISH_READONLY_BUCKETS).toBe(s.settings.readonlyBuckets.join(','));
      expect(vars.STARFISH_EVENT_BUS).toEqual({ Ref: ids.bus });
      // cdk.json's example policy names no defaultRecipe: the deployed one is the bundled recipe.
      expect(JSON.parse(render(vars.STARFISH_POLICY_JSON))).toEqual({ ...s.settings.policy, defaultRecipe: `s3://<${ids.results}>/${BUNDLED_RECIPE.key}` });
      expect(vars.STARFISH_DOWNLOAD_EXPIRY_SECONDS).toBe(String(s.settings.downloadExpirySeconds));
      expect(vars.STARFISH_SLACK_SECRET_ARN).toEqual({ Ref: one('AWS::SecretsManager::Secret').id });
      // STARFISH_JOB_QUEUES renders as JSON {"spot": <arn>, "ondemand": <arn>}.
      const joined = vars.STARFISH_JOB_QUEUES['Fn::Join'][1];
      expect(joined).toEqual([
        '{"spot":"',
        { 'Fn::GetAtt': [ids.spot, 'JobQueueArn'] },
        '","ondemand":"',
        { 'Fn::GetAtt': [ids.ondemand, 'JobQueueArn'] },
        '"}',
      ]);
      const fov = one('AWS::Batch::JobDefinition', (p) => p.ContainerProperties.ResourceRequirements.some((r) => r.Type === 'VCPU' && r.Value === String(s.settings.fovJob.vcpus)) && p.Timeout.AttemptDurationSeconds === 14400);
      expect(vars.STARFISH_FOV_JOB_DEFINITION).toEqual({ Ref: fov.id });
      const logs = one('AWS::Logs::LogGroup', (p) => p.LogGroupName === '/aws/batch/StarfishTest');
      expect(vars.STARFISH_LOG_GROUP).toEqual({ Ref: logs.id });
      const dlq = one('AWS::SQS::Queue', (_p, lid) => lid.startsWith('BatchEventsDeadLetterQueue'));
      expect(vars.STARFISH_DLQ_URL).toEqual({ Ref: dlq.id });
    }
  });

  it('keep their own logs with the configured retention', () => {
    for (const id of [ids.slack, ids.events]) {
      const { props } = one('AWS::Lambda::Function', (_p, lid) => lid === id);
      const group = resourcesOf(t, 'AWS::Logs::LogGroup')[props.LoggingConfig.LogGroup.Ref]!;
      expect(group.Properties!.RetentionInDays).toBe(s.settings.logRetentionDays);
    }
  });

  it('exposes the Slack Lambda through a Function URL with authType NONE (Slack signs its requests)', () => {
    t.hasResourceProperties('AWS::Lambda::Url', { AuthType: 'NONE', TargetFunctionArn: { 'Fn::GetAtt': [ids.slack, 'Arn'] } });
    t.resourceCountIs('AWS::Lambda::Url', 1);
    t.hasOutput('SlackRequestUrl', { Value: { 'Fn::GetAtt': [Match.stringLikeRegexp('^SlackFunctionFunctionUrl'), 'FunctionUrl'] } });
  });
});

describe('events', () => {
  it('routes run events (source starfish.chatops) from the custom bus to the events Lambda', () => {
    t.resourceCountIs('AWS::Events::EventBus', 1);
    t.hasResourceProperties('AWS::Events::Rule', {
      EventBusName: { Ref: ids.bus },
      EventPattern: { source: ['starfish.chatops'], 'detail-type': [...RUN_EVENT_TYPES] },
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [ids.events, 'Arn'] }, DeadLetterConfig: Match.anyValue() })],
    });
    expect([...RUN_EVENT_TYPES]).toEqual(['RunRequested', 'RunApproved', 'RunRejected', 'RunCancelled', 'RunRetryRequested', 'StageRequested']);
  });

  it('filters Batch job state changes on the default bus: our queues, starfish- names, parents/plain jobs any status, children only FAILED', () => {
    const rule = one('AWS::Events::Rule', (p) => p.EventPattern?.source?.[0] === 'aws.batch');
    expect(rule.props.EventBusName).toBeUndefined(); // the default bus
    expect(rule.props.EventPattern).toEqual({
      source: ['aws.batch'],
      'detail-type': ['Batch Job State Change'],
      detail: {
        jobQueue: [{ 'Fn::GetAtt': [ids.spot, 'JobQueueArn'] }, { 'Fn::GetAtt': [ids.ondemand, 'JobQueueArn'] }],
        jobName: [{ prefix: JOB_NAME_PREFIX }],
        $or: [{ arrayProperties: { index: [{ exists: false }] } }, { status: ['FAILED'] }],
      },
    });
    expect(JOB_NAME_PREFIX).toBe('starfish-');
    const queue = one('AWS::SQS::Queue', (_p, id) => id.startsWith('BatchEventsQueue'));
    expect(rule.props.Targets).toEqual([expect.objectContaining({ Arn: { 'Fn::GetAtt': [queue.id, 'Arn'] } })]);
  });

  it('delivers Batch events through an encrypted, TLS-only queue with a DLQ, in batches of 100 with a 30 s window and partial failures', () => {
    const queue = one('AWS::SQS::Queue', (_p, id) => id.startsWith('BatchEventsQueue'));
    const dlq = one('AWS::SQS::Queue', (_p, id) => id.startsWith('BatchEventsDeadLetterQueue'));
    expect(queue.props.SqsManagedSseEnabled).toBe(true);
    expect(queue.props.RedrivePolicy).toEqual({ deadLetterTargetArn: { 'Fn::GetAtt': [dlq.id, 'Arn'] }, maxReceiveCount: 5 });
    // At least 6x the function timeout (900 s).
    expect(queue.props.VisibilityTimeout).toBeGreaterThanOrEqual(6 * 900);
    t.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: { 'Fn::GetAtt': [queue.id, 'Arn'] },
      FunctionName: { Ref: ids.events },
      BatchSize: 100,
      MaximumBatchingWindowInSeconds: 30,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
    for (const [id, q] of Object.entries(resourcesOf(t, 'AWS::SQS::Queue'))) {
      expect(q.Properties!.SqsManagedSseEnabled, id).toBe(true);
      t.hasResourceProperties('AWS::SQS::QueuePolicy', {
        Queues: [{ Ref: id }],
        PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
      });
    }
  });

  it('runs the reconciler every 5 minutes', () => {
    t.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(5 minutes)',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [ids.events, 'Arn'] } })],
    });
  });
});

describe('issue 11 settings: https hosts and the Slack ids', () => {
  const jobEnvironments = (template: Template) =>
    Object.values(resourcesOf(template, 'AWS::Batch::JobDefinition')).map((d) => Object.fromEntries((d.Properties!.ContainerProperties.Environment ?? []).map((e) => [e.Name, e.Value])));

  it('are not set by default: no variable on the Lambdas (cdk.json shows them as null), the jobs get only HOME', () => {
    expect([s.settings.httpsHosts, s.settings.slackTeamId, s.settings.slackAppId]).toEqual([undefined, undefined, undefined]);
    for (const env of jobEnvironments(t)) expect(env).toEqual({ HOME: '/tmp' });
  });

  it('reach both Lambdas (STARFISH_HTTPS_HOSTS, SLACK_TEAM_ID, SLACK_APP_ID) and every job definition (STARFISH_HTTPS_HOSTS), EC2 ones included', () => {
    const set = synth({
      'starfish:httpsHosts': ['Data.Lab.org', '*.spacetx.org'],
      'starfish:slackTeamId': 'T0123ABCD',
      'starfish:slackAppId': 'A0123ABCD',
      'starfish:highmemEnabled': true,
      'starfish:policy': { queues: { default: 'spot', allowed: ['spot', 'highmem'] } },
    });
    const functions = resourcesOf(set.template, 'AWS::Lambda::Function');
    for (const fn of [set.stack.slackFunction, set.stack.eventsFunction]) {
      const vars = functions[logicalId(set.stack, fn)]!.Properties!.Environment.Variables;
      expect(Object.keys(vars).sort()).toEqual([...ENV_NAMES, 'SLACK_APP_ID', 'SLACK_TEAM_ID', 'STARFISH_HTTPS_HOSTS', 'STARFISH_QUEUE_JOB_DEFINITIONS'].sort());
      expect(vars).toMatchObject({ STARFISH_HTTPS_HOSTS: 'data.lab.org,*.spacetx.org', SLACK_TEAM_ID: 'T0123ABCD', SLACK_APP_ID: 'A0123ABCD' });
    }
    const jobs = jobEnvironments(set.template);
    expect(jobs).toHaveLength(4);
    for (const env of jobs) expect(env).toEqual({ HOME: '/tmp', STARFISH_HTTPS_HOSTS: 'data.lab.org,*.spacetx.org' });
  });
});

describe('AWS Batch', () => {
  it('has a Fargate Spot and a Fargate on-demand environment sized from the settings, and no EC2 one by default', () => {
    const envs = Object.values(resourcesOf(t, 'AWS::Batch::ComputeEnvironment')).map((e) => e.Properties!.ComputeResources);
    expect(envs.map((e) => [e.Type, e.MaxvCpus]).sort()).toEqual([
      ['FARGATE', s.settings.maxVcpus.ondemand],
      ['FARGATE_SPOT', s.settings.maxVcpus.spot],
    ]);
    t.resourceCountIs('AWS::Batch::JobQueue', 2);
  });

  it('defines process-fov and merge-results on Fargate from image assets, logging to the stack log group', () => {
    const logs = one('AWS::Logs::LogGroup', (p) => p.LogGroupName === '/aws/batch/StarfishTest');
    expect(logs.props.RetentionInDays).toBe(s.settings.logRetentionDays);
    const defs = Object.values(resourcesOf(t, 'AWS::Batch::JobDefinition')).map((d) => d.Properties!);
    expect(defs).toHaveLength(2);
    for (const d of defs) {
      expect(d.PlatformCapabilities).toEqual(['FARGATE']);
      expect(d.PropagateTags).toBe(true);
      const c = d.ContainerProperties;
      expect(c.Image['Fn::Sub']).toMatch(/container-assets-\$\{AWS::AccountId\}-\$\{AWS::Region\}:[0-9a-f]{64}$/);
      expect(c.LogConfiguration).toEqual({
        LogDriver: 'awslogs',
        Options: { 'awslogs-group': { Ref: logs.id }, 'awslogs-stream-prefix': 'starfish', 'awslogs-region': { Ref: 'AWS::Region' } },
      });
      expect(c.JobRoleArn['Fn::GetAtt'][0]).toMatch(/^JobRole/);
      expect(c.ExecutionRoleArn['Fn::GetAtt'][0]).toMatch(/^JobExecutionRole/);
      expect(c.NetworkConfiguration).toEqual({ AssignPublicIp: 'ENABLED' }); // natGateways=0: public subnets, no inbound rules
    }
    const sizes = defs.map((d) => Object.fromEntries(d.ContainerProperties.ResourceRequirements.map((r) => [r.Type, Number(r.Value)])));
    expect(sizes).toContainEqual({ VCPU: s.settings.fovJob.vcpus, MEMORY: s.settings.fovJob.memoryMiB });
    expect(sizes).toContainEqual({ VCPU: s.settings.mergeJob.vcpus, MEMORY: s.settings.mergeJob.memoryMiB });
  });

  it('stages the two Docker contexts into cdk.out without building them (only the files the Dockerfiles COPY)', () => {
    const manifest = JSON.parse(readFileSync(path.join(s.outdir, `${s.stack.artifactId}.assets.json`), 'utf8'));
    const images = Object.values(manifest.dockerImages) as Array<{ source: { directory: string; dockerFile: string; platform?: string } }>;
    expect(images.map((i) => i.source.dockerFile).sort()).toEqual(['containers/merge-results/Dockerfile', 'containers/process-fov/Dockerfile']);
    for (const image of images) {
      expect(image.source.platform).toBe('linux/amd64');
      const dir = path.join(s.outdir, image.source.directory);
      const files = readdirSync(dir, { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
        .sort();
      const name = image.source.dockerFile.split('/')[1]!;
      // process-fov checks the experiment (spacetx.py) before it runs a recipe; the merge reads none.
      const shared = name === 'process-fov' ? ['containers/common/starfish_io.py', 'containers/common/spacetx.py'] : ['containers/common/starfish_io.py'];
      const script = name === 'process-fov' ? 'process_fov.py' : 'merge_results.py';
      // …and process-fov carries the bundled default recipe (infra/recipe.ts), byte for byte.
      const bundled = name === 'process-fov' ? [BUNDLED_RECIPE.source] : [];
      expect(files).toEqual([`containers/${name}/Dockerfile`, ...shared, `containers/${name}/${script}`, ...bundled].sort());
      for (const file of bundled) expect(readFileSync(path.join(dir, file)).equals(readFileSync(path.join(REPO_ROOT, file)))).toBe(true);
      expect(existsSync(path.join(dir, 'node_modules'))).toBe(false);
    }
  });
});

describe('cdk-nag', () => {
  it('finds no unacknowledged AwsSolutions error (nor the Function URL rule)', () => {
    const errors = s.nag.flatMap((r) => r.violations).filter((v) => v.severity === 'error');
    expect(errors.map((v) => `${v.ruleName} at ${v.violatingResources.map((r) => r.constructPath).join(', ')}`)).toEqual([]);
  });

  it('finds no unacknowledged warning either', () => {
    const warnings = s.nag.flatMap((r) => r.violations).filter((v) => v.severity !== 'error');
    expect(warnings.map((v) => v.ruleName)).toEqual([]);
  });

  it('gives every acknowledgement a reason of at least 10 characters (construct tree and template metadata)', () => {
    const acks: Array<[string, string, unknown]> = [];
    const visit = (c: import('constructs').IConstruct) => {
      for (const m of c.node.metadata) {
        if (m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY) for (const [id, reason] of Object.entries(m.data as object)) acks.push([c.node.path, id, reason]);
      }
      c.node.children.forEach(visit);
    };
    visit(s.app);
    expect(acks.length).toBeGreaterThan(10);
    for (const [where, id, reason] of acks) expect(typeof reason === 'string' && reason.trim().length >= 10, `${id} at ${where}`).toBe(true);

    const inTemplate = Object.values(resourcesOf(t)).flatMap((r) => r.Metadata?.cdk_nag?.rules_to_suppress ?? []);
    expect(inTemplate.length).toBeGreaterThan(0);
    for (const rule of inTemplate) expect(String(rule.reason ?? '').trim().length, rule.id).toBeGreaterThanOrEqual(10);
    // The deliberate public Function URL is acknowledged with its reason.
    const url = Object.values(resourcesOf(t, 'AWS::Lambda::Url'))[0]!;
    const ack = url.Metadata?.cdk_nag?.rules_to_suppress?.find((r) => r.id === 'Starfish-LambdaFunctionUrlAuth');
    expect(ack?.reason).toMatch(/sign/);
  });
});

describe('handler entries', () => {
  it('fail synthesis with a message naming the missing file', () => {
    expect(
      () =>
        new StarfishChatopsStack(new App({ context: { ...cdkJsonContext(), 'aws:cdk:bundling-stacks': [] } }), 'Missing', {
          settings: readSettings({ 'starfish:allowedBuckets': 'lab-data' }),
          entries: { events: 'src/lambda/no-such-handler.ts' },
        }),
    ).toThrow(/Lambda entry src\/lambda\/no-such-handler\.ts does not exist/);
  });
});
