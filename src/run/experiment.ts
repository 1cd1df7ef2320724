/**
 * Reads a SpaceTx experiment far enough to know its FOVs: experiment.json → the primary image
 * manifest → its `contents`. The user never types a FOV count.
 */
import { z } from 'zod';
import { escapeMrkdwn } from '../messages/message.js';
import type { Reader } from '../ports.js';
import { resolveRelative } from './locations.js';

const experimentSchema = z.object({
  version: z.string().optional(),
  images: z.object({ primary: z.string() }).passthrough(),
});

const imageManifestSchema = z.object({ contents: z.record(z.string(), z.string()) });

export class ExperimentError extends Error {}

export interface ExperimentInfo {
  fovs: number[];
  /** experiment.json as read, for the run's snapshot (no second read). */
  source: Buffer;
}

const FOV_NAME = /^fov_(\d+)$/;
/** A SpaceTx JSON file of 1,000,000 FOVs is about 50 MB: past this one is not read. */
const MAX_SPACETX_JSON_BYTES = 128 * 2 ** 20;

/**
 * Reads and parses one SpaceTx JSON file; failures are ExperimentErrors a scientist can act on.
 * Their messages are mrkdwn: what came from the experiment (its URLs, FOV names) is escaped.
 */
export async function readJson(reader: Reader, url: string, what: string, example: string): Promise<{ body: Buffer; value: unknown }> {
  let body: Buffer;
  try {
    body = await reader.read(url, { maxBytes: MAX_SPACETX_JSON_BYTES });
  } catch (error) {
    throw new ExperimentError(`Could not read the ${what} at ${escapeMrkdwn(url)}: ${escapeMrkdwn((error as Error).message)}. Example of a valid location: ${example}`);
  }
  try {
    return { body, value: JSON.parse(body.toString('utf8')) };
  } catch {
    throw new ExperimentError(`The ${what} at ${escapeMrkdwn(url)} is not valid JSON. Check the file; a SpaceTx ${what} looks like ${example}`);
  }
}

export async function readExperiment(reader: Reader, url: string): Promise<ExperimentInfo> {
  const experiment = await readJson(reader, url, 'experiment.json', 's3://lab-data/iss/experiment.json');
  const exp = experimentSchema.safeParse(experiment.value);
  if (!exp.success) {
    throw new ExperimentError(
      `${url} is not a SpaceTx experiment.json: it needs "images": {"primary": "primary_image.json", …}. Example: {"version": "5.0.0", "images": {"primary": "primary_image.json"}, "codebook": "codebook.json"}`,
    );
  }
  const primaryUrl = resolveRelative(url, exp.data.images.primary);
  const rawManifest = await readJson(reader, primaryUrl, 'primary image manifest', '{"version": "0.1.0", "contents": {"fov_000": "primary-fov_000.json"}}');
  const manifest = imageManifestSchema.safeParse(rawManifest.value);
  if (!manifest.success) {
    throw new ExperimentError(`${escapeMrkdwn(primaryUrl)} has no "contents" listing the FOVs. Example: {"version": "0.1.0", "contents": {"fov_000": "primary-fov_000.json"}}`);
  }
  const fovs: number[] = [];
  for (const name of Object.keys(manifest.data.contents)) {
    const m = FOV_NAME.exec(name);
    if (!m) throw new ExperimentError(`FOV "${escapeMrkdwn(name)}" in ${escapeMrkdwn(primaryUrl)} is not named fov_<number>; starfish names FOVs like fov_000, fov_001.`);
    fovs.push(Number(m[1]));
  }
  if (!fovs.length) throw new ExperimentError(`${escapeMrkdwn(primaryUrl)} lists no FOVs; there is nothing to process.`);
  fovs.sort((a, b) => a - b);
  return { fovs, source: experiment.body };
}
