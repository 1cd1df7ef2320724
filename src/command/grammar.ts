/**
 * The `/starfish` grammar: text in, a typed command or a refusal naming what was wrong (with an
 * example of what is right) out. Never throws, whatever the input (the tests fuzz it).
 */
import { fileURLToPath } from 'node:url';
import { closest, distance } from 'fastest-levenshtein';
import { parseRanges, type FovSelection } from '../run/fov-ranges.js';
import type { RunRequest } from '../run/manifest.js';
import { ok, refuse, type Result } from '../result.js';

export type Command =
  | { name: 'run'; request: RunRequest }
  | { name: 'status'; runId?: string }
  | { name: 'list' }
  | { name: 'cancel'; runId: string }
  | { name: 'retry'; runId: string }
  | { name: 'approve'; runId: string }
  | { name: 'reject'; runId: string; reason?: string }
  | { name: 'stage'; source: string; as?: string }
  | { name: 'help'; topic?: string };

/**
 * A `Result<Command>` that also carries the field names src/cli.ts and src/slack/app.ts still
 * read (`command`, `error`). Drop the two extra fields once those read `value` and `reason`.
 */

const SUBCOMMANDS = ['run', 'status', 'list', 'cancel', 'retry', 'stage', 'help', 'approve', 'reject'] as const;
type Subcommand = (typeof SUBCOMMANDS)[number];
type RunIdCommand = 'cancel' | 'retry' | 'approve' | 'reject';

export const EXAMPLES = {
  run: '/starfish run s3://lab-data/iss/experiment.json fovs=0-15 recipe=s3://lab-data/recipes/iss.py',
  status: '/starfish status 261125-k3f9',
  list: '/starfish list',
  cancel: '/starfish cancel 261125-k3f9',
  retry: '/starfish retry 261125-k3f9',
  approve: '/starfish approve 261125-k3f9',
  reject: '/starfish reject 261125-k3f9 use the spot queue for runs this size',
  stage: '/starfish stage https://d2nhj9g34unfro.cloudfront.net/20181005/ISS-TEST/experiment.json as=iss-test',
  help: '/starfish help run',
} as const satisfies Record<Subcommand, string>;

/** The example URL each kind of location is refused with, so that the hint fits what was asked. */
const EXAMPLE_URL = { experiment: 's3://lab-data/iss/experiment.json', recipe: 's3://lab-data/recipes/iss.py' } as const;

const RUN_OPTIONS = ['recipe', 'fovs', 'first', 'queue', 'name'] as const;
const MAX_SELECTION_CHARS = 4_000;
type RunOption = (typeof RUN_OPTIONS)[number];
const RUN_FLAGS = ['dry-run'] as const;

export const RUN_ID = /^\d{6}-[a-z0-9]{4}$/;
const LABEL = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const QUEUE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
const S3_URL = /^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\/.+/;
const ANY_SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;

const isOneOf = <T extends string>(options: readonly T[], word: string): word is T => (options as readonly string[]).includes(word);

/** Slack sends links as <url> or <url|label>, and HTML-escapes &, < and >. */
function unwrapSlackText(text: string): string {
  return text
    .replace(/<((?:https?|s3|mailto):[^|>]*)(?:\|[^>]*)?>/g, '$1')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

function suggest(word: string, options: readonly string[]): string | undefined {
  if (!word) return undefined;
  const best = closest(word.toLowerCase(), options as string[]);
  return distance(word.toLowerCase(), best) <= Math.max(2, Math.floor(best.length / 2)) ? best : undefined;
}

function isHttpsUrl(value: string): boolean {
  try {
    return new URL(value).protocol === 'https:';
  } catch {
    return false;
  }
}

/**
 * A location reaches every job's environment, which Batch caps at 8,192 characters in all: a
 * URL longer than browsers and CDNs accept is not one a lab uses. S3 keys are at most 1,024 bytes.
 */
const MAX_LOCATION_CHARS = 2_048;
const MAX_S3_KEY_BYTES = 1_024;

/** A location the user typed: an s3:// or https:// URL, or (local backend) a file path. */
function parseLocation(value: string, example: string): Result<string> {
  if (value.length > MAX_LOCATION_CHARS) {
    return refuse(`"${value.slice(0, 60)}…" is ${value.length.toLocaleString('en-US')} characters long; a location is at most ${MAX_LOCATION_CHARS.toLocaleString('en-US')}. Example: ${example}`);
  }
  if (value.startsWith('s3://')) {
    const key = value.slice(5).split('/').slice(1).join('/');
    if (Buffer.byteLength(key, 'utf8') > MAX_S3_KEY_BYTES) return refuse(`the key of "${value.slice(0, 60)}…" is longer than S3's 1,024 bytes, so no object has it. Example: ${example}`);
    return S3_URL.test(value) ? ok(value) : refuse(`"${value}" is not a complete S3 URL: it needs a bucket and a key, like ${example}`);
  }
  // A file:// URL is the path it names (the local backend reads paths; a deployment refuses both).
  if (/^file:\/\//i.test(value)) {
    let filePath: string;
    try {
      filePath = fileURLToPath(value);
    } catch {
      return refuse(`"${value}" is not a file:// URL of this machine; give the path itself, e.g. ./experiments/iss/experiment.json`);
    }
    // Decoding lets in what no typed path has: %00 (which every file call refuses) and line breaks.
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(filePath)) return refuse(`"${value}" names a path with a control character in it (%00, a line break…); give the path itself, e.g. ./experiments/iss/experiment.json`);
    return ok(filePath);
  }
  if (ANY_SCHEME.test(value)) {
    return isHttpsUrl(value) ? ok(value) : refuse(`"${value}" is not an s3:// or https:// URL; example: ${example}`);
  }
  if (value.includes('=')) {
    return refuse(`"${value}" looks like an option, but the experiment must come first; example: /starfish run ${example} ${value}`);
  }
  return ok(value);
}

/** The one rule for FOV selections, taught wherever a selection is refused. */
const FOV_RULE = 'fovs= takes FOV indices and ranges (fovs=2 is FOV 2; fovs=0-3,7) or all; first=16 takes the first 16 FOVs';

/** fovs=: indices and ranges only, so that fovs=2 never means "two FOVs". */
function parseFovs(value: string): Result<FovSelection> {
  if (value === 'all') return ok({ kind: 'all' });
  // Bounds before allocation: a selection is typed by a person; past this it is not one.
  if (value.length > MAX_SELECTION_CHARS) {
    return refuse(`fovs= is ${value.length.toLocaleString('en-US')} characters long; at most ${MAX_SELECTION_CHARS.toLocaleString('en-US')} are read. Use ranges, e.g. fovs=0-499,600-999`);
  }
  const ranges = parseRanges(value);
  if (!ranges.ok) return refuse(`fovs=${value}: ${ranges.reason}. ${FOV_RULE}`);
  return ok({ kind: 'list', ranges: ranges.value });
}

/** first=N: a count has its own spelling. */
function parseFirst(value: string): Result<FovSelection> {
  const count = /^\d{1,7}$/.test(value) ? Number(value) : 0;
  if (count > 0) return ok({ kind: 'first', count });
  return refuse(`first=${value.slice(0, 40)} is not a number of FOVs. ${FOV_RULE}`);
}

function parseRecipe(value: string): Result<Partial<RunRequest>> {
  const location = parseLocation(value, EXAMPLE_URL.recipe);
  if (!location.ok) return refuse(`recipe: ${location.reason}`);
  // A query or fragment does not make a .py URL something else.
  if (!/\.py$/i.test(value.replace(/[?#].*$/, ''))) {
    return refuse(`recipe=${value} is not a Python file; a recipe is a .py file defining process_fov(fov_index: int, experiment_url: str) or process_fov(fov: FieldOfView, codebook: Codebook). Example: recipe=${EXAMPLE_URL.recipe}`);
  }
  return ok({ recipe: location.value });
}

/** One parser per `key=value` option of run, each giving the part of the request it sets. */
const RUN_OPTION_PARSERS: Record<RunOption, (value: string) => Result<Partial<RunRequest>>> = {
  recipe: parseRecipe,
  fovs: (value) => {
    const fovs = parseFovs(value);
    return fovs.ok ? ok({ fovs: fovs.value }) : fovs;
  },
  first: (value) => {
    const fovs = parseFirst(value);
    return fovs.ok ? ok({ fovs: fovs.value }) : fovs;
  },
  queue: (value) => (QUEUE.test(value) ? ok({ queue: value }) : refuse(`queue=${value} is not a queue name (letters, digits, - and _). Example: queue=ondemand`)),
  name: (value) =>
    LABEL.test(value) ? ok({ name: value }) : refuse(`name=${value} is not a usable label: up to 64 letters, digits, ".", "-" or "_". Example: name=mouse-brain-2`),
};

function notARunOption(token: string): string {
  const hint = suggest(token, [...RUN_FLAGS, ...RUN_OPTIONS.map((o) => `${o}=`)]);
  return `"${token}" is not an option of run${hint ? ` (did you mean ${hint}?)` : ''}. Options are recipe=URL, fovs=all|a-b,c, first=N, queue=NAME, name=LABEL and dry-run. Example: ${EXAMPLES.run}`;
}

function unknownRunOption(key: string): string {
  const hint = suggest(key, RUN_OPTIONS);
  // fov= is the likeliest slip.
  const fovsHint = ` (did you mean fovs=? ${FOV_RULE})`;
  const didYouMean = hint === 'fovs' ? fovsHint : hint ? ` (did you mean ${hint}=?)` : '';
  return `run has no option "${key}"${didYouMean}. Options are recipe=, fovs=, first=, queue=, name= and dry-run. Example: ${EXAMPLES.run}`;
}

/** One word after the experiment: a flag, or a `key=value` option given once. */
function parseRunToken(token: string, seen: Set<string>): Result<Partial<RunRequest>> {
  if (isOneOf(RUN_FLAGS, token)) return ok({ dryRun: true });
  const eq = token.indexOf('=');
  if (eq <= 0) return refuse(notARunOption(token));
  const key = token.slice(0, eq).toLowerCase();
  const value = token.slice(eq + 1);
  if (!isOneOf(RUN_OPTIONS, key)) return refuse(unknownRunOption(key));
  if (seen.has(key)) return refuse(`${key}= is given twice; give it once. Example: ${EXAMPLES.run}`);
  if ((key === 'fovs' && seen.has('first')) || (key === 'first' && seen.has('fovs'))) return refuse(`fovs= and first= both choose the FOVs; give one. ${FOV_RULE}`);
  seen.add(key);
  if (!value) return refuse(`${key}= needs a value. Example: ${EXAMPLES.run}`);
  return RUN_OPTION_PARSERS[key](value);
}

function parseRun(args: string[]): Result<Command> {
  const [experiment, ...rest] = args;
  if (!experiment) return refuse(`run needs the experiment to process. Example: ${EXAMPLES.run}`);
  const location = parseLocation(experiment, EXAMPLE_URL.experiment);
  if (!location.ok) return location;
  const request: RunRequest = { experiment: location.value, fovs: { kind: 'all' }, dryRun: false };
  const seen = new Set<string>();
  for (const token of rest) {
    const part = parseRunToken(token, seen);
    if (!part.ok) return part;
    Object.assign(request, part.value);
  }
  return ok({ name: 'run', request });
}

/** The optional single run id argument, lower-cased (`undefined` when none was given). */
function parseRunIdArgument(name: RunIdCommand | 'status', args: string[]): Result<string | undefined> {
  if (args.length > 1) return refuse(`${name} takes one run id, got ${args.length}: ${args.join(' ')}. Example: ${EXAMPLES[name]}`);
  const typed = args[0];
  if (typed === undefined) return ok(undefined);
  const runId = typed.toLowerCase();
  if (!RUN_ID.test(runId)) return refuse(`"${typed}" is not a run id; run ids look like 261125-k3f9 (see /starfish list). Example: ${EXAMPLES[name]}`);
  return ok(runId);
}

function parseStatus(args: string[]): Result<Command> {
  const runId = parseRunIdArgument('status', args);
  if (!runId.ok) return runId;
  return ok(runId.value ? { name: 'status', runId: runId.value } : { name: 'status' });
}

function parseRunIdCommand(name: RunIdCommand, args: string[]): Result<Command> {
  const runId = parseRunIdArgument(name, args);
  if (!runId.ok) return runId;
  if (!runId.value) return refuse(`${name} needs the run id, as shown in the run's message. Example: ${EXAMPLES[name]}`);
  return ok({ name, runId: runId.value });
}

/** The longest reason a rejection carries: a sentence for the requester, not a letter. */
export const MAX_REASON_CHARS = 300;

/** reject <run-id> [reason…]: the words after the run id tell the requester why. */
function parseReject(args: string[]): Result<Command> {
  const [first, ...words] = args;
  const run = parseRunIdCommand('reject', first === undefined ? [] : [first]);
  if (!run.ok || run.value.name !== 'reject') return run;
  const reason = words.join(' ').trim();
  if (reason.length > MAX_REASON_CHARS) return refuse(`the reason is ${reason.length} characters; at most ${MAX_REASON_CHARS} are kept. Example: ${EXAMPLES.reject}`);
  return ok(reason ? { ...run.value, reason } : run.value);
}

function parseList(args: string[]): Result<Command> {
  return args.length ? refuse(`list takes no arguments. Example: ${EXAMPLES.list}`) : ok({ name: 'list' });
}

function parseHelp(args: string[]): Result<Command> {
  const topic = args[0]?.toLowerCase();
  if (!topic) return ok({ name: 'help' });
  if (isOneOf(SUBCOMMANDS, topic)) return ok({ name: 'help', topic });
  const hint = suggest(topic, SUBCOMMANDS);
  return refuse(`There is no command "${topic}"${hint ? ` (did you mean ${hint}?)` : ''}. Example: ${EXAMPLES.help}`);
}

function parseStageName(token: string): Result<string> {
  const m = /^as=(.*)$/i.exec(token);
  if (!m) return refuse(`"${token}" is not an option of stage; the only option is as=NAME. Example: ${EXAMPLES.stage}`);
  const name = m[1]!;
  if (!LABEL.test(name)) return refuse(`as=${name} is not a usable name: up to 64 letters, digits, ".", "-" or "_". Example: as=iss-test`);
  return ok(name);
}

function parseStage(args: string[]): Result<Command> {
  const [source, ...rest] = args;
  if (!source) return refuse(`stage needs the experiment.json to copy. Example: ${EXAMPLES.stage}`);
  const location = parseLocation(source, EXAMPLE_URL.experiment);
  if (!location.ok) return location;
  let as: string | undefined;
  for (const token of rest) {
    const name = parseStageName(token);
    if (!name.ok) return name;
    as = name.value;
  }
  return ok(as ? { name: 'stage', source: location.value, as } : { name: 'stage', source: location.value });
}

const PARSERS: Record<Subcommand, (args: string[]) => Result<Command>> = {
  run: parseRun,
  status: parseStatus,
  list: parseList,
  cancel: (args) => parseRunIdCommand('cancel', args),
  retry: (args) => parseRunIdCommand('retry', args),
  approve: (args) => parseRunIdCommand('approve', args),
  reject: parseReject,
  stage: parseStage,
  help: parseHelp,
};

function unknownCommand(typed: string): string {
  const hint = suggest(typed, SUBCOMMANDS) as Subcommand | undefined;
  // approve and reject are the buttons' typed form; the list shows what people type first.
  const listed = SUBCOMMANDS.filter((s) => s !== 'approve' && s !== 'reject').join(', ');
  return `"${typed}" is not a starfish command${hint ? `; did you mean "${hint}"?` : '.'} Commands: ${listed}. Example: ${EXAMPLES[hint ?? 'run']}`;
}

function parse(input: unknown): Result<Command> {
  if (typeof input !== 'string') return refuse(`Type a command after /starfish. Example: ${EXAMPLES.run}`);
  const [typed, ...args] = unwrapSlackText(input).trim().split(/\s+/).filter(Boolean);
  if (!typed) return ok({ name: 'help' });
  const sub = typed.toLowerCase();
  return isOneOf(SUBCOMMANDS, sub) ? PARSERS[sub](args) : refuse(unknownCommand(typed));
}

/** The fields of the launch form (src/slack/launch-modal.ts), each read as its typed option is. */
export type RunField = 'experiment' | 'recipe' | 'fovs' | 'queue' | 'name';
export type RunForm = Partial<Record<RunField, string>> & { dryRun?: boolean };
export type RunFormResult = { ok: true; request: RunRequest } | { ok: false; errors: Partial<Record<RunField, string>> };

/** A typed command is split on spaces, so a field holding one would be two words when typed. */
const NO_SPACES = (field: string, example: string) => `${field} has a space in it; a location has none (spaces in S3 keys are written %20). Example: ${example}`;

/**
 * The launch form as one run request, or every field's refusal at once (a form shows each
 * error on its own field). The same parsers as the typed options: the FOVs field takes what
 * fovs= takes, or first=N; an empty field is the option left out.
 */
export function parseRunForm(form: RunForm): RunFormResult {
  const errors: Partial<Record<RunField, string>> = {};
  const request: RunRequest = { experiment: '', fovs: { kind: 'all' }, dryRun: form.dryRun === true };
  const experiment = formExperiment(form.experiment);
  if (experiment.ok) request.experiment = experiment.value;
  else errors.experiment = experiment.reason;
  const recipe = unwrapSlackText(form.recipe ?? '').trim();
  if (/\s/.test(recipe)) errors.recipe = NO_SPACES('The recipe', EXAMPLE_URL.recipe);
  for (const [field, option, value] of formOptions({ ...form, recipe: errors.recipe ? '' : recipe })) {
    const part = RUN_OPTION_PARSERS[option](value);
    if (part.ok) Object.assign(request, part.value);
    else errors[field] = part.reason;
  }
  return Object.keys(errors).length ? { ok: false, errors } : { ok: true, request };
}

function formExperiment(text: string | undefined): Result<string> {
  const experiment = unwrapSlackText(text ?? '').trim();
  if (!experiment) return refuse(`Give the experiment.json to process. Example: ${EXAMPLE_URL.experiment}`);
  if (/\s/.test(experiment)) return refuse(NO_SPACES('The experiment', EXAMPLE_URL.experiment));
  return parseLocation(experiment, EXAMPLE_URL.experiment);
}

/** The filled-in fields as the typed options they stand for: the FOVs field is fovs=, or first= when it says so. */
function formOptions(form: RunForm): Array<[RunField, RunOption, string]> {
  const options: Array<[RunField, RunOption, string]> = [];
  // Spaces mean nothing in a FOV list ("first = 16", "0 - 15, 20"), and the typed command's own
  // spelling pasted into the field ("fovs=0-15") is what the field means anyway.
  const fovs = (form.fovs ?? '').replace(/\s+/g, '').replace(/^fovs=/i, '');
  const first = /^first=(.*)$/i.exec(fovs);
  if (first) options.push(['fovs', 'first', first[1]!]);
  else if (fovs) options.push(['fovs', 'fovs', fovs]);
  for (const field of ['recipe', 'queue', 'name'] as const) {
    const value = (form[field] ?? '').trim();
    if (value) options.push([field, field, value]);
  }
  return options;
}

export function parseCommand(input: unknown): Result<Command> {
  return parse(input);
}
