import { describe, expect, it } from 'vitest';
import { ACTIONS, failureDigest, resultsMessage, rootMessage } from '../../src/messages/blocks.js';
import { LIMITS, type Message } from '../../src/messages/message.js';
import { renderText } from '../../src/messages/text.js';
import { resultsSummarySchema } from '../../src/run/results.js';
import type { FovFailure } from '../../src/run/manifest.js';
import { manifest } from './fixtures.js';

function withinLimits(message: Message): void {
  expect(message.blocks.length).toBeLessThanOrEqual(LIMITS.blocksPerMessage);
  expect(message.text.length).toBeLessThanOrEqual(LIMITS.fallbackText);
  for (const b of message.blocks) {
    if (b.type === 'header') expect(b.text.text.length).toBeLessThanOrEqual(LIMITS.headerText);
    if (b.type === 'section') expect(b.text?.text.length).toBeLessThanOrEqual(LIMITS.sectionText);
    if (b.type === 'context') for (const e of b.elements) if (e.type !== 'image') expect(e.text.length).toBeLessThanOrEqual(LIMITS.sectionText);
  }
}

describe('Block Kit limits', () => {
  it('a digest of 2,000 failures stays within 50 blocks and 3,000-character sections, cutting no line', () => {
    const reason = 'recipe raised ValueError: no spots found in round 2 after registration with a shift of 4.2 px in x and 3.1 px in y';
    const failures: FovFailure[] = Array.from({ length: 2_000 }, (_, fov) => ({
      fov,
      reason,
      logLink: `https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logsV2:log-groups/log-group/$252Faws$252Fbatch$252Fjob/log-events/process-fov$252Fdefault$252F${'a'.repeat(32)}${fov}`,
      jobId: `j:${fov}`,
      round: 0,
      reported: false,
    }));
    const digest = failureDigest(manifest({ runId: '261125-k3f9' }), failures, 2_000);
    withinLimits(digest);
    const text = digest.blocks.map((b) => (b.type === 'section' ? b.text?.text : '')).join('\n');
    const named = [...text.matchAll(/• FOV (\d+) <[^>]+\|log> — (.*)/g)];
    expect(named.length).toBeGreaterThan(100);
    for (const m of named) expect(m[2]).toBe(reason);
    expect(JSON.stringify(digest.blocks.at(-2))).toContain(`…and ${2_000 - named.length} more failed FOVs: \`/starfish status 261125-k3f9\` lists them all`);
  });

  it('a long run name never pushes the header past 150 characters, and is cut at a word', () => {
    const m = rootMessage(manifest({ request: { experiment: 's3://lab-data/iss/experiment.json', fovs: { kind: 'all' }, dryRun: false, name: 'x'.repeat(64) } }));
    withinLimits(m);
    const long = rootMessage(manifest({ runId: '261125-k3f9', request: { experiment: `s3://lab-data/${'deep/'.repeat(800)}experiment.json`, fovs: { kind: 'all' }, dryRun: false } }));
    withinLimits(long);
    expect(renderText(long)).toContain('…(more)');
  });

  it('results with 5,000 genes and long presigned links keep every link whole', () => {
    const link = `https://lab-results.s3.amazonaws.com/runs/261125-k3f9/results/spots.csv?X-Amz-Security-Token=${'T'.repeat(1_500)}&X-Amz-Signature=abc`;
    const genes = Object.fromEntries(Array.from({ length: 5_000 }, (_, i) => [`GENE${i}`, 5_000 - i]));
    const m = resultsMessage(
      manifest(),
      { fovs_expected: 10_000, fovs_processed: 9_500, fovs_missing: Array.from({ length: 500 }, (_, i) => i * 20), failures: {}, spots_total: 1_000_000, spots_per_fov: {}, counts_per_gene: genes },
      { spotsCsv: { url: 's3://x/spots.csv', download: link }, summaryJson: { url: 's3://x/summary.json', download: link }, spotsPng: { url: 's3://x/spots.png', download: link } },
    );
    withinLimits(m);
    expect(JSON.stringify(m.blocks).split(link).length - 1).toBe(3);
    expect(JSON.stringify(m.blocks)).toMatch(/more genes \(see summary.json\)/);
  });

  it('links the result files a newer merge also writes, each whole, within the limits', () => {
    const link = (name: string) => `https://lab-results.s3.amazonaws.com/outputs/261125-k3f9/results/${name}?X-Amz-Security-Token=${'T'.repeat(1_500)}&X-Amz-Signature=abc`;
    const file = (name: string) => ({ url: `s3://x/${name}`, download: link(name) });
    const more = ['counts_matrix.csv', 'fov_quality.csv', 'overview.png'].map((name) => ({ name, ...file(name) }));
    const m = resultsMessage(
      manifest(),
      { fovs_expected: 4, fovs_processed: 4, fovs_missing: [], failures: {}, spots_total: 10, spots_per_fov: {}, counts_per_gene: { ACTB: 10 } },
      { spotsCsv: file('spots.csv'), summaryJson: file('summary.json'), spotsPng: file('spots.png'), more },
    );
    withinLimits(m);
    for (const name of ['counts_matrix.csv', 'fov_quality.csv', 'overview.png']) expect(renderText(m)).toContain(`• ${name} — s3://x/${name} · download (${link(name)})`);
  });

  it('says which recipe made the results and with which settings, escaped, within the limits', () => {
    const summary = (recipe: unknown) =>
      resultsSummarySchema.parse({ fovs_expected: 4, fovs_processed: 4, fovs_missing: [], failures: {}, spots_total: 10, spots_per_fov: {}, counts_per_gene: { ACTB: 10 }, recipe });
    const links = { spotsCsv: { url: 's3://x/a', download: 'https://x/a' }, summaryJson: { url: 's3://x/b', download: 'https://x/b' }, spotsPng: { url: 's3://x/c', download: 'https://x/c' } };
    const sha256 = '9c9e765c'.repeat(8);
    // The launcher's hash of the recipe copy the jobs ran: the one shown.
    const ran = manifest({ inputs: { ...manifest().inputs, recipeSha256: sha256 } });
    const m = resultsMessage(ran, summary({ url: 's3://lab/iss.py', sha256, parameters: { masking_radius_px: 15, threshold: 0.01, register: true, seed: null, '<https://evil.example|key>': '<https://evil.example|click>' } }), links);
    withinLimits(m);
    const text = renderText(m);
    expect(text).toContain('Recipe sha256 9c9e765c9c9e…, with these parameters:\n• masking_radius_px = 15\n• threshold = 0.01\n• register = true\n• seed = null');
    expect(JSON.stringify(m.blocks)).toContain('• &lt;https://evil.example|key&gt; = &lt;https://evil.example|click&gt;');
    // 32 long parameters: cut by whole lines, the rest named
    const many = Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`p${i}_${'k'.repeat(60)}`, 'v'.repeat(200)]));
    const long = resultsMessage(ran, summary({ sha256, parameters: many }), links);
    withinLimits(long);
    expect(renderText(long)).toMatch(/more parameters \(see summary.json\)/);
    // what the merge wrote but cannot be shown is left out, not the results
    for (const bad of [{ sha256: 'not a hash' }, { sha256, parameters: { list: [1, 2] } }, 'recipe.py']) {
      const s = summary(bad);
      expect(s.recipe).toBeUndefined();
      expect(renderText(resultsMessage(ran, s, links))).toContain('Recipe sha256 9c9e765c9c9e…\n');
    }
  });

  it("shows the launcher's recipe hash, never one a job wrote: a summary naming another recipe gets no parameters shown", () => {
    const summary = resultsSummarySchema.parse({
      fovs_expected: 4, fovs_processed: 4, fovs_missing: [], failures: {}, spots_total: 10, spots_per_fov: {}, counts_per_gene: { ACTB: 10 },
      recipe: { sha256: 'ab'.repeat(32), parameters: { threshold: 0.5 } },
    });
    const links = { spotsCsv: { url: 's3://x/a', download: 'https://x/a' }, summaryJson: { url: 's3://x/b', download: 'https://x/b' }, spotsPng: { url: 's3://x/c', download: 'https://x/c' } };
    const text = renderText(resultsMessage(manifest({ inputs: { ...manifest().inputs, recipeSha256: 'cd'.repeat(32) } }), summary, links));
    expect(text).toContain(`Recipe sha256 ${'cd'.repeat(6)}… (summary.json names another recipe, ${'ab'.repeat(6)}…: its parameters are not shown)`);
    expect(text).not.toContain('threshold');
  });

  it('does not link a spots.png the merge did not write (a run of more than 16 FOVs): the overview is its picture', () => {
    const file = (name: string) => ({ url: `s3://x/${name}`, download: `https://lab-results.s3.amazonaws.com/${name}?X-Amz-Signature=abc` });
    const summary = { fovs_expected: 100, fovs_processed: 100, fovs_missing: [], failures: {}, spots_total: 10, spots_per_fov: {}, counts_per_gene: { ACTB: 10 } };
    const base = { spotsCsv: file('spots.csv'), summaryJson: file('summary.json'), spotsPng: file('spots.png'), more: [{ name: 'overview.png', ...file('overview.png') }] };
    const large = renderText(resultsMessage(manifest(), summary, { ...base, spotsPngWritten: false }));
    expect(large).not.toContain('spots.png');
    expect(large).toContain('• overview.png — s3://x/overview.png');
    expect(renderText(resultsMessage(manifest(), summary, base))).toContain('• spots.png — s3://x/spots.png');
  });
});

describe('the Retry button', () => {
  it('is on a finished run with failures, asks for confirmation, and reads as the command in the console', () => {
    const submission = { round: 0, submittedAt: '2026-11-25T10:00:00.000Z', fovs: '0-3', arrays: [] };
    const m = rootMessage(manifest({ status: 'partially-failed', submissions: [submission] }));
    withinLimits(m);
    const actions = m.blocks.find((b) => b.type === 'actions') as { elements: Array<{ action_id: string; value: string; confirm?: unknown }> } | undefined;
    expect(actions?.elements.map((e) => [e.action_id, e.value])).toEqual([[ACTIONS.retry, '261125-k3f9']]);
    expect(actions?.elements[0]!.confirm).toBeDefined();
    expect(renderText(m)).toContain('[Retry failed FOVs: /starfish retry 261125-k3f9]');
    // Not on a run that never started, nor on one that succeeded.
    for (const over of [{ status: 'failed' as const, submissions: [] }, { status: 'succeeded' as const, submissions: [submission] }]) {
      expect(JSON.stringify(rootMessage(manifest(over)).blocks)).not.toContain(ACTIONS.retry);
    }
  });
});

describe('console rendering', () => {
  it('renders the buttons as the commands to type, and any other block Slack could carry', () => {
    const root = rootMessage(manifest({ status: 'awaiting-approval', approval: { required: true, reasons: ['10,000 FOVs'], expiresAt: '2026-11-26T10:00:00.000Z' } }));
    expect(renderText(root)).toContain('[Approve: /starfish approve 261125-k3f9]  [Reject: /starfish reject 261125-k3f9]');
    const other: Message = {
      text: 'other',
      blocks: [
        { type: 'section', text: { type: 'mrkdwn', text: '*Queue* <@U1>' }, fields: [{ type: 'plain_text', text: 'a *b*' }] },
        { type: 'context', elements: [{ type: 'image', image_url: 'https://x/i.png', alt_text: 'logo' }, { type: 'mrkdwn', text: ':warning: late' }] },
        { type: 'actions', elements: [{ type: 'button', text: { type: 'plain_text', text: 'Docs' }, url: 'https://x/docs' }, { type: 'datepicker', action_id: 'd' }] },
        { type: 'divider' },
        { type: 'rich_text', elements: [] },
      ],
    };
    expect(renderText(other).split('\n')).toEqual(['Queue @U1', 'a *b*', '[image: logo]  ⚠ late', '[Docs: https://x/docs]  [datepicker]', '─'.repeat(40), '[rich_text]']);
  });
});
