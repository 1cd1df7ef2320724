/**
 * The production Slack endpoint (src/lambda/slack.ts: the request guard, the replay claim, Bolt's
 * AwsLambdaReceiver and the listeners) served on 127.0.0.1 as a function URL would serve it, in
 * front of the real local system (directory store, in-process bus, launcher, notifier, process
 * executor) whose chat is SlackChat pointed at the stand-in. The only substitutions:
 * - the executor's "python" is this Node binary running two stub scripts (a FOV that succeeds,
 *   optionally holding while <home>/hold exists, or fails while <home>/fail exists; a merge that writes summary.json and spots.png),
 *   since the synthetic experiment has no images to process;
 * - a counting decorator around that executor, at the port edge, to count submissions.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ArraySpec, Executor, SubmitSpec, SubmittedJob } from '../../src/ports.js';
import { createLocalSystem, type LocalSystem } from '../../src/local/system.js';
import { parsePolicy } from '../../src/run/policy.js';
import { SlackChat, approverGroupResolver } from '../../src/slack/slack-chat.js';
import { createHandler, type SlackLambdaHandler } from '../../src/lambda/slack.js';
import type { SlackIdentity } from '../../src/slack/request-guard.js';
import { plannedOnlyExperiment, removeDir, tempDir } from '../helpers/local.js';
import { SlackStandIn } from './stand-in.js';
import { APP_ID, BOT_TOKEN, SIGNING_SECRET, TEAM_ID, clickBody, eventBody, functionUrlEvent, homeClickBody, post, postSigned, signedJsonHeaders, slashBody, viewSubmissionBody, type SubmissionOptions } from './signing.js';

/** Fast backoff for tests; 429 still waits the full Retry-After. */
export const FAST_RETRY = { retries: 3, factor: 1, minTimeout: 10, maxTimeout: 20 };

class CountingExecutor implements Executor {
  fovSubmits = 0;
  mergeSubmits = 0;
  readonly runs: string[] = [];

  constructor(private readonly inner: Executor) {}

  submitFovs(spec: SubmitSpec, array: ArraySpec): Promise<SubmittedJob> {
    this.fovSubmits++;
    this.runs.push(spec.runId);
    return this.inner.submitFovs(spec, array);
  }

  submitMerge(...args: Parameters<Executor['submitMerge']>): Promise<SubmittedJob> {
    this.mergeSubmits++;
    return this.inner.submitMerge(...args);
  }

  describe(jobIds: string[]) {
    return this.inner.describe(jobIds);
  }

  cancel(jobIds: string[], reason: string) {
    return this.inner.cancel(jobIds, reason);
  }

  failedChildren(arrayJobId: string) {
    return this.inner.failedChildren(arrayJobId);
  }

  containerTimes(jobId: string) {
    return this.inner.containerTimes(jobId);
  }

  logLink(stream: string) {
    return this.inner.logLink(stream);
  }
}

const FOV_STUB = `
import { existsSync } from 'node:fs';
import path from 'node:path';
const hold = path.resolve(process.env.STARFISH_FOV_OUTPUT, '../../../hold');
// While <home>/fail exists every FOV fails, as a recipe error would.
if (existsSync(path.resolve(hold, '../fail'))) {
  console.error('process-fov: recipe raised ValueError: no spots found');
  process.exit(1);
}
const until = Date.now() + 30000;
while (existsSync(hold) && Date.now() < until) await new Promise((r) => setTimeout(r, 25));
`;

const MERGE_STUB = `
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
const out = process.env.STARFISH_RESULTS_OUTPUT;
mkdirSync(out, { recursive: true });
const fovs = [];
// The FOV list object the launcher wrote (containers/README.md: STARFISH_FOVS_AT).
for (const part of JSON.parse(readFileSync(process.env.STARFISH_FOVS_AT, 'utf8')).fovs.split(',')) {
  const [a, b] = part.split('-').map(Number);
  for (let i = a; i <= (b ?? a); i++) fovs.push(i);
}
const perFov = Object.fromEntries(fovs.map((f) => [String(f), 10]));
writeFileSync(path.join(out, 'summary.json'), JSON.stringify({ fovs_expected: fovs.length, fovs_processed: fovs.length, fovs_missing: [], failures: {}, spots_total: 10 * fovs.length, spots_per_fov: perFov, counts_per_gene: { ACTB: 6 * fovs.length, GAPDH: 4 * fovs.length } }));
writeFileSync(path.join(out, 'spots.csv'), 'fov,x,y,gene\\n');
writeFileSync(path.join(out, 'spots.png'), Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'));
`;

export const CHANNEL = 'C0LAB00001';
export const OTHER_CHANNEL = 'C0OTHER0001';
export const ALICE = 'U0ALICE001';
export const BOB = 'U0BOB00001';
export const APPROVER = 'U0APPROVE1';
export const APPROVER2 = 'U0APPROVE2';
export const MALLORY = 'U0MALLORY1';
export const GROUPIE = 'U0GROUPIE1';
export const APPROVER_GROUP = 'S0APPROVERS';

function testPolicy(extra: { approverGroup?: string } = {}) {
  return {
    approval: { fovThreshold: 1, approvers: [APPROVER, APPROVER2], ...extra },
    access: { channels: [CHANNEL], runners: [ALICE, BOB, APPROVER, APPROVER2, GROUPIE] },
    queues: { default: 'local', allowed: ['local'] },
  };
}

export interface Harness {
  standIn: SlackStandIn;
  system: LocalSystem;
  executor: CountingExecutor;
  url: string;
  home: string;
  experiment: string;
  slash(text: string, userId: string, channel?: string): ReturnType<typeof postSigned>;
  click(actionId: string, runId: string, userId: string, channel?: string): ReturnType<typeof postSigned>;
  /** A click on a button of the App Home tab (no channel in the payload). */
  homeClick(actionId: string, runId: string, userId: string): ReturnType<typeof postSigned>;
  submit(options: SubmissionOptions): ReturnType<typeof postSigned>;
  /** An Events API callback (JSON), e.g. app_home_opened. */
  event(event: Record<string, unknown>, from?: { teamId?: string; appId?: string }): ReturnType<typeof postSigned>;
  close(): Promise<void>;
}

function readAll(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Serves a Lambda handler on loopback as a function URL does: headers lower-cased, the body base64-encoded. */
async function serveFunctionUrl(handler: SlackLambdaHandler): Promise<Server> {
  const server = createServer((req, res) => {
    readAll(req)
      .then(async (raw) => {
        const headers = Object.fromEntries(Object.entries(req.headers).flatMap(([k, v]) => (typeof v === 'string' ? [[k, v]] : [])));
        const event = functionUrlEvent(raw.toString('latin1'), headers, false, req.method ?? 'GET');
        const answer = await handler({ ...event, body: raw.toString('base64'), isBase64Encoded: true });
        res.writeHead(answer.statusCode ?? 200, answer.headers as Record<string, string> | undefined).end(answer.body ?? '');
      })
      .catch((error: unknown) => res.writeHead(502, { 'content-type': 'text/plain' }).end(`the function threw: ${String(error)}`));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

export async function startHarness(options: { policy?: unknown; fovs?: number; identity?: SlackIdentity } = {}): Promise<Harness> {
  const standIn = await SlackStandIn.start();
  const home = await tempDir('slack');
  const inputs = await tempDir('slack-inputs');
  const experiment = await plannedOnlyExperiment(inputs, options.fovs ?? 2);
  const recipe = path.join(inputs, 'recipe.py');
  await writeFile(recipe, 'def process_fov(fov_index, experiment_url):\n    return []\n');
  const fovStub = path.join(inputs, 'fov-stub.mjs');
  const mergeStub = path.join(inputs, 'merge-stub.mjs');
  await writeFile(fovStub, FOV_STUB);
  await writeFile(mergeStub, MERGE_STUB);

  const chat = new SlackChat({ token: BOT_TOKEN, slackApiUrl: standIn.apiUrl, retryConfig: FAST_RETRY });
  let executor!: CountingExecutor;
  const policy = parsePolicy({ ...(options.policy ?? testPolicy()) as object, defaultRecipe: recipe }, 'test');
  const system = createLocalSystem({
    home,
    python: process.execPath,
    chat,
    policy,
    concurrency: 4,
    scripts: { processFov: fovStub, merge: mergeStub },
    settings: { progressIntervalMs: 0, digestIntervalMs: 0 },
    ...(policy.approval.approverGroup ? { approverGroupMembers: approverGroupResolver(chat.client, policy.approval.approverGroup) } : {}),
    decorateExecutor: (inner) => (executor = new CountingExecutor(inner)),
  });

  const handler = createHandler({
    env: { SLACK_API_URL: standIn.apiUrl, LOG_LEVEL: 'error' },
    credentials: async () => ({ signingSecret: SIGNING_SECRET, botToken: BOT_TOKEN }),
    createBackend: () => ({ dispatchDeps: system.dispatchDeps }),
    identity: options.identity ?? { teamId: TEAM_ID, appId: APP_ID },
  });
  const server = await serveFunctionUrl(handler);
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/slack/events`;
  let responses = 0;

  return {
    standIn,
    system,
    executor,
    url,
    home,
    experiment,
    slash: (text, userId, channel = CHANNEL) => postSigned(url, slashBody({ text, userId, channel, responseUrl: standIn.responseUrl(++responses) })),
    click: (actionId, runId, userId, channel = CHANNEL) =>
      postSigned(url, clickBody({ actionId, value: runId, userId, channel, responseUrl: standIn.responseUrl(++responses) })),
    homeClick: (actionId, runId, userId) => postSigned(url, homeClickBody({ actionId, value: runId, userId })),
    submit: (submission) => postSigned(url, viewSubmissionBody(submission)),
    event: (event, from) => {
      const body = eventBody(event, from);
      return post(url, body, signedJsonHeaders(body));
    },
    async close() {
      await system.settle().catch(() => undefined);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await standIn.close();
      await removeDir(home);
      await removeDir(inputs);
    },
  };
}

/** A harness whose policy names APPROVER_GROUP, of which GROUPIE is the one member (usergroups.users.list on the stand-in). */
export async function startGroupHarness(): Promise<Harness> {
  const h = await startHarness({ policy: testPolicy({ approverGroup: APPROVER_GROUP }) });
  h.standIn.groups.set(APPROVER_GROUP, [GROUPIE]);
  return h;
}

/** Polls until `check` returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Everything a message carries, flattened to one string (fallback text + every block's text). */
export function textOf(body: Record<string, unknown>): string {
  return `${String(body.text ?? '')}\n${JSON.stringify(body.blocks ?? [])}`;
}
