/** Reading and compare-and-swap updating of run manifests through the Store port. */
import type { Store } from '../ports.js';
import { manifestSchema, type RunManifest } from './manifest.js';
import { RUNS_PREFIX, runKeys } from './layout.js';

const manifestKey = (runId: string) => runKeys(runId).manifest;

class ManifestConflictError extends Error {}

export async function loadManifest(store: Store, runId: string): Promise<{ manifest: RunManifest; etag: string } | undefined> {
  const object = await store.get(manifestKey(runId));
  if (!object) return undefined;
  const parsed = manifestSchema.safeParse(JSON.parse(object.body.toString('utf8')));
  if (!parsed.success) throw new Error(`${manifestKey(runId)} does not match the manifest schema: ${parsed.error.issues[0]?.message}`);
  return { manifest: parsed.data, etag: object.etag };
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

export async function listManifests(store: Store, limit = 20): Promise<RunManifest[]> {
  const ids = (await store.listFolders(RUNS_PREFIX)).sort().reverse();
  // Run ids start with the day (yymmdd) and end at random: take whole days, newest first, until
  // there are enough, then order by creation time.
  const chosen: string[] = [];
  for (const id of ids) {
    if (chosen.length >= limit && id.slice(0, 6) !== chosen.at(-1)!.slice(0, 6)) break;
    chosen.push(id);
  }
  const manifests = await Promise.all(chosen.map(async (id) => (await loadManifest(store, id))?.manifest));
  return manifests
    .filter((m): m is RunManifest => m !== undefined)
    .sort((a, b) => b.createdAt.localeCompare(a.createdAt))
    .slice(0, limit);
}
