/**
 * The `/starfish` grammar: text in, a typed command or one specific error sentence out.
 * Never throws, whatever the input (the tests fuzz it).
 */
import { z } from 'zod';
import { closest, distance } from 'fastest-levenshtein';
import { parseRanges, type FovSelection } from '../run/fov-ranges.js';
import type { RunRequest } from '../run/manifest.js';

export type Command =
  | { name: 'run'; request: RunRequest }
  | { name: 'status'; runId?: string }
  | { name: 'list' }
  | { name: 'cancel'; runId: string }
  | { name: 'retry'; runId: string }
  | { name: 'approve'; runId: string }
  | { name: 'reject'; runId: string }
  | { name: 'stage'; source: string; as?: string }
  | { name: 'help'; topic?: string };

export type ParseResult = { ok: true; command: Command } | { ok: false; error: string };

export const SUBCOMMANDS = ['run', 'status', 'list', 'cancel', 'retry', 'stage', 'help', 'approve', 'reject'] as const;

export const EXAMPLES = {
  run: '/starfish run s3://lab-data/iss/experiment.json fovs=0-15 recipe=s3://lab-data/recipes/iss.py',
  status: '/starfish status 261125-k3f9',
  list: '/starfish list',
  cancel: '/starfish cancel 261125-k3f9',
  retry: '/starfish retry 261125-k3f9',
  approve: '/starfish approve 261125-k3f9',
  reject: '/starfish reject 261125-k3f9',
  stage: '/starfish stage https://d2nhj9g34unfro.cloudfront.net/20181005/ISS-TEST/experiment.json as=iss-test',
  help: '/starfish help run',
} as const satisfies Record<(typeof SUBCOMMANDS)[number], string>;

const RUN_OPTIONS = ['recipe', 'fovs', 'queue', 'name'] as const;
const RUN_FLAGS = ['dry-run'] as const;

export const RUN_ID = /^\d{6}-[a-z0-9]{4}$/;
const LABEL = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const QUEUE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;

/** Slack sends links as <url> or <url|label>, and HTML-escapes &, < and >. */
export function unwrapSlackText(text: string): string {
  return text
    .replace(/<((?:https?|s3|mailto):[^|>]*)(?:\|[^>]*)?>/g, '$1')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

const fail = (error: string): ParseResult => ({ ok: false, error });

/** A location the user typed: s3:// or https:// URL, or (local backend) a file path. */
const locationSchema = z.string().superRefine((value, ctx) => {
  if (value.startsWith('s3://')) {
    if (!/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\/.+/.test(value))
      ctx.addIssue({ code: 'custom', message: `"${value}" is not a complete S3 URL: it needs a bucket and a key, like s3://lab-data/iss/experiment.json` });
    return;
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) {
    let url: URL | undefined;
    try {
      url = new URL(value);
    } catch {
      /* reported below */
    }
    if (!url || url.protocol !== 'https:')
      ctx.addIssue({ code: 'custom', message: `"${value}" is not an s3:// or https:// URL; example: s3://lab-data/iss/experiment.json` });
    return;
  }
  if (value.includes('=')) {
    ctx.addIssue({ code: 'custom', message: `"${value}" looks like an option, but the experiment must come first; example: /starfish run s3://lab-data/iss/experiment.json ${value}` });
  }
});

function firstIssue(result: { success: boolean; error?: z.ZodError }): string | undefined {
  return result.success ? undefined : (result.error?.issues[0]?.message ?? 'invalid value');
}

function parseFovs(value: string): FovSelection | string {
  if (value === 'all') return { kind: 'all' };
  if (/^\d+$/.test(value)) {
    const count = Number(value);
    if (count === 0) return 'fovs=0 selects nothing; use fovs=all, a count like fovs=16, or indices like fovs=0-3,7';
    return { kind: 'first', count };
  }
  const ranges = parseRanges(value);
  if (typeof ranges === 'string') return `fovs=${value}: ${ranges}; use fovs=all, a count like fovs=16, or indices like fovs=0-3,7`;
  return { kind: 'list', ranges };
}

function suggest(word: string, options: readonly string[]): string | undefined {
  if (!word) return undefined;
  const best = closest(word.toLowerCase(), options as string[]);
  return distance(word.toLowerCase(), best) <= Math.max(2, Math.floor(best.length / 2)) ? best : undefined;
}

function parseRun(args: string[]): ParseResult {
  const [experiment, ...rest] = args;
  if (!experiment) return fail(`run needs the experiment to process. Example: ${EXAMPLES.run}`);
  const location = firstIssue(locationSchema.safeParse(experiment));
  if (location) return fail(location);
  const request: RunRequest = { experiment, fovs: { kind: 'all' }, dryRun: false };
  const seen = new Set<string>();
  for (const token of rest) {
    if ((RUN_FLAGS as readonly string[]).includes(token)) {
      request.dryRun = true;
      continue;
    }
    const eq = token.indexOf('=');
    if (eq <= 0) {
      const hint = suggest(token, [...RUN_FLAGS, ...RUN_OPTIONS.map((o) => `${o}=`)]);
      return fail(
        `"${token}" is not an option of run${hint ? ` (did you mean ${hint}?)` : ''}. Options are recipe=URL, fovs=all|N|a-b,c, queue=NAME, name=LABEL and dry-run. Example: ${EXAMPLES.run}`,
      );
    }
    const key = token.slice(0, eq).toLowerCase();
    const value = token.slice(eq + 1);
    if (!(RUN_OPTIONS as readonly string[]).includes(key)) {
      const hint = suggest(key, RUN_OPTIONS);
      const fovsHint = hint === 'fovs' ? ` (did you mean fovs=? fovs=16 takes the first 16 FOVs, fovs=3-3 only FOV 3, fovs=0-3,7 those FOVs)` : hint ? ` (did you mean ${hint}=?)` : '';
      return fail(`run has no option "${key}"${fovsHint}. Options are recipe=, fovs=, queue=, name= and dry-run. Example: ${EXAMPLES.run}`);
    }
    if (seen.has(key)) return fail(`${key}= is given twice; give it once. Example: ${EXAMPLES.run}`);
    seen.add(key);
    if (!value) return fail(`${key}= needs a value. Example: ${EXAMPLES.run}`);
    switch (key) {
      case 'recipe': {
        const problem = firstIssue(locationSchema.safeParse(value));
        if (problem) return fail(`recipe: ${problem.replace(/experiment\.json/g, 'recipes/iss.py').replace('iss/recipes/iss.py', 'recipes/iss.py')}`);
        if (!/\.py$/i.test(value.replace(/[?#].*$/, ''))) return fail(`recipe=${value} is not a Python file; a recipe is a .py file defining process_fov(fov_index, experiment_url). Example: recipe=s3://lab-data/recipes/iss.py`);
        request.recipe = value;
        break;
      }
      case 'fovs': {
        const fovs = parseFovs(value);
        if (typeof fovs === 'string') return fail(fovs);
        request.fovs = fovs;
        break;
      }
      case 'queue':
        if (!QUEUE.test(value)) return fail(`queue=${value} is not a queue name (letters, digits, - and _). Example: queue=ondemand`);
        request.queue = value;
        break;
      case 'name':
        if (!LABEL.test(value)) return fail(`name=${value} is not a usable label: up to 64 letters, digits, ".", "-" or "_". Example: name=mouse-brain-2`);
        request.name = value;
        break;
    }
  }
  return { ok: true, command: { name: 'run', request } };
}

function parseRunIdArg(name: 'cancel' | 'retry' | 'approve' | 'reject' | 'status', args: string[], optional: boolean): ParseResult | string | undefined {
  if (args.length > 1) return fail(`${name} takes one run id, got ${args.length}: ${args.join(' ')}. Example: ${EXAMPLES[name]}`);
  const runId = args[0];
  if (!runId) return optional ? undefined : fail(`${name} needs the run id, as shown in the run's message. Example: ${EXAMPLES[name]}`);
  if (!RUN_ID.test(runId.toLowerCase())) return fail(`"${runId}" is not a run id; run ids look like 261125-k3f9 (see /starfish list). Example: ${EXAMPLES[name]}`);
  return runId.toLowerCase();
}

export function parseCommand(input: unknown): ParseResult {
  if (typeof input !== 'string') return fail(`Type a command after /starfish. Example: ${EXAMPLES.run}`);
  const text = unwrapSlackText(input).trim();
  const [rawSub, ...args] = text.split(/\s+/).filter(Boolean);
  if (!rawSub) return { ok: true, command: { name: 'help' } };
  const sub = rawSub.toLowerCase();
  switch (sub) {
    case 'run':
      return parseRun(args);
    case 'list':
      if (args.length) return fail(`list takes no arguments. Example: ${EXAMPLES.list}`);
      return { ok: true, command: { name: 'list' } };
    case 'help': {
      const topic = args[0]?.toLowerCase();
      if (topic && !(SUBCOMMANDS as readonly string[]).includes(topic)) {
        const hint = suggest(topic, SUBCOMMANDS);
        return fail(`There is no command "${topic}"${hint ? ` (did you mean ${hint}?)` : ''}. Example: ${EXAMPLES.help}`);
      }
      return { ok: true, command: topic ? { name: 'help', topic } : { name: 'help' } };
    }
    case 'status': {
      const r = parseRunIdArg('status', args, true);
      if (typeof r === 'object') return r;
      return { ok: true, command: r ? { name: 'status', runId: r } : { name: 'status' } };
    }
    case 'cancel':
    case 'retry':
    case 'approve':
    case 'reject': {
      const r = parseRunIdArg(sub, args, false);
      if (typeof r !== 'string') return r ?? fail(`${sub} needs a run id`);
      return { ok: true, command: { name: sub, runId: r } };
    }
    case 'stage': {
      const [source, ...rest] = args;
      if (!source) return fail(`stage needs the experiment.json to copy. Example: ${EXAMPLES.stage}`);
      const problem = firstIssue(locationSchema.safeParse(source));
      if (problem) return fail(problem);
      let as: string | undefined;
      for (const token of rest) {
        const m = /^as=(.*)$/i.exec(token);
        if (!m) return fail(`"${token}" is not an option of stage; the only option is as=NAME. Example: ${EXAMPLES.stage}`);
        if (!LABEL.test(m[1]!)) return fail(`as=${m[1]} is not a usable name: up to 64 letters, digits, ".", "-" or "_". Example: as=iss-test`);
        as = m[1];
      }
      return { ok: true, command: as ? { name: 'stage', source, as } : { name: 'stage', source } };
    }
    default: {
      const hint = suggest(sub, SUBCOMMANDS);
      return fail(
        `"${rawSub}" is not a starfish command${hint ? `; did you mean "${hint}"?` : '.'} Commands: ${SUBCOMMANDS.filter((s) => s !== 'approve' && s !== 'reject').join(', ')}. Example: ${hint ? EXAMPLES[hint as keyof typeof EXAMPLES] : EXAMPLES.run}`,
      );
    }
  }
}
