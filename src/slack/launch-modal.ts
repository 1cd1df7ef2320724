/**
 * The launch form: `/starfish run` with nothing after it opens this modal (views.open), and its
 * submission (view_submission) is read back into the same RunRequest a typed command makes,
 * through the grammar's own parsers (parseRunForm) and the dispatcher's checks. A refusal is
 * answered on the field it concerns (response_action "errors"), so nothing is half-launched and
 * nothing typed is lost. Block Kit limits: https://docs.slack.dev/reference/views (title and
 * buttons 24 characters, 100 blocks) and
 * https://docs.slack.dev/reference/block-kit/block-elements (a menu shows at most 100 options of
 * 75 characters, values of 150).
 */
import type { InputBlock, KnownBlock, ModalView, PlainTextOption } from '@slack/types';
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { parseRunForm, type RunField } from '../command/grammar.js';
import type { RunRequest } from '../run/manifest.js';
import { checkAccess, type Policy } from '../run/policy.js';
import { checkRunRequest, type DispatchDeps } from '../command/dispatcher.js';
import { CHANNEL_ID, untrustedPlain } from '../messages/message.js';

export const LAUNCH_CALLBACK = 'starfish_launch';

/** Block ids: Slack reports each field's value, and takes each error, by the block it is in. */
export const LAUNCH_FIELDS = {
  channel: 'channel',
  experiment: 'experiment',
  recipe: 'recipe',
  recipeUrl: 'recipe_url',
  fovs: 'fovs',
  queue: 'queue',
  name: 'name',
  dryRun: 'dry_run',
} as const;
type BlockId = (typeof LAUNCH_FIELDS)[keyof typeof LAUNCH_FIELDS];
const ACTION = 'value';
const DEFAULT_RECIPE = 'default';
const MAX_OPTIONS = 100;

const plain = (text: string) => ({ type: 'plain_text' as const, text });
const option = (text: string, value: string): PlainTextOption => ({ text: plain(untrustedPlain(text, 75)), value });
const fileName = (url: string) => url.replace(/[?#].*$/, '').split('/').filter(Boolean).at(-1) ?? url;

function textInput(blockId: BlockId, label: string, placeholder: string, hint: string, optional: boolean, maxLength = 2_048): InputBlock {
  return {
    type: 'input',
    block_id: blockId,
    optional,
    label: plain(label),
    hint: plain(hint),
    element: { type: 'plain_text_input', action_id: ACTION, placeholder: plain(placeholder), max_length: maxLength },
  };
}

/**
 * A lab recipe's menu value: its place in the list and a digest of its URL. A form opened before
 * the policy changed still names the recipe the person saw: a list reordered or edited since is
 * noticed instead of running whatever recipe now sits at that place. (URLs run to 2,048
 * characters; an option value holds 150.)
 */
const recipeValue = (url: string, i: number) => `recipe:${i}:${createHash('sha256').update(url).digest('hex').slice(0, 16)}`;

function recipeOptions(policy: Policy): PlainTextOption[] {
  const lab = policy.recipes.map((r, i) => option(`${r.name} (${fileName(r.url)})`, recipeValue(r.url, i)));
  const first = policy.defaultRecipe ? [option(`Lab default (${fileName(policy.defaultRecipe)})`, DEFAULT_RECIPE)] : [];
  return [...first, ...lab].slice(0, MAX_OPTIONS);
}

/** The form, opened from `channel` (preselected); every choice offered is one the policy allows. */
export function launchModal(policy: Policy, opened: { channel?: string }): ModalView {
  const recipes = recipeOptions(policy);
  // The default first when it would fall past the 100 a menu shows, so it is always offered.
  const allowed = policy.queues.allowed.indexOf(policy.queues.default) >= MAX_OPTIONS ? [policy.queues.default, ...policy.queues.allowed.filter((q) => q !== policy.queues.default)] : policy.queues.allowed;
  const queues = allowed.slice(0, MAX_OPTIONS).map((q) => option(q, q));
  const blocks: KnownBlock[] = [
    {
      type: 'input',
      block_id: LAUNCH_FIELDS.channel,
      label: plain('Post the run in'),
      hint: plain("The run's message, its progress and its results appear in this channel."),
      element: {
        type: 'conversations_select',
        action_id: ACTION,
        filter: { include: ['public', 'private'], exclude_bot_users: true },
        // The submission then carries a response_url for this channel, so the answer reaches the
        // person there even before the bot is invited.
        response_url_enabled: true,
        // Only a channel can be preselected: the menu lists channels, not direct messages.
        ...(opened.channel && CHANNEL_ID.test(opened.channel) ? { initial_conversation: opened.channel } : {}),
      },
    },
    textInput(LAUNCH_FIELDS.experiment, 'Experiment', 's3://lab-data/iss/experiment.json', "The experiment's experiment.json (SpaceTx format), as an s3:// or https:// URL.", false),
  ];
  if (recipes.length) {
    blocks.push({
      type: 'input',
      block_id: LAUNCH_FIELDS.recipe,
      optional: true,
      label: plain('Recipe'),
      hint: plain("The lab's recipes. The recipe is copied at launch: a retry reruns that copy."),
      element: { type: 'static_select', action_id: ACTION, options: recipes, ...(policy.defaultRecipe ? { initial_option: recipes[0]! } : {}) },
    });
  }
  blocks.push(
    textInput(
      LAUNCH_FIELDS.recipeUrl,
      recipes.length ? 'Or another recipe' : 'Recipe',
      's3://lab-data/recipes/iss.py',
      'A .py file defining process_fov(fov_index, experiment_url) or process_fov(fov, codebook).',
      recipes.length > 0,
    ),
    textInput(LAUNCH_FIELDS.fovs, 'FOVs', 'all', 'Empty for every FOV. FOV indices and ranges such as 0-15,20 (2 is FOV 2), or first=16 for the first 16.', true, 3_000),
    {
      type: 'input',
      block_id: LAUNCH_FIELDS.queue,
      label: plain('Queue'),
      element: { type: 'static_select', action_id: ACTION, options: queues, ...(queues.some((q) => q.value === policy.queues.default) ? { initial_option: option(policy.queues.default, policy.queues.default) } : {}) },
    },
    textInput(LAUNCH_FIELDS.name, 'Name', 'mouse-brain-2', 'Optional: a label for the run, up to 64 letters, digits, ".", "-" or "_".', true, 64),
    {
      type: 'input',
      block_id: LAUNCH_FIELDS.dryRun,
      optional: true,
      label: plain('Dry run'),
      element: { type: 'checkboxes', action_id: ACTION, options: [option('Plan it and show what it would cost; submit nothing', 'dry-run')] },
    },
  );
  return {
    type: 'modal',
    callback_id: LAUNCH_CALLBACK,
    title: plain('Start a starfish run'),
    submit: plain('Start'),
    close: plain('Cancel'),
    blocks,
  };
}

/** Instead of the form, for someone who may not start runs: why, and nothing to submit. */
export function launchRefusedModal(reason: string): ModalView {
  return { type: 'modal', callback_id: `${LAUNCH_CALLBACK}_refused`, title: plain('Start a starfish run'), close: plain('Close'), blocks: [{ type: 'section', text: plain(reason) }] };
}

/** The state Slack sends back: values by block id, then by action id. */
const stateSchema = z.record(
  z.string(),
  z.record(
    z.string(),
    z.object({
      value: z.string().nullish(),
      selected_option: z.object({ value: z.string() }).nullish(),
      selected_conversation: z.string().nullish(),
      selected_options: z.array(z.object({ value: z.string() })).nullish(),
    }),
  ),
);
type State = z.infer<typeof stateSchema>;

const field = (state: State, block: BlockId) => state[block]?.[ACTION];
const typed = (state: State, block: BlockId) => field(state, block)?.value?.trim() ?? '';
const chosen = (state: State, block: BlockId) => field(state, block)?.selected_option?.value;
const conversation = (state: State, block: BlockId) => field(state, block)?.selected_conversation ?? '';
const checked = (state: State, block: BlockId) => Boolean(field(state, block)?.selected_options?.length);

type LaunchErrors = Partial<Record<BlockId, string>>;
export type LaunchForm = { ok: true; request: RunRequest; channel: string } | { ok: false; errors: LaunchErrors };

/** Refusals are written for mrkdwn (an answer's text starts with :warning:); a modal shows its errors as plain text. */
export function plainError(reason: string): string {
  return reason.replace(/^:warning: /, '').replace(/<#([A-Z0-9]+)(?:\|[^>]*)?>/g, 'channel $1').replace(/<@([A-Z0-9]+)>/g, '@$1').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

type RecipeChoice = { recipe?: string; block: BlockId } | { error: string; block: BlockId };

/** The recipe the form chose: the menu's entry, or the URL typed under it, never both. */
function chosenRecipe(policy: Policy, state: State): RecipeChoice {
  const menu = chosen(state, LAUNCH_FIELDS.recipe);
  const url = typed(state, LAUNCH_FIELDS.recipeUrl);
  const listed = menu?.startsWith('recipe:') ? Number(menu.split(':')[1]) : undefined;
  const candidate = listed === undefined ? undefined : policy.recipes[listed]?.url;
  const fromMenu = candidate !== undefined && recipeValue(candidate, listed!) === menu ? candidate : undefined;
  if (listed !== undefined && !fromMenu) return { error: "That recipe is no longer on the lab's list; choose again.", block: LAUNCH_FIELDS.recipe };
  if (url && fromMenu) return { error: 'Choose a recipe from the menu or give its URL here, not both.', block: LAUNCH_FIELDS.recipeUrl };
  if (url) return { recipe: url, block: LAUNCH_FIELDS.recipeUrl };
  if (fromMenu) return { recipe: fromMenu, block: LAUNCH_FIELDS.recipe };
  return policy.defaultRecipe ? { block: LAUNCH_FIELDS.recipe } : noRecipeChosen(policy);
}

/** Nothing chosen where the lab has no default: asked on the field the person can fill in. */
function noRecipeChosen(policy: Policy): RecipeChoice {
  if (policy.recipes.length) return { error: "This lab has no default recipe: choose one of the lab's recipes, or give a recipe's URL below.", block: LAUNCH_FIELDS.recipe };
  return { error: 'This lab has no default recipe: give one. Example: s3://lab-data/recipes/iss.py', block: LAUNCH_FIELDS.recipeUrl };
}

/** Where and by whom: the channel must be one the policy takes runs in, from this person. */
function channelError(policy: Policy, userId: string, channel: string): string | undefined {
  if (!channel) return 'Choose the channel to post the run in.';
  // The menu offers channels only; anything else was not chosen from it, and would reach the run's
  // messages (and the budget lines' <#…>) as markup.
  if (!CHANNEL_ID.test(channel)) return 'Choose a channel from the menu: that is not a channel.';
  const access = checkAccess(policy, userId, channel, 'start');
  return access.ok ? undefined : plainError(access.reason);
}

/** The dispatcher's own checks of the request (locations this deployment reads, the lab's queues), each on its field. */
function policyErrors(deps: DispatchDeps, request: RunRequest, recipeBlock: BlockId): LaunchErrors {
  const errors: LaunchErrors = {};
  const checks = checkRunRequest(deps, request);
  const blocks = { experiment: LAUNCH_FIELDS.experiment, recipe: recipeBlock, queue: LAUNCH_FIELDS.queue } as const;
  for (const part of ['experiment', 'recipe', 'queue'] as const) {
    const check = checks[part];
    if (!check.ok) errors[blocks[part]] = plainError(check.reason);
  }
  return errors;
}

/**
 * The submitted form as a run request for `userId`, or the errors by field: what the typed
 * command would refuse (grammar, channel, access, locations, queue), each on its own field.
 */
export function readLaunchForm(deps: DispatchDeps, userId: string, values: unknown): LaunchForm {
  const parsedState = stateSchema.safeParse(values);
  if (!parsedState.success) return { ok: false, errors: { [LAUNCH_FIELDS.experiment]: 'The form came back incomplete; close it and type /starfish run again.' } };
  const state = parsedState.data;
  const channel = conversation(state, LAUNCH_FIELDS.channel);
  const recipe = chosenRecipe(deps.policy, state);
  const form = parseRunForm({
    experiment: typed(state, LAUNCH_FIELDS.experiment),
    ...('recipe' in recipe && recipe.recipe ? { recipe: recipe.recipe } : {}),
    fovs: typed(state, LAUNCH_FIELDS.fovs),
    queue: chosen(state, LAUNCH_FIELDS.queue) ?? deps.policy.queues.default,
    name: typed(state, LAUNCH_FIELDS.name),
    dryRun: checked(state, LAUNCH_FIELDS.dryRun),
  });
  const blockOf: Record<RunField, BlockId> = { experiment: LAUNCH_FIELDS.experiment, recipe: recipe.block, fovs: LAUNCH_FIELDS.fovs, queue: LAUNCH_FIELDS.queue, name: LAUNCH_FIELDS.name };
  const errors: LaunchErrors = form.ok ? policyErrors(deps, form.request, recipe.block) : {};
  if (!form.ok) for (const [f, reason] of Object.entries(form.errors) as Array<[RunField, string]>) errors[blockOf[f]] = plainError(reason);
  if ('error' in recipe) errors[recipe.block] = recipe.error;
  const where = channelError(deps.policy, userId, channel);
  if (where) errors[LAUNCH_FIELDS.channel] = where;
  return form.ok && !Object.keys(errors).length ? { ok: true, request: form.request, channel } : { ok: false, errors };
}
