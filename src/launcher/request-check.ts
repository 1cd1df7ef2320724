/**
 * Everything a run request must pass before anything is created: locations, queue, the
 * experiment and its FOVs, the selection, the recipe. Each refusal is one answer naming what was
 * wrong, with an example of what is right.
 */
import type { CoreDeps } from '../core.js';
import { absoluteLocation, checkLocation } from '../run/locations.js';
import { ExperimentError, readExperiment, type ExperimentInfo } from '../run/experiment.js';
import type { Plan, RunRequest } from '../run/manifest.js';
import { makePlan } from '../run/plan.js';
import { checkQueue } from '../run/policy.js';
import { firstRefusal, ok, passed, refuse, type Result } from '../result.js';

export interface CheckedRequest {
  /** The request with its paths made absolute, so that the jobs, a retry and `status` agree. */
  request: RunRequest & { recipe: string };
  queue: string;
  experiment: ExperimentInfo;
  plan: Plan;
  recipeBody: Buffer;
}

/** A recipe is source code; past this it is not one. */
const MAX_RECIPE_BYTES = 2 * 2 ** 20;

type Deps = Pick<CoreDeps, 'reader' | 'policy' | 'settings' | 'checkRecipe'>;

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
  const plan = makePlan(experiment.value.fovs, request.fovs);
  if (!plan.ok) return plan;
  const recipeBody = await recipeOf(deps, request.recipe);
  if (!recipeBody.ok) return recipeBody;
  return ok({ request, queue, experiment: experiment.value, plan: plan.value, recipeBody: recipeBody.value });
}

async function experimentOf(deps: Deps, url: string): Promise<Result<ExperimentInfo>> {
  try {
    return ok(await readExperiment(deps.reader, url));
  } catch (error) {
    if (error instanceof ExperimentError) return refuse(error.message);
    throw error;
  }
}

async function recipeOf(deps: Deps, recipe: string): Promise<Result<Buffer>> {
  let body: Buffer;
  try {
    body = await deps.reader.read(recipe, { maxBytes: MAX_RECIPE_BYTES });
  } catch (error) {
    return refuse(`Could not read the recipe at ${recipe}: ${(error as Error).message}. Example: recipe=s3://lab-data/recipes/iss.py`);
  }
  if (!/def\s+process_fov\s*\(/.test(body.toString('utf8'))) {
    return refuse(`The recipe at ${recipe} defines no process_fov function (process_fov(fov_index: int, experiment_url: str) or process_fov(fov: FieldOfView, codebook: Codebook)), which each FOV job calls. See examples/recipes/README.md.`);
  }
  const runnable = (await deps.checkRecipe?.(body)) ?? passed;
  if (!runnable.ok) return refuse(`The recipe at ${recipe} cannot run: ${runnable.reason}. Nothing was launched.`);
  return ok(body);
}
