/**
 * How fast Slack gets its acknowledgement, and how heavy the Slack Lambda is.
 *
 *   npx tsx bench/slack-ack.bench.ts [--requests 1000] [--cold-runs 7] [--bundle-aws-sdk]
 *
 * 1. Ack latency: the real Bolt app (HTTPReceiver on 127.0.0.1) with the real listeners and
 *    dispatch, the bus stubbed at the port (an in-memory Bus that records). N signed
 *    `/starfish run …` requests, one at a time over a keep-alive connection; time from writing
 *    the request to the end of the response. Also the same with 10 requests in flight.
 * 2. The bundled Slack Lambda (scripts/bundle-lambdas.mjs): its size, the median time to import
 *    it in a fresh Node process, and the median time of import + first invocation (a signed
 *    help request, which builds the AWS backend and Bolt app; no network call).
 * Prints one JSON line. Targets: p99 < 50 ms, cold import < 250 ms, bundle < 1 MB.
 */
import { passed } from '../src/result.js';
import { EXAMPLE_AWS_ENV } from '../test/aws/helpers.js';
import { createHmac } from 'node:crypto';
import { execFile } from 'node:child_process';
import { Agent, request } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { HTTPReceiver, LogLevel } from '@slack/bolt';
import type { Bus, Chat } from '../src/ports.js';
import type { RunEvent } from '../src/run/run-events.js';
import { DirectoryStore } from '../src/local/dir-store.js';
import { parsePolicy } from '../src/run/policy.js';
import { createSlackApp } from '../src/slack/app.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SECRET = 'bench-signing-secret';
const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const REQUESTS = arg('requests', 1000);
const COLD_RUNS = arg('cold-runs', 7);
const BUNDLE_AWS_SDK = process.argv.includes('--bundle-aws-sdk');

class RecordingBus implements Bus {
  count = 0;
  last: RunEvent | undefined;
  async publish(event: RunEvent): Promise<void> {
    this.count++;
    this.last = event;
  }
}

const nullChat: Chat = {
  post: async (channel) => ({ channel, ts: '1.1' }),
  update: async () => undefined,
  reply: async (ref) => ref,
  ephemeral: async () => undefined,
  upload: async () => undefined,
};

function signed(body: string): Record<string, string> {
  const ts = Math.floor(Date.now() / 1000);
  return {
    'content-type': 'application/x-www-form-urlencoded',
    'content-length': String(Buffer.byteLength(body)),
    'x-slack-request-timestamp': String(ts),
    'x-slack-signature': `v0=${createHmac('sha256', SECRET).update(`v0:${ts}:${body}`).digest('hex')}`,
  };
}

function slashBody(text: string, i: number): string {
  return new URLSearchParams({
    team_id: 'T0LAB',
    channel_id: 'C0LAB00001',
    user_id: 'U0ALICE001',
    user_name: 'alice',
    command: '/starfish',
    text,
    api_app_id: 'A0STARFISH',
    response_url: 'https://hooks.slack.com/commands/T0LAB/1/x',
    trigger_id: `1.${i}`,
  }).toString();
}

function once(url: URL, agent: Agent, body: string): Promise<{ ms: number; status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const headers = signed(body);
    const start = process.hrtime.bigint();
    const req = request(url, { method: 'POST', agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ ms: Number(process.hrtime.bigint() - start) / 1e6, status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
const median = (xs: number[]) => pct([...xs].sort((a, b) => a - b), 50);
const round = (x: number) => Math.round(x * 100) / 100;

async function ackLatency() {
  const home = await mkdtemp(path.join(os.tmpdir(), 'starfish-bench-slack-'));
  const bus = new RecordingBus();
  const policy = parsePolicy({ queues: { default: 'spot', allowed: ['spot'] } }, 'bench');
  const receiver = new HTTPReceiver({ signingSecret: SECRET, logLevel: LogLevel.ERROR });
  const app = createSlackApp({
    receiver,
    token: 'xoxb-bench',
    dispatchDeps: { store: new DirectoryStore(home), bus, reader: { checkReadable: () => passed }, policy, allowPaths: false },
    chat: nullChat,
    logLevel: LogLevel.ERROR,
  });
  const server = (await app.start({ port: 0, host: '127.0.0.1' })) as Server;
  const url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/slack/events`);
  const agent = new Agent({ keepAlive: true, maxSockets: 10 });
  const text = 'run s3://lab-data/iss/experiment.json fovs=0-15 name=bench';
  try {
    for (let i = 0; i < 50; i++) await once(url, agent, slashBody(text, i)); // warm-up
    const published = bus.count;
    const times: number[] = [];
    for (let i = 0; i < REQUESTS; i++) {
      const r = await once(url, agent, slashBody(text, i));
      if (r.status !== 200 || !r.text.includes('Reading s3://lab-data')) throw new Error(`unexpected answer ${r.status}: ${r.text.slice(0, 200)}`);
      times.push(r.ms);
    }
    if (bus.count - published !== REQUESTS) throw new Error(`the bus recorded ${bus.count - published} events for ${REQUESTS} requests`);
    const sorted = [...times].sort((a, b) => a - b);
    // 10 in flight: how the ack holds up under a burst.
    const burst: number[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        while (next < REQUESTS) {
          const i = next++;
          burst.push((await once(url, agent, slashBody(text, i))).ms);
        }
      }),
    );
    const burstSorted = burst.sort((a, b) => a - b);
    return {
      requests: REQUESTS,
      p50_ms: round(pct(sorted, 50)),
      p99_ms: round(pct(sorted, 99)),
      max_ms: round(sorted.at(-1)!),
      concurrent10_p50_ms: round(pct(burstSorted, 50)),
      concurrent10_p99_ms: round(pct(burstSorted, 99)),
      published: REQUESTS,
    };
  } finally {
    agent.destroy();
    server.closeAllConnections();
    await app.stop();
    await rm(home, { recursive: true, force: true });
  }
}

async function lambdaCold() {
  const { bundleLambdas } = (await import(path.join(ROOT, 'scripts/bundle-lambdas.mjs'))) as {
    bundleLambdas(o: { only?: string[]; bundleAwsSdk?: boolean; log?: (s: string) => void }): Promise<Record<string, { file: string; entryBytes: number; totalBytes: number }>>;
  };
  const built = (await bundleLambdas({ only: ['slack'], ...(BUNDLE_AWS_SDK ? { bundleAwsSdk: true } : {}), log: () => undefined })).slack;
  if (!built) throw new Error('the Slack Lambda was not bundled');
  const bundle = path.join(ROOT, built.file);
  const run = promisify(execFile);
  const env = {
    PATH: process.env.PATH ?? '',
    SLACK_SIGNING_SECRET: SECRET,
    SLACK_BOT_TOKEN: 'xoxb-bench',
    ...EXAMPLE_AWS_ENV,
    AWS_SDK_JS_SUPPRESS_NODE_VERSION_WARNING: '1',
  };
  const body = slashBody('help', 0);
  const event = { version: '2.0', rawPath: '/slack/events', routeKey: 'POST /slack/events', rawQueryString: '', headers: {}, requestContext: { http: { method: 'POST' } }, body, isBase64Encoded: false };
  const importMs: number[] = [];
  const firstRequestMs: number[] = [];
  const processMs: number[] = [];
  for (let i = 0; i < COLD_RUNS; i++) {
    const started = performance.now();
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', `const t = performance.now(); await import(${JSON.stringify(bundle)}); process.stdout.write(String(performance.now() - t));`], { env });
    processMs.push(performance.now() - started);
    importMs.push(Number(stdout));
    // import + the first invocation, with a freshly signed request
    const script = `
      import { createHmac } from 'node:crypto';
      const body = ${JSON.stringify(body)};
      const ts = Math.floor(Date.now() / 1000);
      const event = ${JSON.stringify(event)};
      event.headers = { 'content-type': 'application/x-www-form-urlencoded', 'x-slack-request-timestamp': String(ts), 'x-slack-signature': 'v0=' + createHmac('sha256', ${JSON.stringify(SECRET)}).update('v0:' + ts + ':' + body).digest('hex') };
      const t = performance.now();
      const { handler } = await import(${JSON.stringify(bundle)});
      const res = await handler(event, {});
      if (res.statusCode !== 200) throw new Error('status ' + res.statusCode);
      process.stdout.write(String(performance.now() - t));`;
    const first = await run(process.execPath, ['--input-type=module', '-e', script], { env });
    firstRequestMs.push(Number(first.stdout));
  }
  return {
    bundle: built.file,
    aws_sdk: BUNDLE_AWS_SDK ? 'bundled' : 'external (Lambda runtime)',
    entry_bytes: built.entryBytes,
    total_bytes: built.totalBytes,
    cold_import_ms_median: round(median(importMs)),
    cold_import_ms_all: importMs.map(round),
    cold_import_plus_first_request_ms_median: round(median(firstRequestMs)),
    node_process_with_import_ms_median: round(median(processMs)),
    runs: COLD_RUNS,
  };
}

const ack = await ackLatency();
const lambda = await lambdaCold();
const cpus = os.cpus();
const result = {
  bench: 'slack-ack',
  machine: { node: process.version, platform: `${os.platform()} ${os.release()}`, arch: os.arch(), cpu: cpus[0]?.model ?? 'unknown', cpus: cpus.length, memory_gb: round(os.totalmem() / 1024 ** 3), loadavg_1m_at_end: round(os.loadavg()[0]!) },
  ack,
  lambda,
  targets: {
    p99_under_50ms: ack.p99_ms < 50,
    cold_import_under_250ms: lambda.cold_import_ms_median < 250,
    bundle_under_1mb: lambda.total_bytes < 1024 * 1024,
  },
};
console.log(JSON.stringify(result));
