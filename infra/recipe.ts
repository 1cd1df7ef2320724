/**
 * The recipe every deployment carries (issue 15): starfish's documented ISS pipeline
 * (examples/recipes/iss_starfish.py), so that `/starfish run s3://…/experiment.json` works on the
 * day of the deploy, before a lab has uploaded a recipe of its own.
 *
 * The same file is in two places: the process-fov image (containers/process-fov/Dockerfile COPYs
 * it to `imagePath`, for running the image by hand) and the results bucket at `key`, which is what
 * a run uses: the launcher reads the recipe from S3 and snapshots it into runs/<id>/inputs, like
 * any other. The deployed policy names the S3 copy as its defaultRecipe unless the lab's own
 * policy names one.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { isWithin, type Policy } from '../src/run/policy.js';
import { definesProcessFov } from '../src/launcher/request-check.js';

export const BUNDLED_RECIPE = {
  /** In this repository (its README: examples/recipes/README.md). */
  source: 'examples/recipes/iss_starfish.py',
  /** Where the process-fov image has it. */
  imagePath: '/opt/starfish-chatops/recipes/iss_starfish.py',
  /** Where the stack writes it in the results bucket; the stack owns everything under recipes/bundled/. */
  key: 'recipes/bundled/iss_starfish.py',
} as const;

/**
 * The text travels inside the template, twice (the Create and Update calls; CloudFormation takes a
 * template of at most 1 MB), and in every event CloudFormation sends the custom resource's Lambda,
 * whose limit (MAX_CUSTOM_RESOURCE_EVENT_BYTES) is the tighter one for text with many quotes. A
 * recipe is a few KB of source (iss_starfish.py: 5 KB).
 */
export const MAX_BUNDLED_RECIPE_BYTES = 64 * 1024;

/**
 * CloudFormation invokes the custom resource's Lambda asynchronously, and the event of an update
 * that changes the recipe carries its text four times (the Create and Update calls, in the new
 * properties and in the old), each escaped twice (a JSON string in the call AwsCustomResource
 * serializes, in the event's JSON). Lambda took at most 256 KB for an asynchronous event until late
 * 2025 (1 MB since): the older limit is kept, so no partition or region still on it fails a deploy.
 */
export const MAX_CUSTOM_RESOURCE_EVENT_BYTES = 256 * 1024;
/** The rest of the event: the response URL (a presigned URL), the stack and request ids, the ARNs. */
const EVENT_REST_BYTES = 8 * 1024;

/** An upper bound of the size of the update event that writes `text` (see above). */
export function updateEventBytes(text: string): number {
  // JSON.stringify escaped the control characters; one beyond ASCII may arrive as \uXXXX, escaped once more: 7 bytes.
  const copy = JSON.stringify(JSON.stringify(text)).replace(/[^ -~]/g, '\\\\uXXXX').length;
  return 4 * copy + EVENT_REST_BYTES;
}

/** The recipe's text, as it will be written to S3: UTF-8, since it travels as a JSON string. */
export function readBundledRecipe(repoRoot: string): string {
  const file = path.join(repoRoot, BUNDLED_RECIPE.source);
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    throw new Error(`infra: the bundled recipe ${BUNDLED_RECIPE.source} could not be read (${(error as Error).message}); the stack uploads it as the default recipe. Restore it from git (git checkout HEAD -- ${BUNDLED_RECIPE.source}).`, { cause: error });
  }
  if (bytes.length > MAX_BUNDLED_RECIPE_BYTES) {
    throw new Error(
      `infra: the bundled recipe ${BUNDLED_RECIPE.source} is ${bytes.length.toLocaleString('en-US')} bytes; at most ${MAX_BUNDLED_RECIPE_BYTES.toLocaleString('en-US')} fit in the template. ` +
        `Keep the bundled recipe small, and put a larger one in the lab bucket with starfish:policy's defaultRecipe naming it, e.g. "defaultRecipe": "s3://lab-data/recipes/iss.py".`,
    );
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (error) {
    throw new Error(`infra: the bundled recipe ${BUNDLED_RECIPE.source} is not UTF-8 text; save it as UTF-8 (Python's default source encoding).`, { cause: error });
  }
  const event = updateEventBytes(text);
  if (event > MAX_CUSTOM_RESOURCE_EVENT_BYTES) {
    throw new Error(
      `infra: the bundled recipe ${BUNDLED_RECIPE.source} would make CloudFormation's update event for it ${event.toLocaleString('en-US')} bytes (it carries the text four times, escaped twice: quotes, backslashes and newlines count double and more); ` +
        `Lambda takes at most ${MAX_CUSTOM_RESOURCE_EVENT_BYTES.toLocaleString('en-US')}. Keep the bundled recipe small, and put a larger one in the lab bucket with starfish:policy's defaultRecipe naming it, e.g. "defaultRecipe": "s3://lab-data/recipes/iss.py".`,
    );
  }
  if (!definesProcessFov(text)) {
    // The launcher refuses a recipe without it; better to hear it at synth than at the first run.
    throw new Error(`infra: the bundled recipe ${BUNDLED_RECIPE.source} defines no process_fov function, which every FOV job calls (examples/recipes/README.md).`);
  }
  return text;
}

/**
 * The policy the Lambdas get: the lab's own, with the bundled recipe as defaultRecipe when the lab
 * names none. When the lab lists approvedRecipePrefixes, the bundled recipe is among them: it is
 * code from the lab's own copy of this repository that only a deploy can change (the job role may
 * not write recipes/), so running it is no reason to ask an approver. An empty list stays empty
 * (it means any recipe is fine; one entry would make every other recipe need approval).
 */
export function withBundledRecipe(policy: Policy, recipeUrl: string): Policy {
  const prefixes = policy.approval.approvedRecipePrefixes;
  const approve = prefixes.length > 0 && !prefixes.some((p) => isWithin(recipeUrl, p));
  return {
    ...policy,
    defaultRecipe: policy.defaultRecipe ?? recipeUrl,
    ...(approve ? { approval: { ...policy.approval, approvedRecipePrefixes: [...prefixes, recipeUrl] } } : {}),
  };
}

/** Where a run reads the bundled recipe in the results bucket `bucketName` (a name or a deploy-time token). */
export function bundledRecipeUrl(bucketName: string): string {
  return `s3://${bucketName}/${BUNDLED_RECIPE.key}`;
}

/** The longest URL the bundled recipe can have (S3 bucket names have at most 63 characters). */
const LONGEST_URL = bundledRecipeUrl('b'.repeat(63));

/**
 * How long the policy is as JSON once deployed, with the bundled recipe added: what the Lambdas'
 * 4 KB environment must hold (the bucket's name is known only at deploy time: the longest counts).
 */
export function deployedPolicyLength(policy: Policy): number {
  return JSON.stringify(withBundledRecipe(policy, LONGEST_URL)).length;
}
