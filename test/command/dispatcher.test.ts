import { passed } from '../../src/result.js';
import { describe, expect, it } from 'vitest';
import { dispatch } from '../../src/command/dispatcher.js';
import { parsePolicy } from '../../src/run/policy.js';
import type { Bus } from '../../src/ports.js';
import type { RunEvent } from '../../src/run/run-events.js';
import { MemoryStore } from '../helpers/memory-adapters.js';

function deps(policy: unknown) {
  const published: RunEvent[] = [];
  const bus: Bus = { publish: async (e) => void published.push(e) };
  return {
    published,
    deps: { store: new MemoryStore(), bus, reader: { checkReadable: () => passed }, policy: parsePolicy(policy, 'test'), allowPaths: false },
  };
}

describe('dispatch', () => {
  it('publishes a run request with a fresh request id and the response_url, answering at once', async () => {
    const { deps: d, published } = deps({});
    const answer = await dispatch(d, 'run s3://lab-data/iss/experiment.json fovs=0-3', { userId: 'U1', channel: 'C1', responseUrl: 'https://hooks.slack.com/commands/T/1/x' });
    expect(answer.refused).toBe(false);
    expect(published).toEqual([expect.objectContaining({ type: 'RunRequested', userId: 'U1', channel: 'C1', responseUrl: 'https://hooks.slack.com/commands/T/1/x', requestId: expect.stringMatching(/^[0-9a-f-]{36}$/) })]);
  });

  it('shows nothing about runs outside the allowed channels, but still helps', async () => {
    const { deps: d, published } = deps({ access: { channels: ['CLAB'] } });
    for (const text of ['list', 'status', 'status 261125-k3f9', 'cancel 261125-k3f9', 'run s3://lab-data/e.json']) {
      const answer = await dispatch(d, text, { userId: 'U1', channel: 'CRANDOM' });
      expect(answer.refused).toBe(true);
      expect(answer.message!.text).toMatch(/does not take commands in this channel/);
    }
    expect((await dispatch(d, 'help', { userId: 'U1', channel: 'CRANDOM' })).refused).toBe(false);
    expect(published).toEqual([]);
  });

  it('quotes what was typed as text, never as markup: a refusal cannot ping the channel or plant a link', async () => {
    const { deps: d } = deps({});
    for (const typed of ['fovs=<!channel>', 'fovs=<https://evil.example|here>', 'name=ok fovs=<@U0ADMIN>']) {
      const answer = await dispatch(d, `run s3://lab-data/iss/experiment.json ${typed}`, { userId: 'U1', channel: 'C1' });
      const shown = JSON.stringify(answer.message!.blocks);
      expect(answer.refused).toBe(true);
      // No markup survives: mentions are escaped, a Slack link is shown as its bare URL.
      expect(shown).not.toMatch(/<!channel>|<https:\/\/evil|<@U0ADMIN>/);
      expect(shown).toMatch(/&lt;!channel&gt;|fovs=https:\/\/evil\.example:|&lt;@U0ADMIN&gt;/);
    }
  });

  it('refuses a file path where the deployment reads only URLs', async () => {
    const { deps: d } = deps({});
    const answer = await dispatch(d, 'run ./experiment.json', { userId: 'U1', channel: 'C1' });
    expect(answer.message!.text).toMatch(/is a file path, but this deployment reads only s3:\/\/ or https:\/\/ URLs/);
  });
});
