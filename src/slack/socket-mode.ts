import type { Env } from '../config.js';
// Placeholder until the Slack app lands (issue 4).
export async function serve(_env: Env): Promise<number> {
  throw new Error('starfish serve: the Slack app is not built yet');
}
