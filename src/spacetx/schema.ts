/**
 * What starfish's loader requires of each SpaceTx document, from its code rather than only its
 * JSON schemas (the two differ: the loader reads `extras` and 4.0.0's `auxiliary_images`
 * unconditionally, and its codebook reader requires `v`, which the schema leaves optional).
 * Sources: starfish/core/experiment/experiment.py (Experiment.from_json, verify_version) and
 * starfish/core/codebook/codebook.py (open_json, from_code_array) at 0.2.2 and 0.4.0, which
 * agree; slicedimage/io/_base.py and _v0_1_0.py at 4.1.1 (Reader.parse_doc, the collection and
 * tileset readers). Failures are ExperimentErrors naming the file and the field, with an example.
 */
import semver, { type SemVer } from 'semver';
import { z } from 'zod';
import { escapeMrkdwn } from '../messages/message.js';

/** A SpaceTx experiment that starfish would not load; the message is mrkdwn, ready to show. */
export class ExperimentError extends Error {}

export const EXAMPLES = {
  experiment: '{"version": "5.0.0", "images": {"primary": "primary_images.json"}, "codebook": "codebook.json", "extras": {}}',
  experiment4: '{"version": "4.0.0", "primary_images": "primary_images.json", "auxiliary_images": {"nuclei": "nuclei.json"}, "codebook": "codebook.json", "extras": {}}',
  collection: '{"version": "0.1.0", "contents": {"fov_000": "primary_images-fov_000.json"}, "extras": {}}',
  tileset:
    '{"version": "0.1.0", "dimensions": ["x", "y", "r", "c", "z"], "shape": {"r": 4, "c": 4, "z": 1}, "default_tile_format": "TIFF", "tiles": [{"file": "primary_images-fov_000-c0-r0-z0.tiff", "coordinates": {"xc": [0, 0.1], "yc": [0, 0.1], "zc": [0, 0.01]}, "indices": {"r": 0, "c": 0, "z": 0}}]}',
  codebook: '{"version": "0.0.0", "mappings": [{"codeword": [{"r": 0, "c": 3, "v": 1}, {"r": 1, "c": 2, "v": 1}], "target": "ACTB"}]}',
} as const;

/** Experiment versions Experiment.verify_version accepts (MIN/MAX_SUPPORTED_VERSION, both releases). */
const EXPERIMENT_VERSIONS = { min: '4.0.0', max: '5.0.0' };

/**
 * semantic_version.Version's strict form (MAJOR.MINOR.PATCH[-prerelease][+build], no leading
 * zeros, no "v"): the semver package parses SemVer 2.0 as starfish's semantic_version does and
 * orders it the same way (a prerelease before its release, build metadata ignored).
 */
function parseExperimentVersion(text: string): SemVer | undefined {
  return /^\d/.test(text) ? (semver.parse(text) ?? undefined) : undefined;
}

export type ExperimentShape = 'images' | 'primary_images';

/**
 * Experiment.verify_version, then the shape from_json reads: below 5.0.0 (4.x and 5.0.0's
 * prereleases) `primary_images` and `auxiliary_images`, from 5.0.0 on `images`.
 */
export function experimentShape(file: string, version: unknown): ExperimentShape {
  const where = `${escapeMrkdwn(file)}: "version"`;
  const accepted = `starfish reads experiment versions ${EXPERIMENT_VERSIONS.min} to ${EXPERIMENT_VERSIONS.max}. Example: ${EXAMPLES.experiment}`;
  if (version === undefined) throw new ExperimentError(`${where} is missing; ${accepted}`);
  const parsed = typeof version === 'string' ? parseExperimentVersion(version) : undefined;
  if (!parsed) throw new ExperimentError(`${where} is ${escapeMrkdwn(JSON.stringify(version))}, not a version like "5.0.0"; ${accepted}`);
  if (parsed.compare(EXPERIMENT_VERSIONS.min) < 0 || parsed.compare(EXPERIMENT_VERSIONS.max) > 0) {
    throw new ExperimentError(`${where} is ${escapeMrkdwn(String(version))}, which starfish does not support; ${accepted}`);
  }
  return parsed.compare(EXPERIMENT_VERSIONS.max) < 0 ? 'primary_images' : 'images';
}

/**
 * slicedimage's Reader.parse_doc: `version` is parsed as a PEP 440 version and must be one a
 * reader exists for, 0.0.0 up to (not including) 0.2.0.
 */
export function checkPartitionVersion(file: string, version: unknown, example: string): 0 | 1 {
  const where = `${escapeMrkdwn(file)}: "version"`;
  const accepted = `slicedimage reads versions 0.0.0 to 0.1.x. Example: ${example}`;
  if (version === undefined) throw new ExperimentError(`${where} is missing; ${accepted}`);
  const m = typeof version === 'string' ? /^v?(\d+(?:\.\d+)*)((?:a|b|rc|\.?dev|\.?post)\d*)*$/i.exec(version.trim()) : null;
  if (!m) throw new ExperimentError(`${where} is ${escapeMrkdwn(JSON.stringify(version))}, not a version like "0.1.0"; ${accepted}`);
  const release = m[1]!.split('.').map(Number);
  while (release.length < 3) release.push(0);
  // A pre- or dev release sorts just before its release, a post release just after.
  const below = m[2] !== undefined && !/post/i.test(m[2]);
  const [major, minor] = release;
  const isZero = release.every((n) => n === 0);
  const ok = major === 0 && (minor === 0 || minor === 1 || (minor === 2 && below && release.slice(2).every((n) => n === 0))) && !(isZero && below);
  if (!ok) throw new ExperimentError(`${where} is ${escapeMrkdwn(version as string)}, which slicedimage cannot read; ${accepted}`);
  return minor === 0 ? 0 : 1;
}

/** The field a zod issue is about, as a person would write it: tiles[3].file. */
function fieldOf(issuePath: ReadonlyArray<PropertyKey>): string {
  return issuePath.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('');
}

/** The value at a zod issue's path, to tell a missing field from a wrong one. */
function valueAt(value: unknown, issuePath: ReadonlyArray<PropertyKey>): unknown {
  return issuePath.reduce<unknown>((node, key) => (node !== null && typeof node === 'object' ? (node as Record<PropertyKey, unknown>)[key] : undefined), value);
}

const article = (type: string) => (type === 'record' || type === 'object' ? 'an object' : /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`);

/** Checks `value` against a schema; the first problem becomes an ExperimentError naming file and field. */
export function checkDocument<T>(schema: z.ZodType<T>, value: unknown, file: string, example: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const field = fieldOf(issue.path);
  // zod's own messages start "Invalid input"; the schemas' messages say what is right.
  const own = !issue.message.startsWith('Invalid');
  const wrong = own ? issue.message : issue.code === 'invalid_type' ? `must be ${article(issue.expected)}` : escapeMrkdwn(issue.message);
  const found = valueAt(value, issue.path);
  const shown = JSON.stringify(found) ?? '';
  const is = shown.length <= 40 ? ` is ${escapeMrkdwn(shown)}:` : '';
  const problem = !field ? 'is not a JSON object' : found === undefined ? `has no "${escapeMrkdwn(field)}"` : `"${escapeMrkdwn(field)}"${is} ${wrong}`;
  const others = parsed.error.issues.length - 1;
  const more = others ? ` (and ${others} more problem${others > 1 ? 's' : ''} in this file)` : '';
  return fail(`${escapeMrkdwn(file)} ${problem}${more}. Example: ${example}`);
}

function fail(message: string): never {
  throw new ExperimentError(message);
}

const reference = z.string();
/** The loader reads `extras` with document['extras']: it must be there, and may be anything, null too. */
const extras = z.custom<unknown>((v) => v !== undefined, { message: 'is required (null or {} will do)' });

export const experiment5Schema = z.object({
  codebook: reference,
  images: z.record(z.string(), reference).refine((images) => 'primary' in images, { message: 'has no "primary": the primary images are what a recipe decodes' }),
});
export const experiment4Schema = z.object({
  codebook: reference,
  primary_images: reference,
  auxiliary_images: z.record(z.string(), reference),
});
/** What only the full check (staging) requires: planning runs on experiments without extras. */
export const extrasSchema = z.object({ extras });

export const collectionSchema = z.object({ contents: z.record(z.string(), reference) });

const IMAGE_FORMATS = ['TIFF', 'NUMPY', 'PNG'] as const;
const tileFormat = z.enum(IMAGE_FORMATS, { message: `must be one of ${IMAGE_FORMATS.join(', ')}` });

const count = z.number().int().min(0);
/** slicedimage's format_tile_coordinates: a number, or a [min, max] pair. */
const range = z.union([z.number(), z.tuple([z.number(), z.number()])], { message: 'must be a number or a [min, max] pair, e.g. [0.0, 0.1]' });
/**
 * Tile shapes: the 0.0.0 reader turns [y, x] lists into {"y", "x"} (format_tuple_shape_to_dict_shape
 * indexes [-2] and [-1]); the 0.1.0 reader takes the {"y", "x"} object as it is.
 */
const SHAPE_0 = 'must be [y, x] in a version 0.0.0 tile list, e.g. [2048, 2048]';
const TILE_SHAPES = {
  0: z.array(count, { message: SHAPE_0 }).min(2, { message: SHAPE_0 }),
  1: z.object({ y: count, x: count }, { message: 'must be {"y": …, "x": …} in a version 0.1.0 tile list, e.g. {"y": 2048, "x": 2048}' }),
};

/**
 * A FOV's tile list as slicedimage's reader (for its version: 0 for 0.0.x, 1 for 0.1.x) and
 * starfish's ImageStack read it: every tile needs file, coordinates with xc and yc, and indices
 * with r and c (zc and z are optional).
 */
export function tilesetSchema(minor: 0 | 1) {
  const shape = TILE_SHAPES[minor];
  return z.object({
    // slicedimage makes a frozenset of them: each must be a name (a list cannot be hashed).
    dimensions: z.array(z.union([z.string(), z.number()], { message: 'must be a dimension name like "r", "c", "z", "y" or "x"' })),
    shape: z.record(z.string(), z.unknown()),
    default_tile_shape: shape.nullish(),
    default_tile_format: tileFormat.nullish(),
    tiles: z.array(
      z.object({
        file: reference,
        coordinates: z.object({ xc: range, yc: range }).catchall(range),
        indices: z.object({ r: count, c: count }).catchall(z.unknown()),
        tile_shape: shape.nullish(),
        tile_format: tileFormat.nullish(),
        sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lower-case hex digits (what hashlib.sha256().hexdigest() gives, which slicedimage compares it with)').nullish(),
      }),
    ),
  });
}

/** ImageFormat.find_by_extension: the format a tile without tile_format or default_tile_format is read as. */
export function formatByExtension(name: string): string | undefined {
  const ext = name.includes('.') ? name.slice(name.lastIndexOf('.') + 1).toLowerCase() : '';
  return { tiff: 'TIFF', tif: 'TIFF', npy: 'NUMPY', png: 'PNG' }[ext];
}

const codebookSchema = z.object({
  version: z.literal('0.0.0', { message: 'must be "0.0.0", the only codebook version starfish reads' }),
  mappings: z.array(
    z.object({
      codeword: z.array(z.object({ r: count, c: count, v: z.number() })),
      target: z.unknown().refine((v) => v !== undefined, { message: 'is required' }),
    }),
  ),
});

/** Codebook.open_json: a list is the pre-0.0.0 format, which it refuses by name. */
export function checkCodebook(file: string, value: unknown): void {
  if (Array.isArray(value)) fail(`${escapeMrkdwn(file)} is a list of codewords, the codebook format of earlier starfish versions; starfish now reads an object with a version and the mappings. Example: ${EXAMPLES.codebook}`);
  checkDocument(codebookSchema, value, file, EXAMPLES.codebook);
}
