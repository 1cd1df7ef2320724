/**
 * A message as Slack takes it: Block Kit blocks typed by @slack/types, so the SDK accepts them
 * as they are. The builders (./blocks.ts) use a small subset (header, section, context, actions
 * with buttons) and enforce Slack's limits (https://api.slack.com/reference/block-kit/blocks);
 * the console renders any block (./text.ts).
 */
import type { KnownBlock } from '@slack/types';

export interface Message {
  /** Notification and accessibility fallback; also what the console prints first. */
  text: string;
  blocks: KnownBlock[];
  /** Set by errorMessage: the person's request was refused or could not be done. */
  refusal?: true;
}

export const LIMITS = {
  blocksPerMessage: 50,
  sectionText: 3000,
  headerText: 150,
  contextElements: 10,
  fallbackText: 4000,
} as const;

/** Shortens text at a word boundary, saying how much was left out; never leaves half an entity (&amp;lt;) behind. */
export function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  const cut = text.lastIndexOf(' ', max - 12);
  const head = text.slice(0, cut > max / 2 ? cut : max - 12).replace(/&[a-z]{0,3}$/, '');
  return `${head} …(more)`;
}

/** Joins lines until the limit, then says how many were left out, never cutting a line. */
export function summarizeLines(lines: string[], max: number = LIMITS.sectionText, noun = 'more'): string {
  const out: string[] = [];
  let used = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const remaining = lines.length - i;
    const tail = `…and ${remaining} ${noun}`;
    if (used + line.length + 1 + (remaining > 1 ? tail.length + 1 : 0) > max) {
      out.push(`…and ${remaining} ${noun}`);
      return out.join('\n');
    }
    out.push(line);
    used += line.length + 1;
  }
  return out.join('\n');
}

// ───────────────────────── untrusted text ─────────────────────────
//
// Text that a recipe, a job, an experiment or a person wrote (gene names, failure reasons, file
// names, run names, URLs) is escaped where it enters a message, never the message as a whole: the
// builders' own markup (<@U…> of a requester, log and download links) must keep working.
// https://api.slack.com/reference/surfaces/formatting#escaping: &, < and > are the only control
// characters of mrkdwn; escaped, `<!channel>`, `<@U0ADMIN>` and `<https://evil.example|here>` are
// shown as typed and do nothing. `*bold*` and `_it_` stay formatting, which can mislead nobody.

/** Terminal escape sequences: CSI (ESC [ … final), OSC (ESC ] … BEL or ESC \), DCS/SOS/PM/APC strings, and two-character ESC forms. */
// eslint-disable-next-line no-control-regex -- matching terminal control sequences is the point
const TERMINAL_ESCAPES = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[PX^_][^\x1b]*(?:\x1b\\)?|\x1b[@-Z\\-~]?/g;
/** Control characters (C0, DEL, C1) and invisible format characters: bidi embeddings, overrides and isolates, zero-width spaces and joiners, the BOM, Unicode tags. */
const INVISIBLE = /[\p{Cc}\p{Cf}]/gu;
/** Carriage returns (which rewrite the current line of a terminal) and the Unicode line and paragraph separators. */
const OTHER_BREAKS = /[\r\u2028\u2029\u0085]/g;

/**
 * Text as it may be shown: no terminal escape sequences, no control or invisible format
 * characters (which can reorder what a reader sees, or hide part of a name), line feeds kept
 * only when asked for; tabs, carriage returns and other separators as spaces.
 */
export function scrub(text: string, keepLines = false): string {
  return text
    .replace(TERMINAL_ESCAPES, '')
    .replace(/\r\n/g, '\n')
    .replace(OTHER_BREAKS, ' ')
    .replace(/\n/g, keepLines ? '\n' : ' ')
    .replace(/\t/g, ' ')
    .replace(INVISIBLE, (c) => (c === '\n' ? c : ''));
}

/** Untrusted text for mrkdwn: scrubbed onto one line, then &, < and > escaped. */
export function escapeMrkdwn(text: string): string {
  return scrub(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Untrusted text for mrkdwn, cut to `max` characters of the original before escaping. */
export function untrusted(text: string, max: number): string {
  return escapeMrkdwn(clip(scrub(text), max));
}

/** Untrusted text for a plain_text object (headers, buttons): Slack parses no markup there; scrubbed and cut. */
export function untrustedPlain(text: string, max: number): string {
  return clip(scrub(text), max);
}

const USER_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** A Slack channel id (public C…, private G…): what may become a <#…> link, or be chosen in a form. */
export const CHANNEL_ID = /^[CG][A-Z0-9]{2,20}$/;

/**
 * A mention of a user the code itself names (the requester, the approver): Slack ids (U…, W…)
 * and the console's local user names. Anything else, e.g. `!channel` from a tampered manifest, is
 * shown escaped.
 */
export function mention(userId: string): string {
  return USER_ID.test(userId) ? `<@${userId}>` : escapeMrkdwn(`<@${userId}>`);
}

/** A link the code builds (a log, a download): https, http, file or an absolute path; else the label alone. */
export function link(url: string, label: string): string {
  const safe = /^(?:https?:\/\/|file:\/\/|\/)[^<>|]*$/.test(url) && scrub(url) === url;
  return safe ? `<${url}|${escapeMrkdwn(label)}>` : escapeMrkdwn(label);
}

/**
 * The last line of defence for text composed outside the builders (notices, refusals): the code
 * never means to notify a whole channel or workspace, so `<!channel>`, `<!here>`, `<!everyone>`
 * and `<!group>` (with or without a |label) are escaped wherever they appear.
 */
export function withoutBroadcasts(mrkdwn: string): string {
  return mrkdwn.replace(/<(!(?:channel|here|everyone|group)(?:\|[^>]*)?)>/gi, (_whole, inner: string) => `&lt;${inner}&gt;`);
}
