/**
 * The public Slack endpoint as an attacker would try it: replays of a signed request, Slack's
 * retries, timestamps from the future, another workspace or app, and bodies no Slack request has.
 * Over loopback against the production handler and the real local system (one run or none), then
 * the handler alone under random input, then the app's own checks for receivers without the guard
 * (Socket Mode).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { request } from 'node:http';
import { LogLevel, type App, type Receiver } from '@slack/bolt';
import { listManifests } from '../../src/run/manifest-store.js';
import { ACTIONS } from '../../src/messages/blocks.js';
import { createHandler } from '../../src/lambda/slack.js';
import { createSlackApp } from '../../src/slack/app.js';
import { SlackChat } from '../../src/slack/slack-chat.js';
import { checkSlackRequest } from '../../src/slack/request-guard.js';
import { DirectoryStore } from '../../src/local/dir-store.js';
import { parsePolicy } from '../../src/run/policy.js';
import { passed } from '../../src/result.js';
import type { Bus } from '../../src/ports.js';
import type { RunEvent } from '../../src/run/run-events.js';
import { removeDir, tempDir } from '../helpers/local.js';
import { ALICE, APPROVER, CHANNEL, startHarness, waitFor, type Harness } from './harness.js';
import { APP_ID, BOT_TOKEN, SIGNING_SECRET, TEAM_ID, clickBody, functionUrlEvent, nowSeconds, post, signedHeaders, slashBody, type HttpResult } from './signing.js';
import { SlackStandIn } from './stand-in.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});
beforeEach(() => h.standIn.reset());

const runBody = (extra: { teamId?: string; appId?: string } = {}) =>
  slashBody({ text: `run ${h.experiment}`, userId: ALICE, channel: CHANNEL, responseUrl: h.standIn.responseUrl('endpoint'), ...extra });

const runIds = async () => new Set((await listManifests(h.system.store, 500)).map((m) => m.runId));

/** The runs started while `act` ran, once everything it set off has settled. */
async function runsStartedBy(act: () => Promise<unknown>): Promise<string[]> {
  const before = await runIds();
  await act();
  await h.system.bus.drain();
  await h.system.settle();
  return [...(await runIds())].filter((id) => !before.has(id));
}

/** Nothing reached the core: no run, no Slack call. */
async function expectNothingHappened(act: () => Promise<unknown>): Promise<void> {
  expect(await runsStartedBy(act)).toEqual([]);
  expect(h.standIn.calls).toEqual([]);
}

describe('a replayed signed request', () => {
  it('starts one run however often it is sent, at once or later, within its 5 minutes', async () => {
    const body = runBody();
    const headers = signedHeaders(body);
    let answers: HttpResult[] = [];
    const started = await runsStartedBy(async () => {
      answers.push(await post(h.url, body, headers));
      answers = [...answers, ...(await Promise.all(Array.from({ length: 5 }, () => post(h.url, body, headers))))];
      await waitFor('the run message', () => h.standIn.ok('chat.postMessage')[0]);
      answers.push(await post(h.url, body, headers));
    });
    expect(started).toHaveLength(1);
    expect(answers.map((a) => a.status)).toEqual(Array(7).fill(200));
    expect(answers[0]!.json().text).toMatch(/Reading .* to plan the run/);
    // Answered once: every replay gets an empty acknowledgement.
    expect(answers.slice(1).map((a) => a.body)).toEqual(Array(6).fill(''));
  });

  it('a replayed Approve click is taken once', async () => {
    const body = runBody();
    const [id] = await runsStartedBy(() => post(h.url, body, signedHeaders(body)));
    const click = clickBody({ actionId: ACTIONS.approve, value: id!, userId: APPROVER, channel: CHANNEL, responseUrl: h.standIn.responseUrl('c') });
    const headers = signedHeaders(click);
    h.standIn.reset();
    await Promise.all([post(h.url, click, headers), post(h.url, click, headers), post(h.url, click, headers)]);
    await h.system.bus.drain();
    await h.system.settle();
    // One approval: one answer, and no "already approved" answers for the replays.
    expect(h.standIn.ok('chat.update').filter((c) => JSON.stringify(c.body).includes('Approved by'))).not.toHaveLength(0);
    expect(h.standIn.ok('chat.postEphemeral').map((c) => c.body.text)).toEqual([`You approved run ${id}; its jobs are being submitted.`]);
    expect(h.executor.runs.filter((r) => r === id)).toHaveLength(1);
  });
});

describe("Slack's retries (X-Slack-Retry-Num)", () => {
  it('are acknowledged with an empty 200 and do no work', async () => {
    const body = runBody();
    for (const reason of ['http_timeout', 'http_error']) {
      await expectNothingHappened(async () => {
        const res = await post(h.url, body, { ...signedHeaders(body), 'x-slack-retry-num': '1', 'x-slack-retry-reason': reason });
        expect(res).toMatchObject({ status: 200, body: '' });
      });
    }
  });

  it('an unsigned "retry" is still refused 401', async () => {
    const body = runBody();
    const res = await post(h.url, body, { ...signedHeaders(body, { secret: 'forged' }), 'x-slack-retry-num': '1' });
    expect(res.status).toBe(401);
  });
});

describe('timestamps', () => {
  it('more than 5 minutes in the future: 401, nothing started', async () => {
    const body = runBody();
    await expectNothingHappened(async () => {
      expect((await post(h.url, body, signedHeaders(body, { timestamp: nowSeconds() + 6 * 60 }))).status).toBe(401);
      expect((await post(h.url, body, signedHeaders(body, { timestamp: nowSeconds() + 10 * 365 * 24 * 3600 }))).status).toBe(401);
    });
  });

  it('more than 5 minutes in the past: 401', async () => {
    const body = runBody();
    await expectNothingHappened(async () => {
      expect((await post(h.url, body, signedHeaders(body, { timestamp: nowSeconds() - 6 * 60 }))).status).toBe(401);
    });
  });

  it('within 5 minutes either way (clock skew): accepted', async () => {
    for (const skew of [-4 * 60, 4 * 60]) {
      const body = slashBody({ text: 'help', userId: ALICE, channel: CHANNEL, responseUrl: h.standIn.responseUrl('skew') });
      const res = await post(h.url, body, signedHeaders(body, { timestamp: nowSeconds() + skew }));
      expect(res.status).toBe(200);
      expect(res.json().text).toContain('/starfish run');
    }
  });
});

describe('another workspace or app, correctly signed', () => {
  it('a slash command from another team: 403, nothing started', async () => {
    const body = runBody({ teamId: 'T0ELSEWHERE' });
    await expectNothingHappened(async () => expect((await post(h.url, body, signedHeaders(body))).status).toBe(403));
  });

  it('a slash command for another app id: 403, nothing started', async () => {
    const body = runBody({ appId: 'A0IMPOSTOR' });
    await expectNothingHappened(async () => expect((await post(h.url, body, signedHeaders(body))).status).toBe(403));
  });

  it('a click from another team or app: 403, nothing decided', async () => {
    for (const other of [{ teamId: 'T0ELSEWHERE' }, { appId: 'A0IMPOSTOR' }]) {
      const body = clickBody({ actionId: ACTIONS.approve, value: '261125-abcd', userId: APPROVER, channel: CHANNEL, responseUrl: h.standIn.responseUrl('x'), ...other });
      await expectNothingHappened(async () => expect((await post(h.url, body, signedHeaders(body))).status).toBe(403));
    }
  });
});

/** One POST with any method and headers, over a fresh loopback connection. */
function send(method: string, body: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(h.url, { method, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('bodies and headers no Slack request has: 4xx, never 5xx, nothing started', () => {
  const signedAs = (body: string, contentType: string) => ({ ...signedHeaders(body), 'content-type': contentType });
  const unsigned = (contentType: string) => ({ 'content-type': contentType });
  // Events API bodies the guard takes are in views.test.ts; these are near misses of them.
  const json = JSON.stringify({ type: 'url_verification', token: 'x' });
  const event = JSON.stringify({ type: 'event_callback', team_id: TEAM_ID, api_app_id: APP_ID, event: { text: 'run' } });
  const FORM = 'application/x-www-form-urlencoded';
  const huge = `text=${'x'.repeat(1024 * 1024)}`;

  const cases: Array<[string, () => [method: string, body: string, headers: Record<string, string>], number]> = [
    ['unsigned text/plain', () => ['POST', 'hello', unsigned('text/plain')], 401],
    ['signed text/plain', () => { const b = runBody(); return ['POST', b, signedAs(b, 'text/plain')]; }, 400],
    ['unsigned JSON', () => ['POST', json, unsigned('application/json')], 401],
    ['signed JSON (url_verification without its challenge)', () => ['POST', json, signedAs(json, 'application/json')], 400],
    ['signed JSON (an Events API callback whose event has no type)', () => ['POST', event, signedAs(event, 'application/json')], 400],
    ['signed JSON sent as a form', () => ['POST', event, signedAs(event, FORM)], 400],
    ['unsigned truncated form', () => ['POST', runBody().slice(0, 60), unsigned(FORM)], 401],
    ['signed truncated form', () => { const b = runBody().slice(0, 60); return ['POST', b, signedAs(b, FORM)]; }, 400],
    ['signed truncated interaction payload', () => { const b = clickBody({ actionId: ACTIONS.approve, value: 'x', userId: ALICE, channel: CHANNEL, responseUrl: 'r' }).slice(0, 80); return ['POST', b, signedAs(b, FORM)]; }, 400],
    ['signed payload that is not JSON', () => ['POST', 'payload=%7Bnot-json', signedAs('payload=%7Bnot-json', FORM)], 400],
    ['signed payload that is JSON but no object', () => ['POST', 'payload=42', signedAs('payload=42', FORM)], 400],
    ['signed form with neither command nor payload', () => ['POST', 'team_id=T0LAB&user_id=U1', signedAs('team_id=T0LAB&user_id=U1', FORM)], 400],
    ['signed form with a field twice', () => { const b = `${runBody()}&command=%2Fother`; return ['POST', b, signedAs(b, FORM)]; }, 400],
    ['signed empty body', () => ['POST', '', signedAs('', FORM)], 400],
    ['1 MB unsigned', () => ['POST', huge, unsigned(FORM)], 413],
    ['1 MB signed', () => ['POST', huge, signedAs(huge, FORM)], 413],
    ['no signature header', () => { const b = runBody(); const { 'x-slack-signature': _, ...rest } = signedHeaders(b); return ['POST', b, rest]; }, 401],
    ['no timestamp header', () => { const b = runBody(); const { 'x-slack-request-timestamp': _, ...rest } = signedHeaders(b); return ['POST', b, rest]; }, 401],
    ['no headers at all', () => ['POST', runBody(), {}], 401],
    ['a v1 signature', () => { const b = runBody(); const s = signedHeaders(b); return ['POST', b, { ...s, 'x-slack-signature': s['x-slack-signature']!.replace('v0=', 'v1=') }]; }, 401],
    ['a timestamp that is no number', () => { const b = runBody(); return ['POST', b, { ...signedHeaders(b), 'x-slack-request-timestamp': 'soon' }]; }, 401],
    ['a signature of the wrong length', () => { const b = runBody(); return ['POST', b, { ...signedHeaders(b), 'x-slack-signature': 'v0=abc' }]; }, 401],
    ['GET', () => ['GET', '', {}], 405],
    ['PUT, signed', () => { const b = runBody(); return ['PUT', b, signedHeaders(b)]; }, 405],
  ];

  it.each(cases)('%s', async (_name, build, expected) => {
    const [method, body, headers] = build();
    await expectNothingHappened(async () => expect(await send(method, body, headers)).toBe(expected));
  });

  it('a form content type with a charset is still a form', async () => {
    const body = slashBody({ text: 'help', userId: ALICE, channel: CHANNEL, responseUrl: h.standIn.responseUrl('cs') });
    const res = await post(h.url, body, { ...signedHeaders(body), 'content-type': `${FORM}; charset=utf-8` });
    expect(res.status).toBe(200);
    expect(res.json().text).toContain('/starfish run');
  });

  it("Slack's ssl_check is answered 200 and does nothing", async () => {
    await expectNothingHappened(async () => expect(await send('POST', 'ssl_check=1&token=x', unsigned(FORM))).toBe(200));
  });
});

class RecordingBus implements Bus {
  readonly events: RunEvent[] = [];
  async publish(event: RunEvent): Promise<void> {
    this.events.push(event);
  }
}

describe('the handler under random input', () => {
  let home: string;
  let standIn: SlackStandIn;
  const bus = new RecordingBus();
  beforeAll(async () => {
    home = await tempDir('endpoint-fuzz');
    standIn = await SlackStandIn.start();
  });
  afterAll(async () => {
    await standIn.close();
    await removeDir(home);
  });

  const handler = () =>
    createHandler({
      env: { SLACK_API_URL: standIn.apiUrl, LOG_LEVEL: 'error' },
      credentials: async () => ({ signingSecret: SIGNING_SECRET, botToken: BOT_TOKEN }),
      createBackend: () => ({ dispatchDeps: { store: new DirectoryStore(home), bus, reader: { checkReadable: () => passed }, policy: parsePolicy({}, 'test'), allowPaths: false } }),
      identity: { teamId: TEAM_ID, appId: APP_ID },
    });

  const headerName = fc.constantFrom('content-type', 'Content-Type', 'x-slack-signature', 'X-Slack-Request-Timestamp', 'x-slack-request-timestamp', 'x-slack-retry-num', 'host');
  const headerValue = fc.oneof(fc.string(), fc.constantFrom('application/x-www-form-urlencoded', 'application/json', 'text/plain', `v0=${'a'.repeat(64)}`, String(nowSeconds())));
  const body = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 300 }),
    fc.constantFrom('payload=', 'payload=%7B', 'payload=%7B%22type%22%3A1%7D', 'command=/starfish', 'ssl_check=1', '{"type":"url_verification"}', '%', '&&&=', 'a=1&a=2'),
  );

  it('unsigned: every answer is 200 (ssl_check), 401, 405 or 413; nothing is thrown or published', async () => {
    const h = handler();
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('POST', 'GET', 'OPTIONS', 'post'), fc.dictionary(headerName, headerValue), body, fc.boolean(), async (method, headers, raw, base64) => {
        const res = await h(functionUrlEvent(raw, headers, base64, method));
        expect([200, 401, 405, 413]).toContain(res.statusCode);
        if (res.statusCode === 200) expect(raw).toContain('ssl_check=1');
      }),
      { numRuns: 300 },
    );
    expect(bus.events).toEqual([]);
  });

  it('signed, any content type and body: 400 or 403 unless it is a well-formed request; never a 5xx or a throw', async () => {
    const h = handler();
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('application/x-www-form-urlencoded', 'application/json', 'text/plain', 'multipart/form-data', ''), body, async (contentType, raw) => {
        const res = await h(functionUrlEvent(raw, { ...signedHeaders(raw), 'content-type': contentType }));
        expect(res.statusCode).toBeLessThan(500);
        if (res.statusCode !== 200) expect([400, 403]).toContain(res.statusCode);
      }),
      { numRuns: 300 },
    );
    expect(bus.events).toEqual([]);
  });

  it('the guard itself never throws, even on headers that are not strings', () => {
    fc.assert(
      fc.property(fc.option(fc.string()), fc.anything(), fc.string(), (method, headers, raw) => {
        const verdict = checkSlackRequest({ method: method ?? undefined, headers: headers as Record<string, string>, body: raw }, { signingSecret: SIGNING_SECRET });
        expect(['refuse', 'acknowledge']).toContain(verdict.kind);
      }),
      { numRuns: 300 },
    );
  });
});

/** A receiver that hands events straight to the app, as Socket Mode does (no HTTP, no guard in front). */
class DirectReceiver implements Receiver {
  app!: App;
  init(app: App): void {
    this.app = app;
  }
  start(): Promise<void> {
    return Promise.resolve();
  }
  stop(): Promise<void> {
    return Promise.resolve();
  }
}

describe('the app itself, behind any receiver (Socket Mode)', () => {
  let home: string;
  let standIn: SlackStandIn;
  const bus = new RecordingBus();
  const receiver = new DirectReceiver();
  beforeAll(async () => {
    home = await tempDir('endpoint-app');
    standIn = await SlackStandIn.start();
    const policy = parsePolicy({ access: { channels: [CHANNEL] } }, 'test');
    createSlackApp({
      receiver,
      token: BOT_TOKEN,
      slackApiUrl: standIn.apiUrl,
      dispatchDeps: { store: new DirectoryStore(home), bus, reader: { checkReadable: () => passed }, policy, allowPaths: false },
      chat: new SlackChat({ token: BOT_TOKEN, slackApiUrl: standIn.apiUrl }),
      identity: { teamId: TEAM_ID, appId: APP_ID },
      logLevel: LogLevel.ERROR,
    });
  });
  afterAll(async () => {
    await standIn.close();
    await removeDir(home);
  });

  /** Delivers a slash command as the receiver would; resolves with what was acknowledged. */
  async function deliver(extra: { teamId?: string; appId?: string } = {}, retryNum?: number): Promise<unknown> {
    const body = Object.fromEntries(new URLSearchParams(slashBody({ text: 'run s3://lab-data/iss/experiment.json', userId: ALICE, channel: CHANNEL, responseUrl: standIn.responseUrl('app'), ...extra })));
    let acked: unknown = 'never acknowledged';
    await receiver.app.processEvent({ body, ack: async (response?: unknown) => void (acked = response ?? ''), ...(retryNum ? { retryNum, retryReason: 'timeout' } : {}) });
    return acked;
  }

  it('runs a request of its own workspace and app', async () => {
    await deliver();
    expect(bus.events.map((e) => e.type)).toEqual(['RunRequested']);
  });

  it('acknowledges a retry (retry_attempt in Socket Mode) and does nothing', async () => {
    const before = bus.events.length;
    expect(await deliver({}, 1)).toBe('');
    expect(bus.events.length).toBe(before);
  });

  it('acknowledges and drops a request of another workspace or app', async () => {
    const before = bus.events.length;
    expect(await deliver({ teamId: 'T0ELSEWHERE' })).toBe('');
    expect(await deliver({ appId: 'A0IMPOSTOR' })).toBe('');
    expect(bus.events.length).toBe(before);
  });
});
