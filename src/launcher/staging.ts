/**
 * `/starfish stage`: copies a whole SpaceTx experiment (experiment.json, the codebook, every
 * image type's collections, FOV tile lists and tiles) into the team's store, so that runs read it
 * from there. The copy is complete and loads on its own (src/spacetx/staged-layout.ts), or
 * nothing is copied: the experiment is read and checked as starfish would load it first.
 */
import pLimit from 'p-limit';
import { stagedPrefix } from '../run/layout.js';
import type { CoreDeps } from '../core.js';
import type { RunEventOf } from '../run/run-events.js';
import { absoluteLocation } from '../run/locations.js';
import { errorMessage, noticeMessage } from '../messages/blocks.js';
import { escapeMrkdwn } from '../messages/message.js';
import type { Result } from '../result.js';
import { ok, refuse } from '../result.js';
import type { Reader, Store } from '../ports.js';
import { ExperimentError } from '../spacetx/schema.js';
import { walkExperiment, type ExperimentFile } from '../spacetx/walk.js';
import { STAGED_MARKER, rewritten, stagedPaths } from '../spacetx/staged-layout.js';

const STAGE_CONCURRENCY = 16;
/** Problems shown in one refusal; the count says how many more there are. */
const SHOWN_PROBLEMS = 5;

/** One file of the staged copy: copied as it is, or written with its references rewritten. */
interface StagedFile {
  rel: string;
  from: string;
  /** Where it goes (Store.locate): refused at planning when the store cannot hold that key. */
  to: string;
  body?: Buffer;
}

/** What to copy and write, or why the experiment cannot be staged (nothing copied yet). */
async function planCopy(reader: Reader, store: Store, source: string, name: string): Promise<Result<StagedFile[]>> {
  let walked: { files: ExperimentFile[]; problems: string[] };
  try {
    walked = await walkExperiment(reader, source);
  } catch (error) {
    if (error instanceof ExperimentError) return refuse(error.message);
    throw error;
  }
  if (walked.problems.length) {
    const more = walked.problems.length > SHOWN_PROBLEMS ? ` (and ${walked.problems.length - SHOWN_PROBLEMS} more)` : '';
    return refuse(`starfish would not load this experiment, so a copy would not either: ${walked.problems.slice(0, SHOWN_PROBLEMS).join(' • ')}${more}`);
  }
  const paths = stagedPaths(walked.files, walked.files[0]!.at);
  if (!paths.ok) return paths;
  const locate = (rel: string) => store.locate(`${stagedPrefix(name)}/${rel}`);
  const files: StagedFile[] = [];
  const unplaceable: string[] = [];
  for (const file of walked.files) {
    const rel = paths.value.get(file.at)!;
    try {
      const to = locate(rel);
      const body = rewritten(file, paths.value, locate);
      files.push({ rel, from: file.at, to, ...(body ? { body } : {}) });
    } catch (error) {
      // A key the store cannot hold (S3: 1,024 bytes) is found before anything is copied.
      unplaceable.push(escapeMrkdwn((error as Error).message));
    }
  }
  if (unplaceable.length) return refuse(`${unplaceable.length} file(s) cannot be placed in the staged copy: ${unplaceable.slice(0, SHOWN_PROBLEMS).join(' • ')}`);
  return ok(files);
}

/** Deletes what an incomplete staging wrote, the marker last (it holds the name until then). */
async function removeCopy(store: Store, keys: string[], marker: string): Promise<void> {
  const limit = pLimit(STAGE_CONCURRENCY);
  await Promise.all(keys.map((k) => limit(() => store.delete(k))));
  await store.delete(marker);
}

export async function stageExperiment(deps: Pick<CoreDeps, 'reader' | 'store' | 'chat' | 'log'>, raw: RunEventOf<'StageRequested'>): Promise<void> {
  const { reader, store, chat, log } = deps;
  const event = { ...raw, source: absoluteLocation(raw.source) };
  const readable = reader.checkReadable(event.source);
  if (!readable.ok) return chat.ephemeral(event.channel, event.userId, errorMessage(readable.reason), event.responseUrl);
  let planned: Result<StagedFile[]>;
  try {
    planned = await planCopy(reader, store, event.source, event.name);
  } catch (error) {
    planned = refuse(`Could not stage the experiment at ${escapeMrkdwn(event.source)}: ${escapeMrkdwn((error as Error).message)}. Example: /starfish stage s3://lab-data/iss/experiment.json as=iss`);
  }
  if (!planned.ok) return chat.ephemeral(event.channel, event.userId, errorMessage(`${planned.reason}${/[.!?]$/.test(planned.reason) ? '' : '.'} Nothing was staged.`), event.responseUrl);
  const files = planned.value;
  const key = (rel: string) => `${stagedPrefix(event.name)}/${rel}`;
  // Runs may be reading a staged experiment: a name is staged once.
  const claim = await store.createIfAbsent(key(STAGED_MARKER), JSON.stringify({ source: event.source, by: event.userId, files: files.length }));
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
    files.map((file) =>
      limit(async () => {
        try {
          // A JSON file whose references changed is written; every other file is copied as it is.
          if (file.body) await store.put(key(file.rel), file.body);
          else await reader.copy(file.from, file.to);
        } catch (error) {
          failures.push(`${file.rel}: ${(error as Error).message}`);
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
  // An incomplete copy is removed and does not hold the name: the next attempt may stage it.
  if (failures.length) await removeCopy(store, files.map((f) => key(f.rel)), key(STAGED_MARKER));
  log.info({ source: event.source, name: event.name, files: files.length, failed: failures.length }, 'staging finished');
  const target = store.locate(key(files[0]!.rel));
  await chat.update(
    ref,
    failures.length
      ? errorMessage(
          `Staging ${event.name} copied ${files.length - failures.length}/${files.length} files; ${failures.length} failed, e.g. ${escapeMrkdwn(failures.slice(0, 3).join('; '))}. The partial copy was removed; stage again as=${event.name} once the files are there.`,
        )
      : noticeMessage(`:white_check_mark: Staged ${files.length} files as *${event.name}*. Run it with \`/starfish run ${target}\``),
  );
}
