/** `starfish serve` (Socket Mode on the local backend): what it says when a token is missing. */
import { describe, expect, it } from 'vitest';
import { ConfigError, readEnv } from '../../src/config.js';
import { serve } from '../../src/slack/socket-mode.js';

describe('starfish serve', () => {
  it('names both missing variables with example values', async () => {
    const error = await serve(readEnv({})).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message).toContain('SLACK_BOT_TOKEN and SLACK_APP_TOKEN');
    expect(message).toMatch(/SLACK_BOT_TOKEN=xoxb-\S+/);
    expect(message).toMatch(/SLACK_APP_TOKEN=xapp-\S+/);
    expect(message).toContain('connections:write');
    expect(message).toContain('starfish console');
  });

  it('names only the app-level token when the bot token is set', async () => {
    const error = (await serve(readEnv({ SLACK_BOT_TOKEN: 'xoxb-1-2-3' })).catch((e: unknown) => e)) as Error;
    expect(error.message).toContain('needs SLACK_APP_TOKEN.');
    expect(error.message).not.toContain('SLACK_BOT_TOKEN=');
  });
});
