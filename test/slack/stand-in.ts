/**
 * A Slack Web API stand-in on 127.0.0.1: answers the methods the bot calls, records every call
 * (method, parsed body, HTTP status it answered), and can fail the next N calls of a method with
 * 429 + Retry-After or 500. Also serves response_url posts and files.uploadV2's upload URL.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedCall {
  method: string;
  body: Record<string, unknown>;
  /** The HTTP status the stand-in answered with. */
  status: number;
  auth?: string | undefined;
  at: number;
}

/** A failed answer, or (`delayMs`) a correct answer that comes late, as from a Slack that hangs. */
export type Fault = { status: 429; retryAfter: number } | { status: 500 | 502 | 503 } | { status: 200; error: string } | { delayMs: number };

/** Methods whose form fields carry JSON (blocks, files) get those fields parsed back. */
const JSON_FIELDS = new Set(['blocks', 'files', 'attachments', 'view']);

export class SlackStandIn {
  readonly calls: RecordedCall[] = [];
  readonly groups = new Map<string, string[]>();
  private readonly faults = new Map<string, Fault[]>();
  private server: Server | undefined;
  private counter = 0;
  origin = '';

  static async start(): Promise<SlackStandIn> {
    const s = new SlackStandIn();
    await s.listen();
    return s;
  }

  get apiUrl(): string {
    return `${this.origin}/api/`;
  }

  responseUrl(id: string | number): string {
    return `${this.origin}/response/${id}`;
  }

  /** The next `times` calls of `method` fail with `fault`. */
  inject(method: string, fault: Fault, times = 1): void {
    this.faults.set(method, [...(this.faults.get(method) ?? []), ...Array.from({ length: times }, () => fault)]);
  }

  /** Successful calls of one method (failed attempts excluded). */
  ok(method: string): RecordedCall[] {
    return this.calls.filter((c) => c.method === method && c.status === 200);
  }

  reset(): void {
    this.calls.length = 0;
    this.faults.clear();
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async listen(): Promise<void> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(String(error));
      });
    });
    this.server.keepAliveTimeout = 1_000;
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.origin = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readBody(req);
    const url = new URL(req.url ?? '/', this.origin);
    const auth = req.headers.authorization;
    if (url.pathname.startsWith('/response/')) {
      this.record('response_url', parseJson(raw.toString('utf8')), 200, auth);
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      return;
    }
    if (url.pathname.startsWith('/upload/')) {
      this.record('upload', { file: url.pathname.slice('/upload/'.length), bytes: raw.length }, 200, auth);
      res.writeHead(200, { 'content-type': 'text/plain' }).end(`OK - ${raw.length}`);
      return;
    }
    const method = url.pathname.replace(/^\/api\//, '');
    const body = parseBody(raw, String(req.headers['content-type'] ?? ''));
    const next = this.faults.get(method)?.shift();
    if (next && 'delayMs' in next) await new Promise((resolve) => setTimeout(resolve, next.delayMs));
    const fault = next && 'status' in next ? next : undefined;
    if (fault) {
      this.record(method, body, fault.status, auth);
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (fault.status === 429) headers['retry-after'] = String(fault.retryAfter);
      // A 200 fault is a Slack API error (ok: false), such as not_in_channel.
      const error = 'error' in fault ? fault.error : fault.status === 429 ? 'ratelimited' : 'internal_error';
      res.writeHead(fault.status, headers).end(JSON.stringify({ ok: false, error }));
      return;
    }
    this.record(method, body, 200, auth);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(this.answer(method, body)));
  }

  private record(method: string, body: Record<string, unknown>, status: number, auth: string | undefined): void {
    this.calls.push({ method, body, status, auth, at: Date.now() });
  }

  private answer(method: string, body: Record<string, unknown>): Record<string, unknown> {
    const n = ++this.counter;
    const ts = `${1_700_000_000 + n}.${String(n).padStart(6, '0')}`;
    switch (method) {
      case 'chat.postMessage':
        return { ok: true, channel: body.channel, ts, message: { text: body.text } };
      case 'chat.update':
        return { ok: true, channel: body.channel, ts: body.ts, text: body.text };
      case 'chat.postEphemeral':
        return { ok: true, message_ts: ts };
      case 'files.getUploadURLExternal':
        return { ok: true, upload_url: `${this.origin}/upload/F${n}`, file_id: `F${n}` };
      case 'files.completeUploadExternal':
        return { ok: true, files: (body.files as Array<{ id: string; title?: string }> | undefined)?.map((f) => ({ id: f.id, title: f.title })) ?? [] };
      case 'usergroups.users.list': {
        const users = this.groups.get(String(body.usergroup));
        return users ? { ok: true, users } : { ok: false, error: 'no_such_subteam' };
      }
      case 'views.open':
      case 'views.publish':
        return { ok: true, view: { id: `V${n}`, hash: `${n}.hash`, ...(body.view as object) } };
      case 'auth.test':
        return { ok: true, user_id: 'UBOT', bot_id: 'BBOT', team_id: 'T0LAB' };
      default:
        return { ok: true };
    }
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function parseJson(text: string): Record<string, unknown> {
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return { raw: text };
  }
}

function parseBody(raw: Buffer, contentType: string): Record<string, unknown> {
  if (contentType.includes('application/json')) return parseJson(raw.toString('utf8'));
  if (contentType.includes('multipart/form-data')) return { multipartBytes: raw.length };
  const out: Record<string, unknown> = {};
  for (const [key, value] of new URLSearchParams(raw.toString('utf8'))) {
    out[key] = JSON_FIELDS.has(key) ? parseJson(value) : value;
  }
  return out;
}
