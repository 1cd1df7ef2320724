/**
 * Follows a SpaceTx experiment's references as starfish's Experiment.from_json and slicedimage's
 * Reader.parse_doc do: experiment.json → the codebook and each image type's collection →
 * nested collections → each FOV's tileset → its tiles. Every reference is resolved as slicedimage
 * resolves it (src/spacetx/url.ts) and passes the deployment's URL policy (Reader.checkReadable)
 * before it is read.
 *
 * Two depths: planning (`readFovNames`) reads experiment.json and the primary collection, and
 * one document per collection to tell a nested collection from a FOV, so a million-FOV
 * experiment is planned from two files (every other reference is checked, not read); staging (`walkExperiment`) reads and checks everything
 * the loader reads, because it copies everything.
 */
import pLimit from 'p-limit';
import { escapeMrkdwn } from '../messages/message.js';
import type { Reader } from '../ports.js';
import {
  EXAMPLES,
  ExperimentError,
  checkCodebook,
  checkDocument,
  checkPartitionVersion,
  collectionSchema,
  experiment4Schema,
  experiment5Schema,
  experimentShape,
  extrasSchema,
  formatByExtension,
  tilesetSchema,
} from './schema.js';
import { entryUrl, readerLocation, referenceProblem, resolveReference, unquote, type SpxUrl } from './url.js';

/** A SpaceTx JSON file of 1,000,000 FOVs is about 50 MB: past this one is not read. */
const MAX_SPACETX_JSON_BYTES = 128 * 2 ** 20;
const READ_CONCURRENCY = 16;
type Limit = ReturnType<typeof pLimit>;

/** A file of the experiment: where slicedimage finds it and where this deployment reads it. */
interface Located {
  url: SpxUrl;
  /** The Reader's location: a path, s3://bucket/key or an https URL. */
  at: string;
}

interface Doc extends Located {
  body: Buffer;
  value: Record<string, unknown>;
}

/** A reference inside a JSON document: where it is written (path into the value) and what it names. */
interface Reference {
  field: Array<string | number>;
  written: string;
  target: Located;
}

/** One file of the experiment; JSON documents carry their references, tiles do not. */
export interface ExperimentFile extends Located {
  doc?: Doc;
  references: Reference[];
}

/** A document that could not be read at all (missing, refused by the store): planning may go on without a probe. */
class UnreadableError extends ExperimentError {}

const fieldText = (field: Array<string | number>) => field.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
const S3_DOTS_HINT = ' (S3 keys are literal: ".." in a reference is part of the key, not the folder above, for starfish as for this reader)';

/** The file a reference names, checked against slicedimage's rules and the URL policy. */
function follow(reader: Reader, from: Located, field: Array<string | number>, written: string): Located {
  const where = `${escapeMrkdwn(from.at)}: "${escapeMrkdwn(fieldText(field))}" is "${escapeMrkdwn(written)}"`;
  const problem = referenceProblem(written);
  if (problem) throw new ExperimentError(`${where}, which starfish cannot follow: ${problem}. Write a path relative to the file, e.g. "primary_images-fov_000.json"`);
  const url = resolveReference(from.url, written);
  const at = readerLocation(url);
  if (!at) throw new ExperimentError(`${where}: starfish (slicedimage) reads file://, https:// and s3:// locations only. Example: "primary_images-fov_000.json" or "s3://lab-data/iss/primary_images.json"`);
  const readable = reader.checkReadable(at);
  if (!readable.ok) throw new ExperimentError(`${where}, which this deployment may not read: ${escapeMrkdwn(readable.reason)}`);
  return { url, at };
}

/** Reads one SpaceTx JSON document; failures are ExperimentErrors a scientist can act on. */
async function readDoc(reader: Reader, file: Located, what: string, example: string): Promise<Doc> {
  let body: Buffer;
  try {
    body = await reader.read(file.at, { maxBytes: MAX_SPACETX_JSON_BYTES });
  } catch (error) {
    const hint = file.at.startsWith('s3://') && file.at.includes('/../') ? S3_DOTS_HINT : '';
    throw new UnreadableError(`Could not read the ${what} at ${escapeMrkdwn(file.at)}: ${escapeMrkdwn((error as Error).message)}${hint}. A SpaceTx ${what} looks like ${example}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    throw new ExperimentError(`The ${what} at ${escapeMrkdwn(file.at)} is not valid JSON. Check the file; a SpaceTx ${what} looks like ${example}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    if (what === 'codebook') checkCodebook(file.at, value);
    throw new ExperimentError(`The ${what} at ${escapeMrkdwn(file.at)} is not a JSON object. A SpaceTx ${what} looks like ${example}`);
  }
  return { ...file, body, value: value as Record<string, unknown> };
}

/** The experiment a person named (a path or URL), checked like any reference. */
function locateExperiment(reader: Reader, location: string): Located {
  const url = entryUrl(location);
  const at = readerLocation(url);
  if (!at) throw new ExperimentError(`${escapeMrkdwn(location)} is not a location starfish reads (a path, file://, https:// or s3:// URL). Example: s3://lab-data/iss/experiment.json`);
  const readable = reader.checkReadable(at);
  if (!readable.ok) throw new ExperimentError(escapeMrkdwn(readable.reason));
  return { url, at };
}

/** experiment.json's image types and codebook, per its version's shape (checked as the loader does). */
function experimentReferences(doc: Doc): { images: Array<[string, Array<string | number>, string]>; codebook: string } {
  const shape = experimentShape(doc.at, doc.value.version);
  checkShapeMatchesVersion(doc, shape);
  if (shape === 'images') {
    const e = checkDocument(experiment5Schema, doc.value, doc.at, EXAMPLES.experiment);
    // Primary first: planning reads only it.
    const types = Object.keys(e.images).sort((a, b) => Number(b === 'primary') - Number(a === 'primary'));
    return { images: types.map((t) => [t, ['images', t], e.images[t]!]), codebook: e.codebook };
  }
  const e = checkDocument(experiment4Schema, doc.value, doc.at, EXAMPLES.experiment4);
  return {
    images: [['primary', ['primary_images'], e.primary_images], ...Object.entries(e.auxiliary_images).map(([t, ref]): [string, Array<string | number>, string] => [t, ['auxiliary_images', t], ref])],
    codebook: e.codebook,
  };
}

/** The 4.x and 5.0.0 shapes mixed up: say which shape the version asks for, not only what is missing. */
function checkShapeMatchesVersion(doc: Doc, shape: 'images' | 'primary_images'): void {
  const version = escapeMrkdwn(String(doc.value.version));
  if (shape === 'primary_images' && 'images' in doc.value && !('primary_images' in doc.value)) {
    throw new ExperimentError(
      `${escapeMrkdwn(doc.at)}: "version" is ${version}, below 5.0.0, so starfish reads it in the 4.x shape ("primary_images" and "auxiliary_images"), but it has "images", the 5.0.0 shape. Write "version": "5.0.0", or the 4.x shape: ${EXAMPLES.experiment4}`,
    );
  }
  if (shape === 'images' && 'primary_images' in doc.value && !('images' in doc.value)) {
    throw new ExperimentError(
      `${escapeMrkdwn(doc.at)}: "version" is ${version}, so starfish reads "images", but it has "primary_images", the 4.x shape. Write "version": "4.0.0", or the 5.0.0 shape: ${EXAMPLES.experiment}`,
    );
  }
}

type Partition = { kind: 'collection'; contents: Record<string, string> } | { kind: 'tileset'; minor: 0 | 1 };

/** slicedimage's parse: a document with `contents` is a collection, one with `tiles` a tileset. */
function partitionOf(doc: Doc): Partition {
  const minor = checkPartitionVersion(doc.at, doc.value.version, 'contents' in doc.value ? EXAMPLES.collection : EXAMPLES.tileset);
  if ('contents' in doc.value) return { kind: 'collection', contents: checkDocument(collectionSchema, doc.value, doc.at, EXAMPLES.collection).contents };
  if ('tiles' in doc.value) return { kind: 'tileset', minor };
  throw new ExperimentError(
    `${escapeMrkdwn(doc.at)} is neither an image collection (it has no "contents" listing FOVs) nor a FOV's tile list (it has no "tiles"). A collection looks like ${EXAMPLES.collection}`,
  );
}

/** Experiment.from_json lists an image type's FOVs with Collection.all_tilesets: a lone tileset has none. */
function imageCollection(doc: Doc): Record<string, string> {
  const partition = partitionOf(doc);
  if (partition.kind === 'tileset') {
    throw new ExperimentError(`${escapeMrkdwn(doc.at)} is one FOV's tile list, but an experiment's images must be a collection of FOVs. Example: ${EXAMPLES.collection}`);
  }
  return partition.contents;
}

// --- Planning -------------------------------------------------------------------------------

export interface FovNames {
  experiment: Doc;
  /** The FOV names of the primary images, as starfish's Collection.all_tilesets names them. */
  names: string[];
}

/**
 * The FOV names starfish would find in the primary images, reading as little as possible: the
 * collection, and its first entry to see whether the entries are FOVs or further collections.
 * An unreadable first entry is left to the FOV job's own check (which reads the experiment as
 * starfish does); the collection's names are planned.
 */
export async function readFovNames(reader: Reader, location: string): Promise<FovNames> {
  const experiment = await readDoc(reader, locateExperiment(reader, location), 'experiment.json', EXAMPLES.experiment);
  const { images, codebook } = experimentReferences(experiment);
  // What would fail every FOV is refused now, not once per FOV job: extras and the codebook
  // (one more read), and a reference to another image type starfish cannot follow, or this
  // deployment may not read (not read: their tile lists are each FOV job's to check).
  checkDocument(extrasSchema, experiment.value, experiment.at, 'primary_images' in experiment.value ? EXAMPLES.experiment4 : EXAMPLES.experiment);
  for (const [, field, ref] of images.slice(1)) follow(reader, experiment, field, ref);
  const [, field, ref] = images[0]!;
  const [book, collection] = await Promise.all([
    readDoc(reader, follow(reader, experiment, ['codebook'], codebook), 'codebook', EXAMPLES.codebook),
    readDoc(reader, follow(reader, experiment, field, ref), 'primary image collection', EXAMPLES.collection),
  ]);
  checkCodebook(book.at, book.value);
  const names: string[] = [];
  await collectNames(reader, imageCollection(collection), collection, names, pLimit(READ_CONCURRENCY));
  return { experiment, names };
}

async function collectNames(reader: Reader, contents: Record<string, string>, from: Doc, names: string[], limit: Limit): Promise<void> {
  // Every reference is checked (syntax, URL policy) without being read or kept: a million FOVs.
  let first: Located | undefined;
  for (const name in contents) {
    const target = follow(reader, from, ['contents', name], contents[name]!);
    first ??= target;
  }
  if (!first) return;
  const probe = await readDoc(reader, first, 'image collection or FOV tile list', EXAMPLES.collection).catch((error: unknown) => {
    if (error instanceof UnreadableError) return undefined;
    throw error;
  });
  if (!probe || partitionOf(probe).kind === 'tileset') {
    for (const name in contents) names.push(name);
    return;
  }
  // Nested collections: Collection.all_tilesets names each FOV by its key in the innermost one.
  const children = await Promise.all(
    Object.entries(contents).map(([name, ref], i) =>
      limit(async () => [name, i === 0 ? probe : await readDoc(reader, follow(reader, from, ['contents', name], ref), 'image collection or FOV tile list', EXAMPLES.collection)] as const),
    ),
  );
  for (const [name, child] of children) {
    const partition = partitionOf(child);
    if (partition.kind === 'tileset') names.push(name);
    else await collectNames(reader, partition.contents, child, names, limit);
  }
}

// --- Everything (staging) -------------------------------------------------------------------

/**
 * Every file of the experiment, each checked as starfish's loader checks it, or the problems
 * found (all of them, so that one answer lists what to fix). Tiles are listed, not read.
 */
export async function walkExperiment(reader: Reader, location: string): Promise<{ files: ExperimentFile[]; problems: string[] }> {
  const files = new Map<string, ExperimentFile>();
  const problems: string[] = [];
  const limit = pLimit(READ_CONCURRENCY);
  const attempt = async (work: () => Promise<void>) => {
    try {
      await work();
    } catch (error) {
      if (!(error instanceof ExperimentError)) throw error;
      problems.push(error.message);
    }
  };
  const add = (file: Located, doc?: Doc): ExperimentFile => {
    const known = files.get(file.at);
    if (known) return known;
    const entry: ExperimentFile = { ...file, references: [], ...(doc ? { doc } : {}) };
    files.set(file.at, entry);
    return entry;
  };
  const refer = (from: ExperimentFile, field: Array<string | number>, written: string): Located => {
    const target = follow(reader, from.doc!, field, written);
    from.references.push({ field, written, target });
    return target;
  };

  const visitPartition = async (file: Located, what: string, top: boolean): Promise<void> => {
    if (files.has(file.at)) return;
    const doc = await limit(() => readDoc(reader, file, what, EXAMPLES.collection));
    const entry = add(file, doc);
    const partition = top ? { kind: 'collection' as const, contents: imageCollection(doc) } : partitionOf(doc);
    if (partition.kind === 'collection') {
      await Promise.all(
        Object.entries(partition.contents).map(([name, ref]) => attempt(() => visitPartition(refer(entry, ['contents', name], ref), 'image collection or FOV tile list', false))),
      );
      return;
    }
    const tileset = checkDocument(tilesetSchema(partition.minor), doc.value, doc.at, EXAMPLES.tileset);
    tileset.tiles.forEach((tile, i) => {
      const target = refer(entry, ['tiles', i, 'file'], tile.file);
      const format = tile.tile_format ?? tileset.default_tile_format ?? formatByExtension(unquote(target.url.path));
      if (!format) {
        throw new ExperimentError(
          `${escapeMrkdwn(doc.at)}: "tiles[${i}].file" is "${escapeMrkdwn(tile.file)}", whose format slicedimage cannot tell: give "tile_format" (TIFF, NUMPY or PNG) or "default_tile_format", or name the file .tiff, .npy or .png`,
        );
      }
      add(target);
    });
  };

  await attempt(async () => {
    const experiment = add(locateExperiment(reader, location));
    experiment.doc = await readDoc(reader, experiment, 'experiment.json', EXAMPLES.experiment);
    const doc = experiment.doc;
    const { images, codebook } = experimentReferences(doc);
    await attempt(async () => void checkDocument(extrasSchema, doc.value, doc.at, 'primary_images' in doc.value ? EXAMPLES.experiment4 : EXAMPLES.experiment));
    await Promise.all([
      attempt(async () => {
        const target = refer(experiment, ['codebook'], codebook);
        const doc = await readDoc(reader, target, 'codebook', EXAMPLES.codebook);
        checkCodebook(doc.at, doc.value);
        add(target, doc);
      }),
      ...images.map(([type, field, ref]) => attempt(() => visitPartition(refer(experiment, field, ref), `${type} image collection`, true))),
    ]);
  });
  // Documents are read concurrently: sorted, the same experiment always gets the same answer.
  return { files: [...files.values()], problems: problems.sort() };
}
