/** The console channel: an update of a run's message prints what changed, not the message again. */
import { describe, expect, it } from 'vitest';
import { ConsoleChat } from '../../src/local/console-chat.js';
import { rootMessage } from '../../src/messages/blocks.js';
import type { RunManifest } from '../../src/run/manifest.js';
import { manifest } from '../messages/fixtures.js';

const submission = { round: 0, submittedAt: '2026-11-25T10:00:00.000Z', fovs: '0-3', arrays: [{ jobId: 'j1', jobName: 'starfish-261125-k3f9-fov', unit: { size: 4, fovs: '0-3' } }] };
const run = (over: Partial<RunManifest>) =>
  manifest({ plan: { experimentFovCount: 4, fovs: '0-3', fovCount: 4, units: [{ size: 4, fovs: '0-3' }] }, submissions: [submission], ...over });

function console_(isTTY: boolean) {
  const out: string[] = [];
  return { chat: new ConsoleChat({ write: (t) => out.push(t), isTTY }), out };
}

describe('ConsoleChat updates', () => {
  it('piped: a new status prints the lines that changed, named by the run, not the whole message', async () => {
    const { chat, out } = console_(false);
    const ref = await chat.post('lab', rootMessage(run({ status: 'running', progress: { total: 4, succeeded: 1, failed: 0, running: 3, waiting: 0 } })));
    const posted = out.join('');
    expect(posted).toContain('Experiment s3://lab-data/iss/experiment.json');
    out.length = 0;
    await chat.update(ref, rootMessage(run({ status: 'merging', progress: { total: 4, succeeded: 4, failed: 0, running: 0, waiting: 0 } })));
    expect(out.join('')).toBe('↻ starfish run 261125-k3f9: ████████████████████ 100%  4 succeeded of 4 FOVs\n  Status ⇄ Merging results\n');
  });

  it('on a terminal, progress alone is redrawn in place on one line; piped, it is a plain line', async () => {
    for (const isTTY of [true, false]) {
      const { chat, out } = console_(isTTY);
      const ref = await chat.post('lab', rootMessage(run({ progress: { total: 4, succeeded: 1, failed: 0, running: 3, waiting: 0 } })));
      out.length = 0;
      await chat.update(ref, rootMessage(run({ progress: { total: 4, succeeded: 2, failed: 0, running: 2, waiting: 0 } })));
      const line = out.join('');
      expect(line).toContain('2 succeeded of 4 FOVs · 2 running');
      expect(line.startsWith('\r\x1b[2K')).toBe(isTTY);
      expect(line.endsWith('\n')).toBe(!isTTY);
    }
  });

  it('an update that changes nothing prints nothing', async () => {
    const { chat, out } = console_(false);
    const m = rootMessage(run({}));
    const ref = await chat.post('lab', m);
    out.length = 0;
    await chat.update(ref, m);
    expect(out).toEqual([]);
  });
});
