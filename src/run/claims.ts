/**
 * Claims on side effects that must happen once (a round's submission, a salvage merge): taken by
 * conditional create, taken over by compare-and-swap once stale (the holder died), given back
 * when the side effect failed before doing anything. A claim records the jobs Batch accepted
 * under it, so whoever takes over or cancels knows what is already running.
 */
import type { Store } from '../ports.js';

export interface ClaimRecord {
  at: number;
  jobs: string[];
}

export interface HeldClaim {
  /** What the previous holder recorded, when this claim was taken over. */
  previous?: ClaimRecord;
  /** Adds a job accepted under this claim. */
  record(jobId: string): Promise<void>;
  /** Gives the claim back: nothing was done under it. */
  release(): Promise<void>;
}

function parseClaim(body: Buffer): ClaimRecord {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as Partial<ClaimRecord>;
    return { at: Number(parsed.at) || 0, jobs: Array.isArray(parsed.jobs) ? parsed.jobs.filter((j): j is string => typeof j === 'string') : [] };
  } catch {
    return { at: 0, jobs: [] };
  }
}

export async function readClaim(store: Store, key: string): Promise<ClaimRecord | undefined> {
  const stored = await store.get(key);
  return stored ? parseClaim(stored.body) : undefined;
}

/**
 * Takes the claim at `key`, or returns undefined when someone else holds it. With `staleAfterMs`,
 * a claim older than that is taken over (and may also be taken when it has vanished).
 */
export async function takeClaim(store: Store, key: string, now: number, options: { staleAfterMs?: number } = {}): Promise<HeldClaim | undefined> {
  const record: ClaimRecord = { at: now, jobs: [] };
  const body = () => JSON.stringify(record);
  const held = (previous?: ClaimRecord): HeldClaim => ({
    ...(previous ? { previous } : {}),
    record: async (jobId) => {
      record.jobs.push(jobId);
      await store.put(key, body());
    },
    release: () => store.delete(key),
  });
  if ((await store.createIfAbsent(key, body())) !== 'exists') return held();
  if (options.staleAfterMs === undefined) return undefined;
  const stored = await store.get(key);
  if (!stored) return (await store.createIfAbsent(key, body())) === 'exists' ? undefined : held();
  const previous = parseClaim(stored.body);
  if (now - previous.at < options.staleAfterMs) return undefined;
  return (await store.replaceIf(key, body(), stored.etag)) === 'conflict' ? undefined : held(previous);
}
