/** slack/manifest.yaml agrees with the code: the command the app listens for, least scopes, interactivity, the events it subscribes to. */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const manifest = readFileSync(path.resolve(import.meta.dirname, '../../slack/manifest.yaml'), 'utf8');
const lines = manifest.split('\n').filter((l) => !l.trim().startsWith('#'));

describe('slack/manifest.yaml', () => {
  it('declares /starfish with the request URL placeholder, and interactivity on the same URL', () => {
    expect(lines.join('\n')).toMatch(/- command: \/starfish\n\s+url: https:\/\/REPLACE-WITH-SLACK-FUNCTION-URL[^\s]*\/slack\/events/);
    expect(lines.join('\n')).toMatch(/interactivity:\n\s+is_enabled: true\n(\s+#.*\n)*\s+request_url: https:\/\/REPLACE-WITH-SLACK-FUNCTION-URL[^\s]*\/slack\/events/);
  });

  it('asks for exactly the four bot scopes the code uses, and no user scopes', () => {
    const start = lines.findIndex((l) => l.trim() === 'bot:');
    const scopes: string[] = [];
    for (const l of lines.slice(start + 1)) {
      const m = /^\s+- ([a-z:.]+)$/.exec(l);
      if (!m) break;
      scopes.push(m[1]!);
    }
    expect(scopes).toEqual(['commands', 'chat:write', 'files:write', 'usergroups:read']);
    expect(manifest).not.toMatch(/^\s+user:/m);
    expect(manifest).toMatch(/socket_mode_enabled: false/);
  });

  it('subscribes to exactly the events the app listens for (the Home tab), on the same URL, with the Home tab on', () => {
    const text = lines.join('\n');
    expect(text).toMatch(/event_subscriptions:\n(\s+#.*\n)*\s+request_url: https:\/\/REPLACE-WITH-SLACK-FUNCTION-URL[^\s]*\/slack\/events\n\s+bot_events:\n\s+- app_home_opened\n\s+interactivity:/);
    expect(text).toMatch(/app_home:\n\s+home_tab_enabled: true/);
    const listened = [...readdirSync(path.resolve(import.meta.dirname, '../../src/slack'))]
      .flatMap((f) => [...readFileSync(path.resolve(import.meta.dirname, '../../src/slack', f), 'utf8').matchAll(/app\.event\('([a-z_]+)'/g)].map((m) => m[1]));
    expect(listened).toEqual(['app_home_opened']);
  });
});
