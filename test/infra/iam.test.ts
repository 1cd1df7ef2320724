/**
 * IAM of the whole stack, with every optional part on (highmem EC2 environment, a read-only
 * dataset bucket): every statement of every AWS::IAM::Policy is walked; no wildcard action
 * anywhere, and wildcard resources only where AWS requires them or a key prefix ends in one.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { render } from './policy.js';
import { logicalId, resourcesOf, synth, type Synthesized } from './synth.js';

let s: Synthesized;
const ids: Record<string, string> = {};

beforeAll(() => {
  s = synth({
    'starfish:allowedBuckets': ['lab-data', 'lab-archive'],
    'starfish:readonlyBuckets': ['spacetx.starfish.data.public'],
    'starfish:highmemEnabled': true,
    'starfish:policy': { queues: { default: 'spot', allowed: ['spot', 'ondemand', 'highmem'] } },
  });
  ids.results = logicalId(s.stack, s.stack.resultsBucket);
});

interface Statement {
  policy: string;
  roles: string[];
  Sid?: string;
  Effect: string;
  Action: string[];
  Resource: unknown[];
  Condition?: unknown;
}

const statements = (): Statement[] =>
  Object.entries(resourcesOf(s.template, 'AWS::IAM::Policy')).flatMap(([policy, r]) =>
    r.Properties!.PolicyDocument.Statement.map((st) => ({
      policy,
      roles: r.Properties!.Roles.map((x) => x.Ref),
      ...st,
      Action: [st.Action].flat(),
      Resource: [st.Resource].flat(),
    })),
  );

/**
 * The documented exceptions. Each entry: which actions, on which resource pattern, and why.
 * Anything else with a `*` in its resource fails the test.
 */
const ALLOWED_WILDCARDS: Array<{ actions: string[]; resource: (r: string) => boolean; why: string }> = [
  {
    actions: ['batch:DescribeJobs', 'batch:ListJobs'],
    resource: (r) => r === '*',
    why: 'DescribeJobs and ListJobs have no resource-level permissions: the Service Authorization Reference lists no resource type, so Resource must be "*".',
  },
  {
    actions: ['ecr:GetAuthorizationToken'],
    resource: (r) => r === '*',
    why: 'GetAuthorizationToken has no resource-level permissions (it is account-wide); the image pull itself is scoped to the asset repository.',
  },
  {
    actions: ['batch:TagResource', 'batch:TerminateJob'],
    resource: (r) => r === 'arn:<AWS::Partition>:batch:<AWS::Region>:<AWS::AccountId>:job/*',
    why: 'Job ARNs end in the job id, known only after SubmitJob: job/* in this account and region is the narrowest form; the starfish:app tag condition says which jobs are ours (test/infra/attacker.test.ts).',
  },
  {
    actions: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject', 's3:PutObjectTagging'],
    resource: (r) =>
      ['runs/*', 'runs/*/inputs/*', 'requests/*', 'requests/slack/*', 'experiments/*', 'outputs/*', 'outputs/*/fovs/*'].map((p) => `<ResultsBucket.Arn>/${p}`).includes(r),
    why: 'Object keys under the storage layout’s prefixes (src/run/layout.ts) of this app’s own results bucket.',
  },
  {
    actions: ['s3:GetObject'],
    resource: (r) => /^arn:<AWS::Partition>:s3:::(lab-data|lab-archive|spacetx\.starfish\.data\.public)\/\*$/.test(r),
    why: 'Read-only: the objects of the input buckets the settings allow.',
  },
];

describe('IAM statements', () => {
  it('never use a wildcard action (no "*", no "service:*", no "service:Get*")', () => {
    const all = statements();
    expect(all.length).toBeGreaterThan(10);
    for (const st of all) {
      for (const action of st.Action) expect(action, `${st.policy} ${st.Sid ?? ''}`).not.toContain('*');
    }
    // The one Deny is the job role's guard on the control state and the inputs.
    expect(all.filter((st) => st.Effect !== 'Allow').map((st) => st.Sid)).toEqual(['NeverWriteControlStateOrInputs']);
  });

  it('use wildcard resources only where AWS requires them or a key prefix ends in one (allow-listed with reasons)', () => {
    const normalize = (r: string) => r.replace(`<${ids.results}.Arn>`, '<ResultsBucket.Arn>');
    const offenders: string[] = [];
    // A Deny narrows whatever it names: only what an Allow opens counts.
    for (const st of statements().filter((x) => x.Effect === 'Allow')) {
      for (const raw of st.Resource) {
        const resource = normalize(render(raw));
        if (!resource.includes('*')) continue;
        const rule = ALLOWED_WILDCARDS.find((a) => a.resource(resource) && st.Action.every((act) => a.actions.includes(act)));
        if (!rule) offenders.push(`${st.policy} ${st.Sid ?? ''}: ${st.Action.join(',')} on ${resource}`);
      }
    }
    expect(offenders).toEqual([]);
    for (const rule of ALLOWED_WILDCARDS) expect(rule.why.length).toBeGreaterThan(20);
  });

  it('attach only the managed policies that are acknowledged (basic Lambda execution, ECS container instance)', () => {
    const managed = Object.values(resourcesOf(s.template, 'AWS::IAM::Role')).flatMap((r) => (r.Properties!.ManagedPolicyArns ?? []).map(render));
    expect([...new Set(managed)].sort()).toEqual([
      'arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole',
      'arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role',
    ]);
  });
});

describe('least privilege per principal', () => {
  const actionsOf = (rolePrefix: string) => {
    const role = Object.keys(resourcesOf(s.template, 'AWS::IAM::Role')).find((id) => id.startsWith(rolePrefix));
    expect(role, rolePrefix).toBeDefined();
    // What a principal may do is what its Allows open (the job role's Deny is tested in attacker.test.ts).
    return statements().filter((st) => st.roles.includes(role!) && st.Effect === 'Allow');
  };
  const actions = (sts: Statement[]) => [...new Set(sts.flatMap((st) => st.Action))].sort();

  it('Slack Lambda: PutEvents on the bus, read runs/*, claim signed requests under requests/slack/*, list the bucket, read the secret: nothing else', () => {
    const sts = actionsOf('SlackFunctionServiceRole');
    expect(actions(sts)).toEqual(['events:PutEvents', 's3:GetObject', 's3:ListBucket', 's3:PutObject', 'secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue']);
    const claim = sts.filter((st) => st.Action.includes('s3:PutObject')).flatMap((st) => st.Resource.map(render));
    expect(claim).toEqual([`<${ids.results}.Arn>/requests/slack/*`]);
    const put = sts.find((st) => st.Action.includes('events:PutEvents'))!;
    expect(put.Resource).toEqual([{ 'Fn::GetAtt': [logicalId(s.stack, s.stack.eventBus), 'Arn'] }]);
    const get = sts.find((st) => st.Action.includes('s3:GetObject'))!;
    expect(get.Resource.map(render)).toEqual([`<${ids.results}.Arn>/runs/*`]);
  });

  it('events Lambda: SubmitJob only on this app’s job definitions and queues', () => {
    const sts = actionsOf('EventsFunctionServiceRole');
    const submit = sts.filter((st) => st.Action.includes('batch:SubmitJob'));
    expect(submit).toHaveLength(1);
    const defs = Object.keys(resourcesOf(s.template, 'AWS::Batch::JobDefinition')).map((id) => `<${id}>`);
    const queues = Object.keys(resourcesOf(s.template, 'AWS::Batch::JobQueue')).map((id) => `<${id}.JobQueueArn>`);
    expect(defs).toHaveLength(4); // process-fov and merge-results, Fargate and EC2 (highmem)
    expect(queues).toHaveLength(3);
    expect(submit[0]!.Resource.map(render).sort()).toEqual([...defs, ...queues].sort());
    expect(actions(sts)).toEqual(
      [
        'batch:DescribeJobs',
        'batch:ListJobs',
        'batch:SubmitJob',
        'batch:TagResource',
        'batch:TerminateJob',
        's3:DeleteObject',
        's3:GetObject',
        's3:ListBucket',
        's3:PutObject',
        'secretsmanager:DescribeSecret',
        'secretsmanager:GetSecretValue',
        // The Batch-event SQS source, the dead-letter replay, and the on-failure destination.
        'sqs:ChangeMessageVisibility',
        'sqs:DeleteMessage',
        'sqs:GetQueueAttributes',
        'sqs:GetQueueUrl',
        'sqs:ReceiveMessage',
        'sqs:SendMessage',
      ].sort(),
    );
    // Writes the control state, request claims and staged experiments of its own bucket, never the
    // jobs' outputs; reads those outputs (failure reasons, summaries, download links) and the input buckets.
    const writes = sts.filter((st) => st.Action.some((a) => a === 's3:PutObject' || a === 's3:DeleteObject')).flatMap((st) => st.Resource.map(render));
    expect(writes.sort()).toEqual([`<${ids.results}.Arn>/experiments/*`, `<${ids.results}.Arn>/requests/*`, `<${ids.results}.Arn>/runs/*`]);
    const reads = sts.filter((st) => st.Action.includes('s3:GetObject')).flatMap((st) => st.Resource.map(render));
    expect(reads).toEqual(
      expect.arrayContaining([
        `<${ids.results}.Arn>/runs/*`,
        `<${ids.results}.Arn>/outputs/*`,
        'arn:<AWS::Partition>:s3:::lab-data/*',
        'arn:<AWS::Partition>:s3:::lab-archive/*',
        'arn:<AWS::Partition>:s3:::spacetx.starfish.data.public/*',
      ]),
    );
    // SendMessage only to the failed-invocations queue (on-failure destination).
    const send = sts.filter((st) => st.Action.includes('sqs:SendMessage')).flatMap((st) => st.Resource.map(render));
    expect(send).toHaveLength(1);
    expect(send[0]).toMatch(/^<FailedInvocationsQueue/);
  });

  it('job role: read run inputs, staged experiments, outputs and input buckets; write outputs/* only, delete/tag only FOV tables', () => {
    const sts = actionsOf('JobRole');
    expect(actions(sts)).toEqual(['s3:DeleteObject', 's3:GetObject', 's3:ListBucket', 's3:PutObject', 's3:PutObjectTagging']);
    const put = sts.filter((st) => st.Action.includes('s3:PutObject')).flatMap((st) => st.Resource.map(render));
    expect(put).toEqual([`<${ids.results}.Arn>/outputs/*`]);
    const manage = sts.filter((st) => st.Action.includes('s3:DeleteObject')).flatMap((st) => st.Resource.map(render));
    expect(manage).toEqual([`<${ids.results}.Arn>/outputs/*/fovs/*`]);
    const read = sts.filter((st) => st.Action.includes('s3:GetObject')).flatMap((st) => st.Resource.map(render));
    expect(read.sort()).toEqual(
      [
        `<${ids.results}.Arn>/runs/*/inputs/*`,
        `<${ids.results}.Arn>/experiments/*`,
        `<${ids.results}.Arn>/outputs/*`,
        'arn:<AWS::Partition>:s3:::lab-data/*',
        'arn:<AWS::Partition>:s3:::lab-archive/*',
        'arn:<AWS::Partition>:s3:::spacetx.starfish.data.public/*',
      ].sort(),
    );
    // Nothing of the control state (manifests, claims) is writable or even readable by recipe code.
    const writable = sts.filter((st) => st.Action.some((a) => a !== 's3:GetObject' && a !== 's3:ListBucket')).flatMap((st) => st.Resource.map(render));
    expect(writable.filter((r) => !r.startsWith(`<${ids.results}.Arn>/outputs/`))).toEqual([]);
  });

  it('execution role: pull the asset images and write the job log group only', () => {
    const sts = actionsOf('JobExecutionRole');
    expect(actions(sts)).toEqual(['ecr:BatchCheckLayerAvailability', 'ecr:BatchGetImage', 'ecr:GetAuthorizationToken', 'ecr:GetDownloadUrlForLayer', 'logs:CreateLogStream', 'logs:PutLogEvents']);
    const logs = sts.find((st) => st.Action.includes('logs:PutLogEvents'))!;
    expect(logs.Resource.map(render)[0]).toMatch(/^<BatchJobLogs.*\.Arn>$/);
  });
});

describe('highmem option', () => {
  it('adds an EC2 compute environment of the configured instance types, a highmem queue and EC2 job definitions', () => {
    const envs = Object.values(resourcesOf(s.template, 'AWS::Batch::ComputeEnvironment')).map((e) => e.Properties!.ComputeResources);
    const ec2 = envs.find((e) => e.Type === 'EC2');
    expect(ec2).toMatchObject({ MinvCpus: 0, MaxvCpus: s.settings.maxVcpus.highmem, InstanceTypes: s.settings.highmemInstanceTypes, AllocationStrategy: 'BEST_FIT_PROGRESSIVE' });
    const ec2Defs = Object.values(resourcesOf(s.template, 'AWS::Batch::JobDefinition')).filter((d) => d.Properties!.PlatformCapabilities?.[0] === 'EC2');
    expect(ec2Defs).toHaveLength(2);
    s.template.hasOutput('HighmemFovJobDefinition', {});
    // The queue map the Lambdas read names all three queues.
    const fn = resourcesOf(s.template, 'AWS::Lambda::Function')[logicalId(s.stack, s.stack.eventsFunction)]!;
    const joined = fn.Properties!.Environment.Variables.STARFISH_JOB_QUEUES['Fn::Join'][1].filter((x: unknown) => typeof x === 'string').join('');
    expect(joined).toBe('{"spot":"","ondemand":"","highmem":""}');
    // …and the highmem queue runs the EC2 job definitions, not the Fargate ones.
    const defs = fn.Properties!.Environment.Variables.STARFISH_QUEUE_JOB_DEFINITIONS?.['Fn::Join'][1] ?? [];
    expect(defs.filter((x: unknown) => typeof x === 'string').join('')).toBe('{"highmem":{"fov":"","merge":""}}');
    const refs = JSON.stringify(defs.filter((x: unknown) => typeof x !== 'string'));
    for (const id of Object.keys(resourcesOf(s.template, 'AWS::Batch::JobDefinition')).filter((k) => /Highmem/.test(k))) expect(refs).toContain(id);
  });

  it('keeps cdk-nag clean with the option on', () => {
    expect(s.nag.flatMap((r) => r.violations).map((v) => v.ruleName)).toEqual([]);
  });
});
