/** slack/manifest.yaml agrees with the code: the command the app listens for, least scopes, interactivity. */
import { readFileSync } from 'node:fs';
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
});
