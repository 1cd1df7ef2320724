/**
 * A small IAM evaluator over the synthesized template, for tests written the way an attacker
 * would try: "with the job role's credentials, PutObject runs/<id>/run.json". It reads every
 * AWS::IAM::Policy attached to a role and the results bucket's AWS::S3::BucketPolicy, and
 * decides like IAM does within one account: an explicit Deny anywhere wins, otherwise an Allow
 * in the principal's own policies is needed.
 *
 * Resources and condition values are compared as rendered text (`<Logical.Attr>`, `<AWS::Region>`)
 * so that no deployment is needed. Conditions it does not know are read in the attacker's
 * favour: such an Allow is taken to apply, such a Deny not to. Condition keys missing from the
 * request follow IAM: a positive operator fails, a negated one holds, `…IfExists` and
 * `ForAllValues:` hold, `ForAnyValue:` fails.
 */
import type { Template } from 'aws-cdk-lib/assertions';
import { resourcesOf } from './synth.js';

type Values = string | string[];

export interface Statement {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Action: string[];
  Resource: string[];
  Condition?: Record<string, Record<string, Values>>;
}

export interface Request {
  action: string;
  /** The resource ARN, rendered like the template's: `<ResultsBucket….Arn>/runs/x/run.json`. */
  resource: string;
  /** Request context keys: aws:PrincipalArn, aws:ResourceTag/…, aws:RequestTag/…, aws:TagKeys. */
  context?: Record<string, Values | undefined>;
}

/** CloudFormation intrinsics as text, like cdk-nag shows them: `<Logical.Attr>`, `<Ref>`, joins inlined. */
export function render(value: unknown): string {
  if (typeof value === 'string') return value;
  const v = value as { Ref?: string; 'Fn::GetAtt'?: string[]; 'Fn::Join'?: [string, unknown[]]; 'Fn::Sub'?: string };
  if (v.Ref) return `<${v.Ref}>`;
  if (v['Fn::GetAtt']) return `<${v['Fn::GetAtt'].join('.')}>`;
  if (v['Fn::Join']) return v['Fn::Join'][1].map(render).join(v['Fn::Join'][0]);
  if (v['Fn::Sub']) return String(v['Fn::Sub']);
  return JSON.stringify(v);
}

const list = <T>(x: T | T[] | undefined): T[] => (x === undefined ? [] : Array.isArray(x) ? x : [x]);

const KNOWN_KEYS = new Set(['Sid', 'Effect', 'Action', 'Resource', 'Condition', 'Principal']);

function normalize(st: { Sid?: string; Effect: string; Action: unknown; Resource: unknown; Condition?: unknown }): Statement {
  // NotAction, NotResource, NotPrincipal would be read as matching nothing, and every "cannot"
  // against them would pass untested: this evaluator refuses what it does not understand.
  const unknown = Object.keys(st).filter((k) => !KNOWN_KEYS.has(k));
  if (unknown.length) throw new Error(`policy statement ${st.Sid ?? ''} uses ${unknown.join(', ')}, which this evaluator does not model`);
  const condition = st.Condition as Record<string, Record<string, unknown>> | undefined;
  return {
    ...(st.Sid ? { Sid: st.Sid } : {}),
    Effect: st.Effect as Statement['Effect'],
    Action: list(st.Action as string | string[]),
    Resource: list(st.Resource).map(render),
    ...(condition
      ? {
          Condition: Object.fromEntries(
            Object.entries(condition).map(([op, keys]) => [op, Object.fromEntries(Object.entries(keys).map(([k, v]) => [k, Array.isArray(v) ? v.map(render) : render(v)]))]),
          ),
        }
      : {}),
  };
}

/** IAM's `*` and `?` wildcards (in actions case-insensitively, in ARNs as written). */
function matches(pattern: string, value: string, ignoreCase = false): boolean {
  const source = pattern
    .split('')
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${source}$`, ignoreCase ? 'i' : '').test(value);
}

type Verdict = boolean | 'unknown';

const OPERATORS: Record<string, { test: (actual: string, expected: string) => boolean; negated: boolean }> = {
  StringEquals: { test: (a, e) => a === e, negated: false },
  StringNotEquals: { test: (a, e) => a === e, negated: true },
  StringLike: { test: (a, e) => matches(e, a), negated: false },
  StringNotLike: { test: (a, e) => matches(e, a), negated: true },
  ArnEquals: { test: (a, e) => a === e, negated: false },
  ArnNotEquals: { test: (a, e) => a === e, negated: true },
  ArnLike: { test: (a, e) => matches(e, a), negated: false },
  ArnNotLike: { test: (a, e) => matches(e, a), negated: true },
};

/** One `"Operator": { "key": values }` entry against the request context. */
function conditionHolds(rawOperator: string, key: string, expected: Values, context: Request['context'] = {}): Verdict {
  const [, set, base, ifExists] = /^(?:(ForAllValues|ForAnyValue):)?(.+?)(IfExists)?$/.exec(rawOperator)!;
  const actual = context[key];
  if (base === 'Null') return (actual === undefined) === (String(expected) === 'true');
  const op = OPERATORS[base!];
  if (!op) return 'unknown';
  if (actual === undefined) return Boolean(ifExists) || set === 'ForAllValues' || (op.negated && set !== 'ForAnyValue');
  const wanted = list(expected);
  const hit = (value: string) => wanted.some((e) => op.test(value, e));
  const values = list(actual);
  if (set === 'ForAllValues') return values.every((v) => (op.negated ? !hit(v) : hit(v)));
  if (set === 'ForAnyValue') return values.some((v) => (op.negated ? !hit(v) : hit(v)));
  return op.negated ? !values.some(hit) : values.some(hit);
}

/** Whether a statement applies to the request, with unknown conditions read in the attacker's favour. */
function applies(st: Statement, request: Request): boolean {
  if (!st.Action.some((a) => matches(a, request.action, true))) return false;
  if (!st.Resource.some((r) => matches(r, request.resource))) return false;
  for (const [operator, keys] of Object.entries(st.Condition ?? {})) {
    for (const [key, expected] of Object.entries(keys)) {
      const verdict = conditionHolds(operator, key, expected, request.context);
      if (verdict === 'unknown') {
        if (st.Effect === 'Deny') return false; // the attacker avoids a Deny it cannot be sure of
        continue; // …and meets an Allow's
      }
      if (!verdict) return false;
    }
  }
  return true;
}

export interface Policies {
  /** The statements of the policies attached to each role (by the role's logical id). */
  roles: Record<string, Statement[]>;
  /** The results bucket's own policy. */
  bucket: Statement[];
}

export function policiesOf(template: Template, bucketLogicalId: string): Policies {
  const roles: Record<string, Statement[]> = {};
  for (const role of Object.keys(resourcesOf(template, 'AWS::IAM::Role'))) roles[role] = [];
  for (const policy of Object.values(resourcesOf(template, 'AWS::IAM::Policy'))) {
    for (const { Ref } of policy.Properties!.Roles) roles[Ref]!.push(...policy.Properties!.PolicyDocument.Statement.map(normalize));
  }
  const bucketPolicies = Object.values(resourcesOf(template)).filter((r) => r.Type === 'AWS::S3::BucketPolicy' && (r.Properties as { Bucket: { Ref: string } }).Bucket.Ref === bucketLogicalId);
  const bucket = bucketPolicies.flatMap((r) => (r.Properties as { PolicyDocument: { Statement: Array<Parameters<typeof normalize>[0] & { Principal?: unknown }> } }).PolicyDocument.Statement)
    // Only statements for every principal decide for an arbitrary caller; the others name services (log delivery).
    .filter((st) => JSON.stringify(st.Principal) === '{"AWS":"*"}' || st.Principal === '*')
    .map(normalize);
  return { roles, bucket };
}

/** The role whose logical id starts with `prefix` (CDK appends a hash). */
export function roleId(policies: Policies, prefix: string): string {
  const found = Object.keys(policies.roles).filter((id) => id.startsWith(prefix));
  if (found.length !== 1) throw new Error(`expected one role named ${prefix}…, found ${found.join(', ') || 'none'}`);
  return found[0]!;
}

/**
 * May this principal do this? `statements` are its identity policies (a role's, or any a test
 * makes up for an outsider); the bucket policy applies to every request on the bucket.
 */
export function allowed(policies: Policies, statements: Statement[], request: Request): boolean {
  const all = [...statements, ...policies.bucket]; // the bucket's statements match only its own objects
  if (all.some((st) => st.Effect === 'Deny' && applies(st, request))) return false;
  return statements.some((st) => st.Effect === 'Allow' && applies(st, request));
}

/** Whether the bucket policy alone refuses the request, whatever the caller's own policies grant. */
export function bucketDenies(policies: Policies, request: Request): boolean {
  return policies.bucket.some((st) => st.Effect === 'Deny' && applies(st, request));
}

/** Every action a role is allowed somewhere (any resource, any condition): what it could try at all. */
export function grantedActions(statements: Statement[]): string[] {
  return [...new Set(statements.filter((st) => st.Effect === 'Allow').flatMap((st) => st.Action))].sort();
}
