/**
 * The subset of Slack Block Kit this app sends, typed here so the core needs no Slack package.
 * Limits (https://api.slack.com/reference/block-kit/blocks) are enforced by the builders.
 */
export interface TextObject {
  type: 'mrkdwn' | 'plain_text';
  text: string;
}

export interface ButtonElement {
  type: 'button';
  text: { type: 'plain_text'; text: string };
  action_id: string;
  value: string;
  style?: 'primary' | 'danger';
  url?: string;
  confirm?: {
    title: { type: 'plain_text'; text: string };
    text: TextObject;
    confirm: { type: 'plain_text'; text: string };
    deny: { type: 'plain_text'; text: string };
  };
}

export type Block =
  | { type: 'header'; text: { type: 'plain_text'; text: string } }
  | { type: 'section'; text: TextObject; fields?: TextObject[] }
  | { type: 'context'; elements: TextObject[] }
  | { type: 'actions'; block_id?: string; elements: ButtonElement[] }
  | { type: 'divider' }
  | { type: 'image'; image_url: string; alt_text: string };

export interface Message {
  /** Notification and accessibility fallback; also what the console prints first. */
  text: string;
  blocks: Block[];
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
