/** Run ids: short, readable, sortable by day, e.g. 261125-k3f9. Uniqueness comes from conditional create. */
import { randomInt } from 'node:crypto';

// No 0/o, 1/l/i: run ids get read aloud and typed from screenshots.
const ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789';

/** The day part of the run ids of that moment (yymmdd, UTC). */
export const runIdDay = (at: Date) => at.toISOString().slice(2, 10).replace(/-/g, '');

export function newRunId(now = new Date()): string {
  const day = runIdDay(now);
  let suffix = '';
  for (let i = 0; i < 4; i++) suffix += ALPHABET[randomInt(ALPHABET.length)];
  return `${day}-${suffix}`;
}
