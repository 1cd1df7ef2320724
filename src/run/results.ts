/** results/summary.json as merge-results writes it (containers/README.md). */
import { z } from 'zod';

/** A job-written number of seconds: finite, not negative, at most 10,000 years (a year for each of 10,000 FOVs). */
const seconds = z.number().nonnegative().max(365 * 86_400 * 10_000);
const mib = z.number().nonnegative().max(16 * 2 ** 20);

/**
 * What the FOV jobs measured (fov_NNN.metrics.json), totalled by merge-results; absent from runs
 * before it existed. Shown and used for estimates, never for a decision about the run's state.
 */
const computeSchema = z.object({
  /** FOVs measured, failed ones included (their time was spent too); absent: fovs_processed. */
  fovs: z.number().int().nonnegative().optional(),
  wall_seconds: seconds,
  cpu_seconds: seconds,
  peak_rss_mib: z.object({ p50: mib, p90: mib, max: mib }).optional(),
  slowest: z.array(z.object({ fov: z.number().int().nonnegative(), wall_seconds: seconds })).max(5).optional(),
});

/** One recipe parameter as merge-results keeps it: a JSON scalar, its text one line of at most 200 characters. */
const parameterValue = z.union([z.string().max(200), z.number(), z.boolean(), z.null()]);

/**
 * Which recipe made the results: the sha256 of its text and the settings it declares (its
 * PARAMETERS literal, which merge-results reads from the text without running it). Absent when the
 * merge was not given the recipe; job-written, so only ever shown.
 */
const recipeSchema = z.object({
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  parameters: z
    .record(z.string().min(1).max(64), parameterValue)
    .refine((p) => Object.keys(p).length <= 32, 'at most 32 parameters')
    .optional(),
});

/**
 * merge-results draws spots.png (a panel per FOV) for runs of at most this many FOVs, and for a
 * larger run overview.png alone: PANEL_FOVS in containers/merge-results/merge_results.py. The run's
 * own plan (its FOV count) says which a run gets, so nothing the job wrote decides it.
 */
export const PANEL_FOVS = 16;

export const resultsSummarySchema = z.object({
  fovs_expected: z.number().int().nonnegative(),
  fovs_processed: z.number().int().nonnegative(),
  fovs_missing: z.array(z.number().int()),
  failures: z.record(z.string(), z.string()),
  spots_total: z.number().int().nonnegative(),
  spots_per_fov: z.record(z.string(), z.number()),
  counts_per_gene: z.record(z.string(), z.number()),
  // A malformed "compute" is dropped, not the summary: the spots are still the run's results.
  compute: computeSchema.optional().catch(undefined),
  // Likewise a malformed "recipe": the results stand without saying which recipe made them.
  recipe: recipeSchema.optional().catch(undefined),
});
export type ResultsSummary = z.infer<typeof resultsSummarySchema>;
