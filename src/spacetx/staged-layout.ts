/**
 * Where each file of an experiment goes in a staged copy, and what its JSON says there. The copy
 * is self-contained: every reference is rewritten to point inside it.
 *
 * - experiment.json is staged under that name; files in its folder (or below) keep their path
 *   there, with their real names (an S3 key gets a space, not "%20").
 * - Files elsewhere on the same disk, bucket or host (`../other/tiles.json`, an absolute path or
 *   URL) go to their path relative to that folder with the ".." steps dropped: other/tiles.json.
 * - Files on another bucket or host go under its name: other-bucket/iss/codebook.json.
 *
 * Two different files that would land on one path are refused, naming both: a copy must not
 * silently lose one.
 */
import path from 'node:path';
import { escapeMrkdwn } from '../messages/message.js';
import { refuse, ok, type Result } from '../result.js';
import { entryUrl, readerLocation, referenceTo, resolveReference, unquote } from './url.js';
import type { ExperimentFile } from './walk.js';

/** The staged copy's own marker file (src/launcher/staging.ts), which no experiment file may take. */
export const STAGED_MARKER = '.staged.json';
const EXPERIMENT_NAME = 'experiment.json';

/** A location's disk, bucket or host, and its path there as segments with real names. */
function split(at: string): { space: string; segments: string[] } {
  const m = /^(s3|https?):\/\/([^/]*)(\/.*)?$/.exec(at);
  if (!m) return { space: 'file', segments: at.split('/') };
  const raw = (m[3] ?? '').split('/');
  // S3 keys are the names themselves; an https path is percent-encoded.
  return { space: `${m[1]}://${m[2]}`, segments: m[1] === 's3' ? raw : raw.map(unquote) };
}

const clean = (segments: string[]) => segments.filter((s) => s !== '' && s !== '.' && s !== '..');

/** The path of each file (by its reader location) under the staged folder, or why not. */
export function stagedPaths(files: ExperimentFile[], experimentAt: string): Result<Map<string, string>> {
  const root = split(experimentAt);
  const rootFolder = root.segments.slice(0, -1);
  const paths = new Map<string, string>();
  const taken = new Map<string, string>([[STAGED_MARKER, 'the staged copy\'s own record']]);
  for (const file of files) {
    const { space, segments } = split(file.at);
    let rel: string[];
    if (space !== root.space) {
      rel = [space.replace(/^\w+:\/\//, ''), ...clean(segments)];
    } else if (segments.length > rootFolder.length && rootFolder.every((s, i) => segments[i] === s) && clean(segments.slice(rootFolder.length)).length === segments.length - rootFolder.length) {
      rel = segments.slice(rootFolder.length);
    } else {
      rel = clean(path.posix.relative(rootFolder.join('/') || '/', segments.join('/') || '/').split('/'));
    }
    // experiment.json by that name, whatever the source calls it: `/starfish run` takes no spaces.
    const key = file.at === experimentAt ? EXPERIMENT_NAME : clean(rel).join('/');
    const other = taken.get(key);
    if (other !== undefined && other !== file.at) {
      return refuse(
        `${escapeMrkdwn(other)} and ${escapeMrkdwn(file.at)} would both be staged as ${escapeMrkdwn(key)} (files outside experiment.json's folder are copied into it by their path without the ".." steps). Rename or move one of them, e.g. keep the experiment's files in one folder.`,
      );
    }
    taken.set(key, file.at);
    paths.set(file.at, key);
  }
  return ok(paths);
}

/**
 * A JSON document of the experiment as it must read in the staged copy, or undefined when every
 * reference in it already leads to the right copy (the file is then copied byte for byte). A
 * reference that already leads there is kept as written. `locate` gives a staged path's location
 * in the store (a path, or s3://bucket/key).
 */
export function rewritten(file: ExperimentFile, paths: Map<string, string>, locate: (rel: string) => string): Buffer | undefined {
  if (!file.doc || !file.references.length) return undefined;
  const from = paths.get(file.at)!;
  const fromUrl = entryUrl(locate(from));
  const s3 = locate(from).startsWith('s3://');
  const value = structuredClone(file.doc.value) as Record<string | number, unknown>;
  let changed = false;
  for (const ref of file.references) {
    const to = paths.get(ref.target.at)!;
    if (readerLocation(resolveReference(fromUrl, ref.written)) === locate(to)) continue;
    changed = true;
    const written = referenceTo(from, to, s3 ? 's3' : 'disk', locate(to));
    const parent = ref.field.slice(0, -1).reduce<Record<string | number, unknown>>((node, key) => node[key] as Record<string | number, unknown>, value);
    parent[ref.field.at(-1)!] = written;
  }
  return changed ? Buffer.from(JSON.stringify(value, null, 1)) : undefined;
}
