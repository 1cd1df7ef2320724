/**
 * `/starfish stage`: copies a whole SpaceTx experiment (experiment.json, image manifests, FOV
 * tile JSON, tiles, codebook) into the team's store, so that runs read it from there.
 */
import pLimit from 'p-limit';
import { stagedPrefix } from '../run/layout.js';
import type { CoreDeps } from '../core.js';
import type { RunEventOf } from '../run/run-events.js';
import { absoluteLocation, resolveRelative } from '../run/locations.js';
import { errorMessage, noticeMessage } from '../messages/blocks.js';
import { escapeMrkdwn } from '../messages/message.js';
import type { Reader } from '../ports.js';
import { ExperimentError, readJson } from '../run/experiment.js';

const STAGE_CONCURRENCY = 16;

async function json(reader: Reader, url: string, what: string): Promise<Record<string, unknown>> {
  return (await readJson(reader, url, what, 's3://lab-data/iss/experiment.json')).value as Record<string, unknown>;
}

/** Every file an experiment consists of, as [source URL, path relative to experiment.json]. */
async function experimentFiles(reader: Reader, experimentUrl: string): Promise<Array<[string, string]>> {
  const files = new Map<string, string>();
  const add = (ref: string, from: string) => {
    const url = resolveRelative(from, ref);
    const base = resolveRelative(experimentUrl, '.');
    // The staged JSON keeps its relative references, so only files inside the folder can move.
    if (!url.startsWith(base)) throw new Error(`${from} refers to ${ref}, outside the experiment's folder; staging copies one folder (put the file next to experiment.json)`);
    files.set(url, url.slice(base.length).replace(/^\//, ''));
    return url;
  };
  add(experimentUrl, experimentUrl);
  const experiment = await json(reader, experimentUrl, 'experiment.json');
  const images = (experiment.images ?? {}) as Record<string, string>;
  if (typeof experiment.codebook === 'string') add(experiment.codebook, experimentUrl);
  for (const manifestRef of Object.values(images)) {
    const manifestUrl = add(manifestRef, experimentUrl);
    const manifest = await json(reader, manifestUrl, 'image manifest');
    for (const fovRef of Object.values((manifest.contents ?? {}) as Record<string, string>)) {
      const fovUrl = add(fovRef, manifestUrl);
      const fov = await json(reader, fovUrl, 'FOV tile list');
      for (const tile of (fov.tiles ?? []) as Array<{ file?: string }>) if (tile.file) add(tile.file, fovUrl);
    }
  }
  return [...files.entries()];
}

export async function stageExperiment(deps: CoreDeps, raw: RunEventOf<'StageRequested'>): Promise<void> {
  const { reader, store, chat, log } = deps;
  const event = { ...raw, source: absoluteLocation(raw.source) };
  const readable = reader.checkReadable(event.source);
  if (!readable.ok) return chat.ephemeral(event.channel, event.userId, errorMessage(readable.reason), event.responseUrl);
  let files: Array<[string, string]>;
  try {
    files = await experimentFiles(reader, event.source);
  } catch (error) {
    return chat.ephemeral(
      event.channel,
      event.userId,
      errorMessage(
        error instanceof ExperimentError
          ? `${error.message} Nothing was staged.`
          : `Could not stage the experiment at ${escapeMrkdwn(event.source)}: ${escapeMrkdwn((error as Error).message)}. Example: /starfish stage s3://lab-data/iss/experiment.json as=iss`,
      ),
      event.responseUrl,
    );
  }
  const destination = (rel: string) => store.locate(`${stagedPrefix(event.name)}/${rel}`);
  // Runs may be reading a staged experiment: a name is staged once.
  const claim = await store.createIfAbsent(`${stagedPrefix(event.name)}/.staged.json`, JSON.stringify({ source: event.source, by: event.userId, files: files.length }));
  if (claim === 'exists') {
    return chat.ephemeral(event.channel, event.userId, errorMessage(`An experiment is already staged as ${event.name}; runs may be reading it. Choose another name, e.g. as=${event.name}-2`), event.responseUrl);
  }
  const source = escapeMrkdwn(event.source);
  const ref = await chat.post(event.channel, noticeMessage(`:inbox_tray: Staging ${files.length} files of ${source} as *${event.name}*… 0/${files.length}`));
  const limit = pLimit(STAGE_CONCURRENCY);
  let done = 0;
  let lastShown = 0;
  const failures: string[] = [];
  await Promise.all(
    files.map(([url, rel]) =>
      limit(async () => {
        try {
          await reader.copy(url, destination(rel));
        } catch (error) {
          failures.push(`${rel}: ${(error as Error).message}`);
        }
        done++;
        // Show progress at most every 10%, so a 40,000-tile experiment is ~10 updates.
        if (done - lastShown >= Math.max(1, files.length / 10) && done < files.length) {
          lastShown = done;
          await chat.update(ref, noticeMessage(`:inbox_tray: Staging ${source} as *${event.name}*… ${done}/${files.length} files`));
        }
      }),
    ),
  );
  // An incomplete copy must not hold the name: the next attempt may stage over it.
  if (failures.length) await store.delete(`${stagedPrefix(event.name)}/.staged.json`);
  log.info({ source: event.source, name: event.name, files: files.length, failed: failures.length }, 'staging finished');
  const target = destination(files[0]![1]);
  await chat.update(
    ref,
    failures.length
      ? errorMessage(`Staging ${event.name} copied ${files.length - failures.length}/${files.length} files; ${failures.length} failed, e.g. ${escapeMrkdwn(failures.slice(0, 3).join('; '))}`)
      : noticeMessage(`:white_check_mark: Staged ${files.length} files as *${event.name}*. Run it with \`/starfish run ${target}\``),
  );
}
