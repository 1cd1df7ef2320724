/** results/summary.json as merge-results writes it (containers/README.md). */
import { z } from 'zod';

export const resultsSummarySchema = z.object({
  fovs_expected: z.number().int().nonnegative(),
  fovs_processed: z.number().int().nonnegative(),
  fovs_missing: z.array(z.number().int()),
  failures: z.record(z.string(), z.string()),
  spots_total: z.number().int().nonnegative(),
  spots_per_fov: z.record(z.string(), z.number()),
  counts_per_gene: z.record(z.string(), z.number()),
});
export type ResultsSummary = z.infer<typeof resultsSummarySchema>;
