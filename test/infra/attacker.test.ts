/**
 * Issue 11, tried as an attacker would, against the synthesized template: a recipe runs inside
 * Batch with the job role's credentials; the events Lambda can be handed a planted job id; any
 * other principal of the account may hold broad S3 rights. Every case is a request evaluated
 * against the template's own policy documents (test/infra/policy.ts), with positive controls so
 * that a test cannot pass by denying everything. Keys come from the storage layout module.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { APP_TAG } from '../../src/aws/batch-executor.js';
import { requestClaimKey, runKeys, stagedPrefix } from '../../src/run/layout.js';
import { NONCURRENT_VERSION_DAYS, OBJECT_WRITE_ACTIONS, JOB_SCRATCH } from '../../infra/stack.js';
import { allowed, bucketDenies, grantedActions, policiesOf, roleId, type Policies, type Request, type Statement } from './policy.js';
import { logicalId, resourcesOf, synth, type Synthesized } from './synth.js';

let s: Synthesized;
let p: Policies;
let bucket: string;
const roles: Record<'job' | 'events' | 'slack' | 'execution', string> = { job: '', events: '', slack: '', execution: '' };

beforeAll(() => {
  // Every optional part on: the highmem EC2 job definitions and an input bucket.
  s = synth({
    'starfish:highmemEnabled': true,
    'starfish:readonlyBuckets': ['spacetx.starfish.data.public'],
    'starfish:policy': { queues: { default: 'spot', allowed: ['spot', 'ondemand', 'highmem'] } },
  });
  bucket = logicalId(s.stack, s.stack.resultsBucket);
  p = policiesOf(s.template, bucket);
  roles.job = roleId(p, 'JobRole');
  roles.events = roleId(p, 'EventsFunctionServiceRole');
  roles.slack = roleId(p, 'SlackFunctionServiceRole');
  roles.execution = roleId(p, 'JobExecutionRole');
});

const RUN = '261125-k3f9';
const OTHER_RUN = '261125-zz99';
const object = (key: string) => `<${bucket}.Arn>/${key}`;
const as = (role: keyof typeof roles) => ({ statements: p.roles[roles[role]]!, arn: `<${roles[role]}.Arn>` });
const can = (who: { statements: Statement[]; arn: string }, action: string, resource: string, context: Request['context'] = {}) =>
  allowed(p, who.statements, { action, resource, context: { 'aws:PrincipalArn': who.arn, ...context } });

/** The control state and inputs a hostile recipe would like to change, per the storage layout. */
const TARGETS = () => {
  const mine = runKeys(RUN);
  const theirs = runKeys(OTHER_RUN);
  return {
    'its own run manifest (flip "awaiting approval" to approved)': mine.manifest,
    'another run’s manifest (a 10,000-FOV on-demand run nobody asked for)': theirs.manifest,
    'a submission claim (plant job ids for the reconciler to terminate)': theirs.claim('round-1'),
    'another run’s recipe snapshot (what its retry will run)': theirs.recipeSnapshot,
    'its own experiment snapshot': mine.experimentSnapshot,
    'a request claim': requestClaimKey('req-0001'),
    'a staged experiment other runs read': `${stagedPrefix('iss-demo')}/experiment.json`,
  };
};

describe('a recipe, with the job role’s credentials', () => {
  it.each(Object.entries(TARGETS()))('cannot write, delete, tag or version-delete %s', (_what, key) => {
    for (const action of OBJECT_WRITE_ACTIONS) expect(can(as('job'), action, object(key)), `${action} ${key}`).toBe(false);
  });

  it('can still do its work: write its outputs, read its recipe snapshot and staged experiments, delete and tag FOV tables (positive controls)', () => {
    const k = runKeys(RUN);
    expect(can(as('job'), 's3:PutObject', object(k.summaryJson))).toBe(true);
    expect(can(as('job'), 's3:PutObject', object(`${k.fovOutputs}/fov_007.csv`))).toBe(true);
    expect(can(as('job'), 's3:DeleteObject', object(k.fovErrorReason(7)))).toBe(true);
    expect(can(as('job'), 's3:PutObjectTagging', object(`${k.fovOutputs}/fov_007.csv`))).toBe(true);
    expect(can(as('job'), 's3:GetObject', object(k.recipeSnapshot))).toBe(true);
    expect(can(as('job'), 's3:GetObject', object(`${stagedPrefix('iss-demo')}/experiment.json`))).toBe(true);
  });

  it('cannot even read the manifests and claims the control plane decides from', () => {
    const k = runKeys(OTHER_RUN);
    for (const key of [k.manifest, k.claim('round-0'), requestClaimKey('req-0001')]) expect(can(as('job'), 's3:GetObject', object(key)), key).toBe(false);
  });

  it('cannot delete the merged results of a run (only FOV tables may be deleted)', () => {
    expect(can(as('job'), 's3:DeleteObject', object(runKeys(OTHER_RUN).summaryJson))).toBe(false);
    expect(can(as('job'), 's3:DeleteObjectVersion', object(runKeys(OTHER_RUN).fovErrorReason(1)))).toBe(false);
  });

  it('can overwrite another run\'s outputs: the known gap of per-run scoping (infra/README.md), made harmless by the control plane and versioning', () => {
    expect(can(as('job'), 's3:PutObject', object(runKeys(OTHER_RUN).summaryJson))).toBe(true);
  });

  it('keeps all of that even if a later change granted the job role s3:* on everything (its own Deny and the bucket policy)', () => {
    const broadened = { ...as('job'), statements: [...as('job').statements, { Effect: 'Allow' as const, Action: ['s3:*'], Resource: ['*'] }] };
    for (const key of Object.values(TARGETS())) {
      for (const action of OBJECT_WRITE_ACTIONS) expect(can(broadened, action, object(key)), `${action} ${key}`).toBe(false);
    }
  });

  it('holds no permission outside S3: no iam:PassRole, batch:SubmitJob/TerminateJob/CancelJob/TagResource, events:PutEvents, sqs, secrets, sts', () => {
    const granted = grantedActions(as('job').statements);
    expect(granted).toEqual(['s3:DeleteObject', 's3:GetObject', 's3:ListBucket', 's3:PutObject', 's3:PutObjectTagging']);
    for (const action of ['iam:PassRole', 'batch:SubmitJob', 'batch:TerminateJob', 'batch:CancelJob', 'batch:TagResource', 'events:PutEvents', 'sqs:SendMessage', 'secretsmanager:GetSecretValue', 'sts:AssumeRole']) {
      expect(granted.some((g) => new RegExp(`^${g.replace(/\*/g, '.*')}$`, 'i').test(action)), action).toBe(false);
    }
  });
});

describe('the results bucket, against any principal of the account', () => {
  const admin = () => ({ statements: [{ Effect: 'Allow' as const, Action: ['s3:*'], Resource: ['*'] }], arn: 'arn:aws:iam::123456789012:role/LabAdmin' });
  const controlState = () => [runKeys(RUN).manifest, runKeys(OTHER_RUN).claim('round-0'), runKeys(OTHER_RUN).recipeSnapshot, requestClaimKey('req-0001')];

  it('refuses writes to runs/* and requests/* from a role granted s3:* (a CI or admin role, another workload)', () => {
    for (const key of controlState()) {
      for (const action of OBJECT_WRITE_ACTIONS) expect(can(admin(), action, object(key)), `${action} ${key}`).toBe(false);
      expect(can(admin(), 's3:GetObject', object(key)), 'reading stays possible').toBe(true);
    }
  });

  it('refuses them to the job role whatever its own policy says, and lets the events Lambda write (positive control)', () => {
    for (const key of controlState()) {
      expect(bucketDenies(p, { action: 's3:PutObject', resource: object(key), context: { 'aws:PrincipalArn': as('job').arn } }), key).toBe(true);
      expect(bucketDenies(p, { action: 's3:DeleteObject', resource: object(key), context: { 'aws:PrincipalArn': as('execution').arn } }), key).toBe(true);
      expect(can(as('events'), 's3:PutObject', object(key)), key).toBe(true);
      expect(can(as('events'), 's3:DeleteObject', object(key)), key).toBe(true);
    }
  });

  it('lets the Slack Lambda past the bucket policy but not its own: it only reads runs/*', () => {
    const key = runKeys(RUN).manifest;
    expect(bucketDenies(p, { action: 's3:PutObject', resource: object(key), context: { 'aws:PrincipalArn': as('slack').arn } })).toBe(false);
    expect(can(as('slack'), 's3:PutObject', object(key))).toBe(false);
    expect(can(as('slack'), 's3:GetObject', object(key))).toBe(true);
  });

  it('lets the Slack Lambda create a request claim, never overwrite one (a reset claim would let a replay through), and write nothing else', () => {
    const claim = object(requestClaimKey('slack/5f1c0a9e'));
    const create = { 's3:if-none-match': '*' };
    expect(can(as('slack'), 's3:PutObject', claim, create)).toBe(true);
    expect(can(as('slack'), 's3:PutObject', claim)).toBe(false);
    expect(can(admin(), 's3:PutObject', claim), 'nor anyone else').toBe(false);
    expect(can(as('slack'), 's3:DeleteObject', claim)).toBe(false);
    expect(can(as('slack'), 's3:PutObject', object(requestClaimKey('req-0001')), create)).toBe(false);
    expect(can(as('job'), 's3:PutObject', claim, create)).toBe(false);
  });

  it('leaves outputs/ to IAM: the jobs write there (the bucket policy names only runs/* and requests/*)', () => {
    expect(bucketDenies(p, { action: 's3:PutObject', resource: object(runKeys(RUN).summaryJson), context: { 'aws:PrincipalArn': as('job').arn } })).toBe(false);
  });

  it('is versioned, and noncurrent versions expire so that it does not grow forever', () => {
    const props = resourcesOf(s.template, 'AWS::S3::Bucket')[bucket]!.Properties! as unknown as {
      VersioningConfiguration?: { Status: string };
      LifecycleConfiguration: { Rules: Array<{ Id: string; NoncurrentVersionExpiration?: { NoncurrentDays: number }; ExpiredObjectDeleteMarker?: boolean }> };
    };
    expect(props.VersioningConfiguration).toEqual({ Status: 'Enabled' });
    const rule = props.LifecycleConfiguration.Rules.find((r) => r.NoncurrentVersionExpiration);
    expect(rule).toMatchObject({ NoncurrentVersionExpiration: { NoncurrentDays: NONCURRENT_VERSION_DAYS }, ExpiredObjectDeleteMarker: true });
  });
});

describe('terminating Batch jobs', () => {
  const job = (id: string) => `arn:<AWS::Partition>:batch:<AWS::Region>:<AWS::AccountId>:job/${id}`;
  const ours = { [`aws:ResourceTag/${APP_TAG.key}`]: APP_TAG.value };

  it('the events Lambda may terminate a job tagged as this app’s (positive control)', () => {
    expect(can(as('events'), 'batch:TerminateJob', job('ours-0001'), ours)).toBe(true);
  });

  it.each([
    ['an untagged job of another team', {}],
    ['a job tagged for another app', { [`aws:ResourceTag/${APP_TAG.key}`]: 'someone-else' }],
    ['a job with only a starfish:run-id tag', { 'aws:ResourceTag/starfish:run-id': '261125-k3f9' }],
  ])('no principal of the stack may terminate or cancel %s', (_what, tags) => {
    for (const role of Object.keys(p.roles)) {
      const who = { statements: p.roles[role]!, arn: `<${role}.Arn>` };
      expect(can(who, 'batch:TerminateJob', job('victim-0001'), tags), `${role} TerminateJob`).toBe(false);
      expect(can(who, 'batch:CancelJob', job('victim-0001'), tags), `${role} CancelJob`).toBe(false);
    }
  });

  it('every statement that allows TerminateJob or CancelJob carries the app-tag condition', () => {
    const terminating = Object.values(p.roles)
      .flat()
      .filter((st) => st.Effect === 'Allow' && st.Action.some((a) => /^batch:(TerminateJob|CancelJob|\*)$/i.test(a)));
    expect(terminating.length).toBeGreaterThan(0);
    for (const st of terminating) expect(st.Condition).toEqual({ StringEquals: { [`aws:ResourceTag/${APP_TAG.key}`]: APP_TAG.value } });
  });

  it('tag-on-submit is limited to the app’s three tag keys and its own app value', () => {
    const submit = { 'aws:TagKeys': ['starfish:app', 'starfish:run-id', 'starfish:requester'], [`aws:RequestTag/${APP_TAG.key}`]: APP_TAG.value };
    expect(can(as('events'), 'batch:TagResource', job('new-0001'), submit)).toBe(true);
    expect(can(as('events'), 'batch:TagResource', job('new-0001'), { 'aws:TagKeys': ['Owner'] })).toBe(false);
    expect(can(as('events'), 'batch:TagResource', job('new-0001'), { ...submit, [`aws:RequestTag/${APP_TAG.key}`]: 'someone-else' })).toBe(false);
  });

  it('(the limit, documented in infra/README.md) IAM cannot tell tag-on-submit from re-tagging an existing job: stolen Lambda credentials could tag a foreign job and then terminate it', () => {
    // Batch offers no condition key that confines TagResource to SubmitJob, so this stays allowed;
    // what stops the app itself from being talked into it is the executor's check (test/aws/batch-executor.test.ts).
    expect(can(as('events'), 'batch:TagResource', job('victim-0001'), { 'aws:TagKeys': [APP_TAG.key], [`aws:RequestTag/${APP_TAG.key}`]: APP_TAG.value })).toBe(true);
  });

  it('only the events Lambda may submit jobs, pass roles or publish run events (the Slack Lambda publishes, nothing else)', () => {
    for (const [role, statements] of Object.entries(p.roles)) {
      const granted = grantedActions(statements);
      expect(granted, role).not.toContain('iam:PassRole');
      if (role !== roles.events) expect(granted, role).not.toContain('batch:SubmitJob');
      if (role !== roles.slack) expect(granted, role).not.toContain('events:PutEvents');
    }
  });
});

describe('Lambda concurrency (the public function URL has no throttle of its own)', () => {
  const fns = () => resourcesOf(s.template, 'AWS::Lambda::Function') as unknown as Record<string, { Properties: { ReservedConcurrentExecutions?: number } }>;

  it('reserves concurrency on both Lambdas, as the settings say', () => {
    expect(fns()[logicalId(s.stack, s.stack.slackFunction)]!.Properties.ReservedConcurrentExecutions).toBe(s.settings.reservedConcurrency.slack);
    expect(fns()[logicalId(s.stack, s.stack.eventsFunction)]!.Properties.ReservedConcurrentExecutions).toBe(s.settings.reservedConcurrency.events);
    expect(s.settings.reservedConcurrency).toEqual({ slack: 10, events: 10 });
  });

  it('leaves the events Lambda more than the SQS source may take at once (notifier batches), so run events still get through', () => {
    const mappings = Object.values(resourcesOf(s.template)).filter((r) => r.Type === 'AWS::Lambda::EventSourceMapping') as unknown as Array<{ Properties: { ScalingConfig?: { MaximumConcurrency: number } } }>;
    const sqsMax = Math.max(...mappings.map((m) => m.Properties.ScalingConfig?.MaximumConcurrency ?? Infinity));
    expect(sqsMax).toBe(2);
    expect(s.settings.reservedConcurrency.events!).toBeGreaterThan(sqsMax);
  });
});

describe('job containers', () => {
  interface Container {
    ReadonlyRootFilesystem?: boolean;
    Volumes?: Array<{ Name: string; Host?: unknown }>;
    MountPoints?: Array<{ ContainerPath: string; SourceVolume: string; ReadOnly?: boolean }>;
    Environment?: Array<{ Name: string; Value: string }>;
  }
  const definitions = () =>
    Object.entries(resourcesOf(s.template, 'AWS::Batch::JobDefinition')).map(([id, d]) => ({
      id,
      ec2: d.Properties!.PlatformCapabilities?.[0] === 'EC2',
      container: d.Properties!.ContainerProperties as unknown as Container,
    }));

  it('run with a read-only root filesystem, Fargate and EC2 alike: recipe code cannot change the image it runs in', () => {
    expect(definitions()).toHaveLength(4);
    for (const d of definitions()) expect(d.container.ReadonlyRootFilesystem, d.id).toBe(true);
  });

  it('get a writable scratch volume at /tmp and HOME there (tempfile, slicedimage and matplotlib caches)', () => {
    for (const { id, ec2, container } of definitions()) {
      expect(container.MountPoints, id).toEqual([{ ContainerPath: JOB_SCRATCH.path, SourceVolume: JOB_SCRATCH.volume, ReadOnly: false }]);
      // Fargate: a named volume only (Batch: `host` is not for Fargate); EC2: a Docker-managed one.
      expect(container.Volumes, id).toEqual([ec2 ? { Name: JOB_SCRATCH.volume, Host: {} } : { Name: JOB_SCRATCH.volume }]);
      expect(container.Environment, id).toContainEqual({ Name: 'HOME', Value: JOB_SCRATCH.path });
    }
  });
});
