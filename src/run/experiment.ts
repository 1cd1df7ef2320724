/**
 * What `/starfish run` plans from: the FOVs of a SpaceTx experiment, read as starfish reads it
 * (src/spacetx/walk.ts) and numbered. The user never types a FOV count.
 */
import { escapeMrkdwn } from '../messages/message.js';
import type { Reader } from '../ports.js';
import { EXAMPLES, ExperimentError } from '../spacetx/schema.js';
import { readFovNames } from '../spacetx/walk.js';

export { ExperimentError };

export interface ExperimentInfo {
  fovs: number[];
  /** experiment.json as read, for the run's snapshot (no second read). */
  source: Buffer;
}

/** Past this a FOV number is not one (the largest selection is 1,000,000). */
const MAX_FOV_NUMBER = 999_999_999;
const NAMING = 'The run addresses FOVs by number (fovs=0-9), so FOVs must be named fov_<number>, e.g. fov_000, fov_001, fov_0000 or fov_7 (starfish itself accepts any name; this tool needs numbered ones).';

/**
 * A FOV name's number: fov_0000 → 0, fov_7 → 7. The FOV jobs find a FOV by the same rule
 * (containers/common/spacetx.py FOV_NAME), so a number must name one FOV.
 */
function fovNumber(name: string): number | undefined {
  const m = /^fov_(\d+)$/.exec(name);
  if (!m) return undefined;
  const n = Number(m[1]);
  return n <= MAX_FOV_NUMBER ? n : undefined;
}

function numberOf(name: string, where: string): number {
  const n = fovNumber(name);
  if (n !== undefined) return n;
  const why = /^fov_\d+$/.test(name) ? `has a number above ${MAX_FOV_NUMBER.toLocaleString('en-US')}` : 'is not named fov_<number>';
  throw new ExperimentError(`FOV "${escapeMrkdwn(name)}" in ${where} ${why}. ${NAMING}`);
}

/** Sorted FOV numbers; two names with one number (fov_1 and fov_001) are refused, naming both. */
function numbered(names: string[], where: string): number[] {
  const fovs = names.map((name) => numberOf(name, where));
  fovs.sort((a, b) => a - b);
  for (let i = 1; i < fovs.length; i++) {
    if (fovs[i] !== fovs[i - 1]) continue;
    const same = names.filter((name) => fovNumber(name) === fovs[i]).slice(0, 2);
    const what = same[0] === same[1] ? `FOV "${escapeMrkdwn(same[0]!)}" is listed twice` : `FOVs "${escapeMrkdwn(same[0]!)}" and "${escapeMrkdwn(same[1]!)}" both have the number ${fovs[i]}`;
    throw new ExperimentError(`${what} in ${where}, so fovs=${fovs[i]} would not say which FOV to run. ${NAMING}`);
  }
  return fovs;
}

export async function readExperiment(reader: Reader, url: string): Promise<ExperimentInfo> {
  const { experiment, names } = await readFovNames(reader, url);
  const where = `the primary images of ${escapeMrkdwn(experiment.at)}`;
  if (!names.length) throw new ExperimentError(`${where} list no FOVs (their "contents" is empty); there is nothing to process. A collection lists FOVs like ${EXAMPLES.collection}`);
  return { fovs: numbered(names, where), source: experiment.body };
}
