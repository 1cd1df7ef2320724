/**
 * The Chat port as a channel in the terminal: the same Block Kit messages Slack would get,
 * rendered as text. Thread replies are indented under their run; an update of the root message
 * prints only the lines that changed: a progress line is rewritten in place on a terminal (the
 * bar moves live), a new status or decision is printed once; piped output gets plain lines.
 */
import type { Chat, MessageRef } from '../ports.js';
import type { Message } from '../messages/message.js';
import { scrub } from '../messages/message.js';
import { renderText } from '../messages/text.js';

export interface ConsoleOutput {
  write(text: string): void;
  isTTY?: boolean;
}

export class ConsoleChat implements Chat {
  private counter = 0;
  private lastText = new Map<string, string>();
  /** Each root message's lines as last shown, so that an update prints only what changed. */
  private lastLines = new Map<string, ReadonlySet<string>>();
  private liveLine = false;
  readonly transcript: string[] = [];
  readonly uploads: Array<{ ref: MessageRef; filename: string; bytes: number }> = [];
  /** Refusals and errors shown to the person (ephemeral warnings), for one-shot exit codes. */
  refusals = 0;

  constructor(private readonly out: ConsoleOutput, private readonly user = 'you') {}

  /**
   * Every line goes out scrubbed: a gene name, a file name or a reason can carry terminal escape
   * sequences or control characters, and none of them may move the cursor, retitle the window or
   * hide text. The only escape written is our own line redraw below.
   */
  private emit(raw: string, live = false): void {
    const text = scrub(raw, true);
    this.transcript.push(text);
    if (this.out.isTTY && live) {
      this.out.write(`\r\x1b[2K${text}`);
      this.liveLine = true;
      return;
    }
    this.out.write(`${this.liveLine ? '\n' : ''}${text}\n`);
    this.liveLine = false;
  }

  private nextTs(): string {
    return `${Math.floor(Date.now() / 1000)}.${String(++this.counter).padStart(6, '0')}`;
  }

  async post(channel: string, message: Message): Promise<MessageRef> {
    const ref = { channel, ts: this.nextTs() };
    this.lastText.set(ref.ts, message.text);
    this.lastLines.set(ref.ts, new Set(bodyLines(message)));
    this.emit(`\n#${channel} ${renderText(message)}`);
    return ref;
  }

  async update(ref: MessageRef, message: Message): Promise<void> {
    if (this.lastText.get(ref.ts) === message.text) return;
    const before = this.lastText.get(ref.ts) ?? '';
    this.lastText.set(ref.ts, message.text);
    // Progress-only changes redraw one line; anything else (status, decisions) prints in full.
    const sameStatus = before.split(' — ')[0] === message.text.split(' — ')[0];
    if (sameStatus) return this.emit(`↻ ${renderText({ text: message.text, blocks: [] })}`, true);
    const shown = this.lastLines.get(ref.ts) ?? new Set<string>();
    const lines = bodyLines(message);
    this.lastLines.set(ref.ts, new Set(lines));
    const changed = lines.filter((l) => !shown.has(l));
    // Named by its run: several runs may be printing at once.
    if (changed.length) this.emit(`↻ ${message.text.split(':')[0]}: ${changed.join('\n  ')}`);
  }

  async reply(ref: MessageRef, message: Message): Promise<MessageRef> {
    const text = renderText(message)
      .split('\n')
      .map((l) => `  │ ${l}`)
      .join('\n');
    this.emit(text);
    return { channel: ref.channel, ts: this.nextTs() };
  }

  async ephemeral(_channel: string, user: string, message: Message): Promise<void> {
    if (message.refusal) this.refusals++;
    this.emit(`(only visible to ${user === this.user ? 'you' : user}) ${renderText(message)}`);
  }

  async upload(ref: MessageRef, file: { filename: string; title: string; bytes: Buffer }): Promise<void> {
    this.uploads.push({ ref, filename: file.filename, bytes: file.bytes.length });
    this.emit(`  │ 📎 ${file.title}: ${file.filename} (${Math.round(file.bytes.length / 1024)} KB)`);
  }
}

/** A message's lines without its header rule (the run it belongs to is in the changed lines). */
function bodyLines(message: Message): string[] {
  return renderText(message)
    .split('\n')
    .filter((l) => !l.startsWith('──'));
}
