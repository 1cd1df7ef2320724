/**
 * Untrusted text in every message, as an attacker would write it: a recipe that names its genes
 * `<!channel>`, a job whose failure reason is a link, a run name that mentions an admin, a file
 * name with terminal escape sequences. The rule under test: such text is shown as typed (escaped,
 * scrubbed, cut) and never becomes markup; our own mentions and links keep working.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { KnownBlock } from '@slack/types';
import { errorMessage, failedRunMessage, failureDigest, listMessage, noticeMessage, resultsMessage, rootMessage, statusMessage, type ResultLinks } from '../../src/messages/blocks.js';
import { escapeMrkdwn, link, mention, scrub, untrusted, type Message } from '../../src/messages/message.js';
import { renderText } from '../../src/messages/text.js';
import { ConsoleChat } from '../../src/local/console-chat.js';
import { decide } from '../../src/lifecycle/decide.js';
import type { FovFailure } from '../../src/run/manifest.js';
import type { ResultsSummary } from '../../src/run/results.js';
import { manifest } from './fixtures.js';

/** Slack's control sequences an attacker would try: broadcasts, mentions, links, dates. */
const HOSTILE = [
  '<!channel>',
  '<!here|here>',
  '<!everyone>',
  '<https://evil.example|here>',
  '<@U0ADMIN>',
  '<#C0GENERAL>',
  '<!subteam^S0ADMINS>',
  '<!date^1392734382^{date_pretty}|tomorrow>',
];

const ESC = '\u001b';
/** Terminal control: retitle the window (OSC), clear the screen, colour, carriage return, backspace, bell, bidi override, zero-width space. */
const TERMINAL_ATTACK = `${ESC}]0;owned\u0007${ESC}[2J${ESC}[31mRED${ESC}[0m\r\bGENE\u0007\u202Eevil\u200B`;

/** Control characters (C0 but the line feed, DEL, C1) and invisible format characters (bidi, zero-width). */
const hasInvisible = (text: string) => /[\p{Cc}\p{Cf}]/u.test(text.replace(/\n/g, ''));

/** Every mrkdwn string of a message: the fallback text, sections, context elements, confirm dialogs. */
function mrkdwnOf(message: Message): string[] {
  const out = [message.text];
  const visit = (block: KnownBlock) => {
    if (block.type === 'section' && block.text?.type === 'mrkdwn') out.push(block.text.text);
    if (block.type === 'context') for (const e of block.elements) if (e.type === 'mrkdwn') out.push(e.text);
    if (block.type === 'actions') for (const e of block.elements) if (e.type === 'button' && e.confirm?.text.type === 'mrkdwn') out.push(e.confirm.text.text);
  };
  message.blocks.forEach(visit);
  return out;
}

/** The markup a message carries: every <…> sequence Slack would act on. */
const markupOf = (message: Message) => mrkdwnOf(message).flatMap((t) => t.match(/<[^<>]*>/g) ?? []);

const links: ResultLinks = {
  spotsCsv: { url: 's3://lab-results/outputs/261125-k3f9/results/spots.csv', download: 'https://lab-results.s3.amazonaws.com/spots.csv?X-Amz-Signature=abc&X-Amz-Expires=86400' },
  summaryJson: { url: 's3://lab-results/outputs/261125-k3f9/results/summary.json', download: 'https://lab-results.s3.amazonaws.com/summary.json?X-Amz-Signature=def' },
  spotsPng: { url: 's3://lab-results/outputs/261125-k3f9/results/spots.png', download: 'https://lab-results.s3.amazonaws.com/spots.png?X-Amz-Signature=ghi' },
};
const OUR_DOWNLOADS = [
  `<${links.spotsCsv.download}|download>`,
  `<${links.summaryJson.download}|download>`,
  `<${links.spotsPng.download}|download>`,
];

const summary = (genes: Record<string, number>): ResultsSummary => ({
  fovs_expected: 4,
  fovs_processed: 4,
  fovs_missing: [],
  failures: {},
  spots_total: 400,
  spots_per_fov: {},
  counts_per_gene: genes,
});

const failure = (fov: number, reason: string, logLink?: string): FovFailure => ({ fov, reason, jobId: `j:${fov}`, round: 0, reported: false, ...(logLink ? { logLink } : {}) });
const LOG = 'https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logsV2:log-groups/log-group/$252Faws$252Fbatch$252Fjob/log-events/x';

describe('gene names in the results message', () => {
  const genes = Object.fromEntries([...HOSTILE, '&lt;!channel&gt;', '*bold*', '_it_', TERMINAL_ATTACK, `ACTB${'x'.repeat(500)}`].map((g, i) => [g, 100 - i]));
  const message = resultsMessage(manifest(), summary(genes), links);

  it('carry no markup: the only links are the three downloads the code built', () => {
    expect(markupOf(message).sort()).toEqual([...OUR_DOWNLOADS].sort());
  });

  it('are shown as typed: escaped once, so Slack displays `<!channel>` and `&lt;` literally', () => {
    const genesSection = mrkdwnOf(message).find((t) => t.startsWith('*Spots per gene*'))!;
    for (const hostile of HOSTILE) expect(genesSection).toContain(escapeMrkdwn(hostile));
    expect(genesSection).toContain('• &lt;!channel&gt; 100');
    // A gene literally named "&lt;!channel&gt;" must not be decoded into <!channel>: its & is escaped.
    expect(genesSection).toContain('• &amp;lt;!channel&amp;gt; 92');
    // Formatting is not control: *bold* and _it_ may render bold or italic, and do nothing else.
    expect(genesSection).toContain('• *bold* 91');
    expect(genesSection).toContain('• _it_ 90');
  });

  it('lose control characters, terminal escapes and bidi overrides, and are cut to 80 characters', () => {
    const genesSection = mrkdwnOf(message).find((t) => t.startsWith('*Spots per gene*'))!;
    expect(hasInvisible(genesSection)).toBe(false);
    expect(genesSection).toContain('• RED GENEevil 89');
    expect(genesSection).toMatch(/• ACTBx+ …\(more\) 88/);
    expect(genesSection).not.toContain('x'.repeat(100));
  });

  it('are shown in the console as typed, decoded once', () => {
    const text = renderText(message);
    expect(text).toContain('• <!channel> 100');
    expect(text).toContain('• &lt;!channel&gt; 92');
    expect(text).toContain('• <https://evil.example|here> 97');
    expect(text).toContain('• <@U0ADMIN> 96');
  });
});

describe('failure reasons', () => {
  const reasons = [...HOSTILE.map((h) => `process-fov: FOV 3: ValueError: ${h}`), `recipe printed ${TERMINAL_ATTACK}`, 'line one\nline two'];
  const failures = reasons.map((r, i) => failure(i, r, LOG));

  it('in a failure digest: only our log links remain markup', () => {
    const digest = failureDigest(manifest({ runId: '261125-k3f9' }), failures, failures.length);
    expect(new Set(markupOf(digest))).toEqual(new Set([`<${LOG}|log>`]));
    const text = mrkdwnOf(digest).join('\n');
    expect(text).toContain('&lt;https://evil.example|here&gt;');
    expect(text).toContain(`• FOV 9 <${LOG}|log> — line one line two`);
  });

  it('in /starfish status: only our log links and the requester mention remain markup', () => {
    const status = statusMessage(manifest({ failures }));
    expect(new Set(markupOf(status))).toEqual(new Set([`<${LOG}|log>`, '<@U1>']));
  });

  it('in the failed-run reply and the root message status line', () => {
    for (const hostile of HOSTILE) {
      const reason = `the merge job failed: ${hostile}`;
      expect(markupOf(failedRunMessage('261125-k3f9', reason, LOG))).toEqual([`<${LOG}|log>`]);
      const root = rootMessage(manifest({ status: 'failed', statusReason: reason }));
      expect(markupOf(root)).toEqual(['<@U1>']);
      expect(mrkdwnOf(root).join('\n')).toContain(`:x: Failed — the merge job failed: ${escapeMrkdwn(hostile)}`);
    }
  });

  it('a log link that would break out of its <…|log> is not made a link', () => {
    for (const bad of ['https://logs.example/x|click>', 'https://logs.example/<!channel>', 'javascript:alert(1)', 'https://logs.example/a\nb']) {
      const digest = failureDigest(manifest({ runId: '261125-k3f9' }), [failure(1, 'boom', bad)], 1);
      expect(markupOf(digest)).toEqual([]);
      expect(link(bad, 'log')).toBe('log');
    }
    expect(link('/home/lab/.starfish/logs/a b.log', 'log')).toBe('</home/lab/.starfish/logs/a b.log|log>');
  });
});

describe('statusReason: the lifecycle’s own sentences keep their mention, nothing else does', () => {
  const ctx = { now: Date.parse('2026-11-25T11:00:00Z'), settings: { progressIntervalMs: 0, digestIntervalMs: 0 } };

  it('cancelled by <@user>, as decide() writes it, still mentions the canceller', () => {
    const cancelled = decide(manifest(), { type: 'cancel', by: 'U0ALICE01' }, ctx).next!;
    expect(cancelled.statusReason).toBe('cancelled by <@U0ALICE01>');
    expect(markupOf(rootMessage(cancelled))).toContain('<@U0ALICE01>');
  });

  it('retry N: … at the request of <@user>, as decide() writes it, still mentions who retried', () => {
    const failed = manifest({ status: 'partially-failed', submissions: [{ round: 0, submittedAt: '2026-11-25T10:00:00Z', fovs: '0-9999', arrays: [] }], failures: [failure(3, 'x')] });
    const retried = decide(failed, { type: 'retry', by: 'U0BOB0001' }, ctx).next!;
    expect(retried.statusReason).toMatch(/^retry 1: 1 FOV rerun at the request of <@U0BOB0001>$/);
    expect(markupOf(rootMessage(retried))).toContain('<@U0BOB0001>');
  });

  it('anything added to those sentences makes the whole reason plain text', () => {
    for (const reason of ['cancelled by <@U0ALICE01> <!channel>', 'cancelled by <@U0ADMIN|admin>', 'all 4 FOVs failed, e.g. FOV 0: cancelled by <@U0ADMIN>', 'cancelled by <!here>']) {
      expect(markupOf(rootMessage(manifest({ status: 'cancelled', statusReason: reason })))).toEqual(['<@U1>']);
    }
  });
});

describe('run names, URLs and ids from a manifest', () => {
  it('list: runs named <!channel>, <@U0ADMIN>, a link… are listed, escaped', () => {
    const list = listMessage(HOSTILE.map((name) => manifest({ request: { experiment: 's3://x/e.json', fovs: { kind: 'all' }, dryRun: false, name } })));
    expect(new Set(markupOf(list))).toEqual(new Set(['<@U1>']));
    for (const name of HOSTILE) expect(renderText(list)).toContain(`261125-k3f9 ${name} —`);
  });

  it('root: experiment and recipe URLs, queue, FOV ranges and approval reasons are escaped; the header is plain text, scrubbed', () => {
    const m = manifest({
      status: 'awaiting-approval',
      request: { experiment: 'https://lab.example/<!here>/experiment.json', recipe: 'https://lab.example/<https://evil.example|recipe.py>', fovs: { kind: 'all' }, dryRun: false, name: `mouse${ESC}[2J<!channel>` },
      queue: '<!everyone>',
      plan: { experimentFovCount: 4, fovs: '<@U0ADMIN>', fovCount: 4, units: [{ size: 4, fovs: '0-3' }] },
      approval: { required: true, reasons: ['4 FOVs <!channel>'], expiresAt: '<!here>' },
    });
    const root = rootMessage(m);
    expect(markupOf(root)).toEqual(['<@U1>']);
    const header = root.blocks[0]!;
    expect(header.type === 'header' && header.text.text).toBe('starfish run 261125-k3f9 · mouse<!channel>');
  });

  it('a requester or decider id that is not an id is shown, not mentioned', () => {
    expect(mention('U0ALICE01')).toBe('<@U0ALICE01>');
    expect(mention('!channel')).toBe('&lt;@!channel&gt;');
    expect(mention('U1> <!here')).toBe('&lt;@U1&gt; &lt;!here&gt;');
    const m = manifest({ requester: { userId: '!channel', channel: 'C1' }, approval: { required: true, reasons: [], decision: 'approved', decidedBy: 'U1|x> <!here', decidedAt: 'now' } });
    expect(markupOf(rootMessage(m))).toEqual([]);
  });

  it('a rejection reason as the approver typed it is text: escaped, never a ping or a link', () => {
    const reason = 'too big <!channel> see <https://evil.example|the policy>';
    const m = manifest({ status: 'rejected', approval: { required: true, reasons: [], decision: 'rejected', decidedBy: 'U0PI', decidedAt: 'now', reason } });
    // Only the mentions the code writes: the requester (U1) and the decider.
    expect(markupOf(rootMessage(m)).sort()).toEqual(['<@U0PI>', '<@U1>']);
    expect(JSON.stringify(rootMessage(m).blocks)).toContain('too big &lt;!channel&gt; see &lt;https://evil.example|the policy&gt;');
    const [, notice] = decide(manifest({ status: 'awaiting-approval', approval: { required: true, reasons: ['x'] } }), { type: 'decision', decision: 'rejected', by: 'U0PI', reason }, { now: 0, settings: { progressIntervalMs: 0, digestIntervalMs: 0 } }).effects;
    expect(notice).toMatchObject({ type: 'notice', text: expect.stringContaining('“too big &lt;!channel&gt; see &lt;https://evil.example|the policy&gt;”') });
  });
});

describe('notices composed elsewhere (staging, refusals)', () => {
  it('file names are escaped by escapeMrkdwn, as staging does', () => {
    const failures = ['fov_000/<!channel>.tif: AccessDenied', `fov_001/${TERMINAL_ATTACK}.tif: NoSuchKey`];
    const message = errorMessage(`Staging exp copied 1/3 files; 2 failed, e.g. ${escapeMrkdwn(failures.join('; '))}`);
    expect(markupOf(message)).toEqual([]);
    expect(renderText(message)).toContain('fov_000/<!channel>.tif: AccessDenied; fov_001/RED GENEevil.tif');
  });

  it('a broadcast that slipped into a notice is still escaped; our user and group mentions are kept', () => {
    const message = noticeMessage(`Run 261125-k3f9 cancelled by <@U0ALICE01>. Approvers: <@U0APPROVE1> and <!subteam^S0APPROVERS>. <!channel> <!here|here> <!everyone>`);
    expect(new Set(markupOf(message))).toEqual(new Set(['<!subteam^S0APPROVERS>', '<@U0ALICE01>', '<@U0APPROVE1>']));
    expect(message.text).not.toContain('<!channel>');
  });

  it('every mrkdwn object is verbatim: Slack links and mentions nothing on its own', () => {
    const messages = [rootMessage(manifest()), noticeMessage('hi @channel https://evil.example'), resultsMessage(manifest(), summary({ A: 1 }), links)];
    for (const message of messages) {
      const objects = JSON.stringify(message.blocks).match(/"type":"mrkdwn"[^}]*}/g) ?? [];
      expect(objects.length).toBeGreaterThan(0);
      for (const o of objects) expect(o).toContain('"verbatim":true');
    }
  });
});

describe('untrusted(): any string at all', () => {
  it('comes out with no < or >, every & starting an entity, no control or format character; decoded, it is the scrubbed input', () => {
    const piece = fc.oneof(fc.string({ unit: 'binary', maxLength: 40 }), fc.constantFrom(...HOSTILE, '&amp;', '&lt;', ESC, '\u202e', '\r\n', '|', '`'));
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 8 }), (pieces) => {
        const input = pieces.join('');
        const out = untrusted(input, 10_000);
        expect(out).not.toMatch(/[<>]/);
        expect(out.replace(/&(?:amp|lt|gt);/g, '')).not.toContain('&');
        expect(out).not.toMatch(/[\p{Cc}\p{Cf}]/u);
        expect(out.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&')).toBe(scrub(input));
      }),
      { numRuns: 500 },
    );
  });
});

describe('the console', () => {
  const hostileResults = () => resultsMessage(manifest(), summary({ [TERMINAL_ATTACK]: 3, [`${ESC}P1$r${ESC}\\DCS`]: 2 }), links);

  it('renderText writes no terminal escape, control or bidi character from a gene name', () => {
    const text = renderText(hostileResults());
    expect(hasInvisible(text)).toBe(false);
    expect(text).toContain('• RED GENEevil 3');
    expect(text).toContain('• DCS 2');
  });

  it('renderText scrubs any message, not only those the builders made', () => {
    const raw: Message = {
      text: `fallback ${TERMINAL_ATTACK}`,
      blocks: [
        { type: 'header', text: { type: 'plain_text', text: `title ${TERMINAL_ATTACK}` } },
        { type: 'section', text: { type: 'mrkdwn', text: `body ${TERMINAL_ATTACK}` } },
        { type: 'context', elements: [{ type: 'mrkdwn', text: `note ${TERMINAL_ATTACK}` }] },
      ],
    };
    const text = renderText(raw);
    expect(hasInvisible(text)).toBe(false);
    expect(text.split('\n')).toEqual(['── title RED GENEevil ──', 'body RED GENEevil', 'note RED GENEevil']);
    expect(hasInvisible(renderText({ text: raw.text, blocks: [] }))).toBe(false);
  });

  it('ConsoleChat writes nothing a terminal would obey but its own line redraw', async () => {
    const written: string[] = [];
    const chat = new ConsoleChat({ write: (t) => written.push(t), isTTY: true });
    const ref = await chat.post('lab', noticeMessage(`hello ${TERMINAL_ATTACK}`));
    await chat.reply(ref, hostileResults());
    await chat.ephemeral('lab', 'you', errorMessage(`no such file ${TERMINAL_ATTACK}`));
    await chat.upload(ref, { filename: `${ESC}[2Jspots.png`, title: `picture${ESC}]0;x\u0007`, bytes: Buffer.alloc(10) });
    // A progress-only update is redrawn in place with our own \r ESC[2K, and nothing else.
    await chat.post('lab', { text: 'starfish run 261125-k3f9: Running — 1/2', blocks: [] });
    await chat.update({ channel: 'lab', ts: '1' }, { text: `x`, blocks: [] });
    await chat.update({ channel: 'lab', ts: '1' }, { text: `x — ${ESC}[1A${ESC}[2K✓ Succeeded\r`, blocks: [] });
    const all = written.join('');
    const withoutOurRedraw = all.replaceAll('\r\u001b[2K', '');
    expect(hasInvisible(withoutOurRedraw)).toBe(false);
    expect(all).toContain('\r\u001b[2K↻ x — ✓ Succeeded');
    expect(chat.transcript.join('\n')).not.toContain(ESC);
  });
});
