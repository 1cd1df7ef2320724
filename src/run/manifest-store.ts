/** Reading and compare-and-swap updating of run manifests through the Store port. */
import type { Store } from '../ports.js';
import { manifestSchema, type RunManifest } from './manifest.js';
import { RUNS_PREFIX, requestClaimKey, runKeys } from './layout.js';
import { z } from 'zod';
import pLimit from 'p-limit';
import { runIdDay } from './run-id.js';

/** Manifests read at once; the S3 client's own pool is 50 sockets. */
const READ_CONCURRENCY = 32;

const manifestKey = (runId: string) => runKeys(runId).manifest;

class ManifestConflictError extends Error {}

/** Why a stored manifest cannot be used: that run's problem, never every run's. */
export class UnreadableManifestError extends Error {
  constructor(
    readonly runId: string,
    readonly key: string,
    readonly why: string,
  ) {
    super(`${key} cannot be read: ${why}`);
  }
}

function parseManifest(runId: string, body: Buffer): RunManifest {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw new UnreadableManifestError(runId, manifestKey(runId), body.length ? 'it is not valid JSON (truncated or overwritten?)' : 'it is empty');
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new UnreadableManifestError(runId, manifestKey(runId), `it does not match the manifest schema (${issue?.path.join('.') || 'top level'}: ${issue?.message})`);
  }
  return parsed.data;
}

/** The run's manifest, undefined when there is none; throws UnreadableManifestError when it is corrupt. */
export async function loadManifest(store: Store, runId: string): Promise<{ manifest: RunManifest; etag: string } | undefined> {
  const object = await store.get(manifestKey(runId));
  if (!object) return undefined;
  return { manifest: parseManifest(runId, object.body), etag: object.etag };
}

export async function createManifest(store: Store, manifest: RunManifest): Promise<boolean> {
  const result = await store.createIfAbsent(manifestKey(manifest.runId), JSON.stringify(manifestSchema.parse(manifest), null, 1));
  return result !== 'exists';
}

/**
 * Applies `change` with compare-and-swap, re-reading on a lost race. `change` returns the next
 * manifest, or undefined to leave it as it is; it may run several times, so it must be pure.
 */
export async function updateManifest(
  store: Store,
  runId: string,
  change: (current: RunManifest) => RunManifest | undefined,
  attempts = 20,
): Promise<{ before: RunManifest; after: RunManifest; changed: boolean }> {
  for (let i = 0; i < attempts; i++) {
    const loaded = await loadManifest(store, runId);
    if (!loaded) throw new Error(`run ${runId} not found`);
    const next = change(structuredClone(loaded.manifest));
    if (!next) return { before: loaded.manifest, after: loaded.manifest, changed: false };
    next.updatedAt = new Date().toISOString();
    const written = await store.replaceIf(manifestKey(runId), JSON.stringify(manifestSchema.parse(next), null, 1), loaded.etag);
    if (written !== 'conflict') return { before: loaded.manifest, after: next, changed: true };
    await new Promise((r) => setTimeout(r, Math.random() * 5 * (i + 1)));
  }
  throw new ManifestConflictError(`run ${runId}: too many concurrent updates, try again`);
}

/** A listed run: its manifest, or why it cannot be read. */
export type ListedRun = { runId: string; manifest: RunManifest } | { runId: string; unreadable: UnreadableManifestError };

/**
 * The most recent runs, newest first. A manifest that cannot be read is listed as such, so that
 * one corrupt run.json does not hide every other run.
 */
export async function listRuns(store: Store, limit = 20, sinceDay?: string, now: number = Date.now()): Promise<ListedRun[]> {
  const ids = (sinceDay !== undefined ? await store.listFolders(RUNS_PREFIX, sinceDay) : await recentRunIds(store, limit, now)).sort().reverse();
  // Run ids start with the day (yymmdd) and end at random: take whole days, newest first, until
  // there are enough (or every day since `sinceDay`), then order by creation time.
  const chosen: string[] = [];
  for (const id of ids) {
    const day = id.slice(0, 6);
    if (sinceDay !== undefined ? day < sinceDay : chosen.length >= limit && day !== chosen.at(-1)!.slice(0, 6)) break;
    chosen.push(id);
  }
  // A week of a busy lab is thousands of runs: read a few dozen at a time, not every file at once
  // (a directory store opens one file each, past the process's open-file limit).
  const reading = pLimit(READ_CONCURRENCY);
  const listed = await Promise.all(chosen.map((id) => reading(() => listedRun(store, id))));
  const when = (r: ListedRun) => ('manifest' in r ? r.manifest.createdAt : `20${r.runId.slice(0, 2)}-${r.runId.slice(2, 4)}-${r.runId.slice(4, 6)}`);
  return listed
    .filter((r): r is ListedRun => r !== undefined)
    .sort((a, b) => when(b).localeCompare(when(a)))
    .slice(0, sinceDay !== undefined ? undefined : limit);
}

/** How far back the newest runs are looked for, widening until there are enough: then all of them. */
const LOOKBACK_DAYS = [7, 31, 366];

/**
 * Enough run ids to hold the newest `limit`: a run id starts with its day, so the last days are
 * listed first (one page for a busy lab's week) and the listing reaches back only as far as it
 * must, not through every run the bucket ever held. A day is whole whichever window holds it.
 */
async function recentRunIds(store: Store, limit: number, now: number): Promise<string[]> {
  for (const days of LOOKBACK_DAYS) {
    const ids = await store.listFolders(RUNS_PREFIX, runIdDay(new Date(now - days * 86_400_000)));
    if (ids.length >= limit) return ids;
  }
  return store.listFolders(RUNS_PREFIX);
}

/**
 * Errors that are about one object, not the store: reading it again will fail again (a directory
 * where run.json should be, a file or an object this process may not read, an archived object).
 * Anything else (a network error, throttling) fails the listing, so that it is tried again.
 */
const OBJECT_ERRORS = new Set(['EISDIR', 'ENOTDIR', 'EACCES', 'EPERM', 'ELOOP', 'AccessDenied', 'InvalidObjectState']);

function objectError(error: unknown): string | undefined {
  const e = error as { code?: unknown; name?: unknown; message?: unknown };
  const code = [e.code, e.name].find((c): c is string => typeof c === 'string' && OBJECT_ERRORS.has(c));
  return code && `it cannot be read (${code}): ${String(e.message)}`;
}

async function listedRun(store: Store, runId: string): Promise<ListedRun | undefined> {
  try {
    const loaded = await loadManifest(store, runId);
    return loaded && { runId, manifest: loaded.manifest };
  } catch (error) {
    if (error instanceof UnreadableManifestError) return { runId, unreadable: error };
    const why = objectError(error);
    if (why) return { runId, unreadable: new UnreadableManifestError(runId, manifestKey(runId), why) };
    throw error;
  }
}

/** The readable manifests among the most recent runs (the unreadable ones are `listRuns`' to show). */
export async function listManifests(store: Store, limit = 20, sinceDay?: string): Promise<RunManifest[]> {
  return (await listRuns(store, limit, sinceDay)).flatMap((r) => ('manifest' in r ? [r.manifest] : []));
}

const requestRecordSchema = z.object({ runId: z.string().optional() });

/** The run a request made, once the launcher has made it (requests/<request-id>). */
export async function runOfRequest(store: Store, requestId: string): Promise<string | undefined> {
  const object = await store.get(requestClaimKey(requestId));
  if (!object) return undefined;
  try {
    return requestRecordSchema.parse(JSON.parse(object.body.toString('utf8'))).runId;
  } catch {
    return undefined;
  }
}
