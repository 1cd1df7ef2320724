/**
 * The checks every request to the public Slack endpoint passes before Bolt sees it
 * (https://api.slack.com/authentication/verifying-requests-from-slack). Bolt's receivers verify the
 * v0 signature too, but accept timestamps from the future, and AwsLambdaReceiver parses the body
 * before it verifies anything, so that an unsigned text/plain or truncated body throws (a 5xx).
 * Here, in this order, and without throwing:
 *
 * 1. POST only (405); a body of at most `maxBodyBytes` (413);
 * 2. X-Slack-Signature (v0=<64 hex>) and X-Slack-Request-Timestamp (whole seconds) present, the
 *    timestamp within 5 minutes of now in either direction, the HMAC-SHA256 equal (401);
 * 3. a retry (X-Slack-Retry-Num) is acknowledged with an empty 200 and not forwarded: the first
 *    delivery does the work (https://api.slack.com/apis/connections/events-api#retries);
 * 4. application/x-www-form-urlencoded, each field once, and either a slash command
 *    (command, team_id, channel_id, user_id) or `payload` holding a JSON object with a type; or
 *    application/json holding an Events API callback (event_callback with team_id, api_app_id
 *    and an event; the App Home tab's app_home_opened) or the url_verification handshake Slack
 *    sends when the events URL is set (400);
 * 5. team and app ids equal to the configured ones, when configured (403).
 *
 * Slack's `ssl_check=1` probe (unsigned, no work) is answered 200 as Bolt does. A request that
 * passes is then claimed once by its signature (`claimSlackRequest`): the same signed request
 * replayed within its 5 minutes is answered once.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { Store } from '../ports.js';
import { slackRequestClaimKey } from '../run/layout.js';

/** The workspace and Slack app this deployment serves; unset fields are not checked. */
export interface SlackIdentity {
  /** The workspace's team id, T…: requests from any other workspace are refused. */
  teamId?: string | undefined;
  /** The Slack app's id, A… (Basic Information → App ID): requests for any other app are refused. */
  appId?: string | undefined;
}

export interface GuardOptions {
  signingSecret: string;
  identity?: SlackIdentity;
  /** Default 256 KiB: a click carries the message it was on, and ours stay far below this. */
  maxBodyBytes?: number;
}

export interface SlackHttpRequest {
  method: string | undefined;
  /** Header names in any case. */
  headers: Readonly<Record<string, string | undefined>> | undefined;
  /** The body as text (already decoded from base64 where the platform encodes it). */
  body: string;
}

export type Verdict =
  | { kind: 'refuse'; status: 400 | 401 | 403 | 405 | 413; reason: string }
  /** Answered 200 with an empty body and not processed: a retry, or Slack's SSL check. */
  | { kind: 'acknowledge'; reason: string }
  | { kind: 'accept'; signature: string; timestamp: string; body: string; contentType: typeof SLACK_FORM | typeof SLACK_JSON };

export const SLACK_FORM = 'application/x-www-form-urlencoded';
const SLACK_JSON = 'application/json';
const MAX_SKEW_SECONDS = 5 * 60;
const DEFAULT_MAX_BODY = 256 * 1024;
const SIGNATURE = /^v0=[0-9a-f]{64}$/;
const TIMESTAMP = /^\d{1,12}$/;
const TEAM_ID = /^[TE][A-Z0-9]{2,}$/;
const APP_ID = /^A[A-Z0-9]{2,}$/;

const refuse = (status: 400 | 401 | 403 | 405 | 413, reason: string): Verdict => ({ kind: 'refuse', status, reason });

/** Refuses identity settings that cannot be a team or app id, so a typo does not turn the check off. */
export function checkIdentity(identity: SlackIdentity = {}): string | undefined {
  if (identity.teamId !== undefined && !TEAM_ID.test(identity.teamId)) return `the Slack team id must look like T0123ABCD (got "${identity.teamId}")`;
  if (identity.appId !== undefined && !APP_ID.test(identity.appId)) return `the Slack app id must look like A0123ABCD (got "${identity.appId}")`;
  return undefined;
}

function lowerCased(headers: SlackHttpRequest['headers']): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, value] of Object.entries(headers ?? {})) if (typeof value === 'string') out.set(name.toLowerCase(), value);
  return out;
}

/** The v0 signature over `v0:<timestamp>:<body>`, compared in constant time. */
function signatureProblem(headers: Map<string, string>, body: string, secret: string, nowSeconds: number): string | undefined {
  const signature = headers.get('x-slack-signature');
  const stamp = headers.get('x-slack-request-timestamp');
  if (!signature || !SIGNATURE.test(signature)) return 'no v0 signature';
  if (!stamp || !TIMESTAMP.test(stamp)) return 'no request timestamp';
  const skew = Number(stamp) - nowSeconds;
  if (skew < -MAX_SKEW_SECONDS) return `timestamp ${-skew} s in the past`;
  if (skew > MAX_SKEW_SECONDS) return `timestamp ${skew} s in the future`;
  const expected = createHmac('sha256', secret).update(`v0:${stamp}:${body}`).digest();
  const given = Buffer.from(signature.slice(3), 'hex');
  return timingSafeEqual(expected, given) ? undefined : 'signature mismatch';
}

const mediaType = (contentType: string | undefined) => (contentType ?? '').split(';')[0]!.trim().toLowerCase();

/** Form fields, each exactly once (a repeated field is how a body smuggles a second value). */
function formFields(body: string): Map<string, string> | undefined {
  const fields = new Map<string, string>();
  for (const [key, value] of new URLSearchParams(body)) {
    if (fields.has(key)) return undefined;
    fields.set(key, value);
  }
  return fields;
}

const slashCommandSchema = z.object({
  command: z.string().startsWith('/'),
  team_id: z.string().min(1),
  channel_id: z.string().min(1),
  user_id: z.string().min(1),
  api_app_id: z.string().optional(),
});

const interactionSchema = z.object({
  type: z.string().min(1),
  team: z.object({ id: z.string() }).nullish(),
  user: z.object({ team_id: z.string().optional() }).partial().optional(),
  api_app_id: z.string().optional(),
});

/** An Events API request (https://docs.slack.dev/apis/events-api/): a callback, or the URL handshake. */
const eventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('event_callback'), team_id: z.string().min(1), api_app_id: z.string().min(1), event: z.object({ type: z.string().min(1) }) }),
  // The handshake answers the challenge and does nothing else; it carries no team or app id.
  z.object({ type: z.literal('url_verification'), challenge: z.string().min(1).max(200) }),
]);

/** JSON text read with a schema; undefined when it is not JSON or not of that shape. */
function parseJsonAs<T>(text: string, schema: z.ZodType<T>): T | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  return schema.safeParse(parsed).data;
}

/** Who an Events API body says it is from; 'handshake' for url_verification; undefined if malformed. */
function eventSender(body: string): Sender | 'handshake' | undefined {
  const event = parseJsonAs(body, eventSchema);
  if (!event) return undefined;
  return event.type === 'url_verification' ? 'handshake' : { teamId: event.team_id, appId: event.api_app_id };
}

interface Sender {
  teamId: string | undefined;
  appId: string | undefined;
}

/** Who a well-formed request says it is from; undefined for anything else. */
function senderOf(fields: Map<string, string>): Sender | undefined {
  const payload = fields.get('payload');
  if (payload !== undefined) {
    const interaction = parseJsonAs(payload, interactionSchema);
    if (!interaction) return undefined;
    return { teamId: interaction.team?.id ?? interaction.user?.team_id, appId: interaction.api_app_id };
  }
  const command = slashCommandSchema.safeParse(Object.fromEntries(fields));
  return command.success ? { teamId: command.data.team_id, appId: command.data.api_app_id } : undefined;
}

/** Whether a request's team and app are the configured ones; used here and by the app's authorize. */
export function identityProblem(sender: Sender, expected: SlackIdentity = {}): string | undefined {
  if (expected.teamId && sender.teamId !== expected.teamId) return `team ${sender.teamId ?? '(none)'} is not this deployment's workspace`;
  if (expected.appId && sender.appId !== expected.appId) return `app ${sender.appId ?? '(none)'} is not this deployment's Slack app`;
  return undefined;
}

/** Slack's SSL check: unsigned, and nothing to do but answer 200. */
const isSslCheck = (body: string, headers: Map<string, string>) => mediaType(headers.get('content-type')) === SLACK_FORM && formFields(body)?.get('ssl_check') === '1';

/** Everything after the signature: retries, the content type, the body's shape, the sender. */
function checkContent(headers: Map<string, string>, body: string, identity: SlackIdentity | undefined): Verdict | undefined {
  const retry = headers.get('x-slack-retry-num');
  if (retry !== undefined) return { kind: 'acknowledge', reason: `retry ${retry} (${headers.get('x-slack-retry-reason') ?? 'no reason given'}) acknowledged without doing the work again` };
  const type = mediaType(headers.get('content-type'));
  if (type === SLACK_JSON) {
    const sender = eventSender(body);
    if (!sender) return refuse(400, 'the JSON body is not an Events API callback or url_verification');
    const stranger = sender === 'handshake' ? undefined : identityProblem(sender, identity);
    return stranger ? refuse(403, stranger) : undefined;
  }
  if (type !== SLACK_FORM) return refuse(400, `content type ${type || '(none)'} is not ${SLACK_FORM} or ${SLACK_JSON}`);
  const fields = formFields(body);
  if (!fields) return refuse(400, 'a form field appears more than once');
  const sender = senderOf(fields);
  if (!sender) return refuse(400, 'the body is neither a slash command nor an interaction payload');
  const stranger = identityProblem(sender, identity);
  return stranger ? refuse(403, stranger) : undefined;
}

/** The verdict on one request; never throws. */
export function checkSlackRequest(request: SlackHttpRequest, options: GuardOptions, nowMs: number = Date.now()): Verdict {
  if ((request.method ?? '').toUpperCase() !== 'POST') return refuse(405, `method ${request.method ?? '(none)'}`);
  const limit = options.maxBodyBytes ?? DEFAULT_MAX_BODY;
  if (Buffer.byteLength(request.body) > limit) return refuse(413, `body larger than ${limit} bytes`);
  const headers = lowerCased(request.headers);
  if (isSslCheck(request.body, headers)) return { kind: 'acknowledge', reason: 'ssl_check' };
  const unsigned = signatureProblem(headers, request.body, options.signingSecret, Math.floor(nowMs / 1000));
  if (unsigned) return refuse(401, unsigned);
  const refused = checkContent(headers, request.body, options.identity);
  if (refused) return refused;
  const contentType = mediaType(headers.get('content-type')) === SLACK_JSON ? SLACK_JSON : SLACK_FORM;
  return { kind: 'accept', signature: headers.get('x-slack-signature')!, timestamp: headers.get('x-slack-request-timestamp')!, body: request.body, contentType };
}

/**
 * Takes the one claim a signed request gets: 'first' the first time its signature is seen,
 * 'replay' after. A signature covers the timestamp, which is refused after 5 minutes, so a claim
 * only has to outlive those minutes; the prefix can expire after a day (an S3 lifecycle rule).
 * A store failure is thrown: the caller answers "try again" rather than risk a second run.
 */
export async function claimSlackRequest(store: Pick<Store, 'createIfAbsent'>, signature: string, nowMs: number = Date.now()): Promise<'first' | 'replay'> {
  const claimed = await store.createIfAbsent(slackRequestClaimKey(signature), JSON.stringify({ claimedAt: new Date(nowMs).toISOString() }));
  return claimed === 'exists' ? 'replay' : 'first';
}
