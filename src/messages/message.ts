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

/** Shortens text at a word boundary, saying how much was left out. */
export function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  const cut = text.lastIndexOf(' ', max - 12);
  const head = text.slice(0, cut > max / 2 ? cut : max - 12);
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

/** Slack reads <, > and & as markup in mrkdwn; text from people and recipes is escaped. */
export function escapeMrkdwn(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
