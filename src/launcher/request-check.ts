/**
 * Everything a run request must pass before anything is created: locations, queue, the
 * experiment and its FOVs, the selection, the recipe. Each refusal is one answer naming what was
 * wrong, with an example of what is right.
 */
import type { CoreDeps } from '../core.js';
import { absoluteLocation, checkLocation } from '../run/locations.js';
import { ExperimentError, readExperiment, type ExperimentInfo } from '../run/experiment.js';
import type { Plan, RunRequest } from '../run/manifest.js';
import { makePlan, type PackingInput } from '../run/plan.js';
import { recipeSha256 } from '../run/cost.js';
import { checkQueue } from '../run/policy.js';
import { firstRefusal, ok, passed, refuse, type Result } from '../result.js';

export interface CheckedRequest {
  /** The request with its paths made absolute, so that the jobs, a retry and `status` agree. */
  request: RunRequest & { recipe: string };
  queue: string;
  experiment: ExperimentInfo;
  plan: Plan;
  recipeBody: Buffer;
  /** sha256 of recipeBody: the key of this recipe's timing history. */
  recipeSha256: string;
}

/**
 * How to pack FOVs into array children for this queue and recipe (from its estimate: the launcher
 * knows the history); absent or undefined: one FOV per child.
 */
export type PackingFor = (queue: string, recipeSha256: string) => Promise<PackingInput | undefined>;

/** A recipe is source code; past this it is not one. */
const MAX_RECIPE_BYTES = 2 * 2 ** 20;

type Deps = Pick<CoreDeps, 'reader' | 'policy' | 'settings' | 'checkRecipe'> & { packingFor?: PackingFor };

export async function checkRequest(deps: Deps, asked: RunRequest): Promise<Result<CheckedRequest>> {
  const where = { reader: deps.reader, allowPaths: deps.settings.allowPaths };
  const recipeSource = asked.recipe ?? deps.policy.defaultRecipe;
  if (!recipeSource) return refuse(`No recipe given and this lab has no default recipe. Add recipe=URL, e.g. recipe=s3://lab-data/recipes/iss.py`);
  const request = { ...asked, experiment: absoluteLocation(asked.experiment), recipe: absoluteLocation(recipeSource) };
  const queue = request.queue ?? deps.policy.queues.default;
  const allowed = firstRefusal(checkLocation(where, request.experiment, 'The experiment'), checkLocation(where, request.recipe, 'The recipe'), checkQueue(deps.policy, queue));
  if (!allowed.ok) return allowed;

  const experiment = await experimentOf(deps, request.experiment);
  if (!experiment.ok) return experiment;
  // The recipe before the plan: how FOVs are packed depends on what this recipe took before.
  const recipeBody = await recipeOf(deps, request.recipe);
  if (!recipeBody.ok) return recipeBody;
  const sha256 = recipeSha256(recipeBody.value);
  const plan = makePlan(experiment.value.fovs, request.fovs, await deps.packingFor?.(queue, sha256));
  if (!plan.ok) return plan;
  return ok({ request, queue, experiment: experiment.value, plan: plan.value, recipeBody: recipeBody.value, recipeSha256: sha256 });
}

async function experimentOf(deps: Deps, url: string): Promise<Result<ExperimentInfo>> {
  try {
    return ok(await readExperiment(deps.reader, url));
  } catch (error) {
    if (error instanceof ExperimentError) return refuse(error.message);
    throw error;
  }
}

/** Whether a recipe's text defines the function every FOV job calls (a text check: the launcher runs no Python). */
export const definesProcessFov = (text: string) => /def\s+process_fov\s*\(/.test(text);

async function recipeOf(deps: Deps, recipe: string): Promise<Result<Buffer>> {
  let body: Buffer;
  try {
    body = await deps.reader.read(recipe, { maxBytes: MAX_RECIPE_BYTES });
  } catch (error) {
    return refuse(`Could not read the recipe at ${recipe}: ${(error as Error).message}. Example: recipe=s3://lab-data/recipes/iss.py`);
  }
  if (!definesProcessFov(body.toString('utf8'))) {
    return refuse(`The recipe at ${recipe} defines no process_fov function (process_fov(fov_index: int, experiment_url: str) or process_fov(fov: FieldOfView, codebook: Codebook)), which each FOV job calls. See examples/recipes/README.md.`);
  }
  const runnable = (await deps.checkRecipe?.(body)) ?? passed;
  if (!runnable.ok) return refuse(`The recipe at ${recipe} cannot run: ${runnable.reason}. Nothing was launched.`);
  return ok(body);
}
