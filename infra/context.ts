/**
 * cdk.json's `context`, for runs without the CDK CLI (`npm run synth` = `tsx infra/app.ts`, and
 * the tests): the CLI reads cdk.json itself, `new App()` alone does not. Passed to the App as
 * defaults, so `-c` values given to the CLI still win.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './stack.js';

export function cdkJsonContext(repoRoot: string = REPO_ROOT): Record<string, unknown> {
  const file = path.join(repoRoot, 'cdk.json');
  if (!existsSync(file)) return {};
  const json = JSON.parse(readFileSync(file, 'utf8')) as { context?: Record<string, unknown> };
  return json.context ?? {};
}

/** Every `starfish:` context value the app can see (cdk.json defaults overridden by `-c`). */
export function starfishContext(all: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(all).filter(([key]) => key.startsWith('starfish:')));
}
