/**
 * Expected refusals (bad input, a policy saying no) travel as values of one type; exceptions are
 * for faults. A refusal's `reason` is a sentence for the scientist: what was wrong and an example
 * of what is right. It is shown, never parsed back.
 */
export type Result<T> = { ok: true; value: T } | { ok: false; reason: string };

export const ok = <T>(value: T): Result<T> => ({ ok: true, value });
export const refuse = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });

/** A check that found nothing to refuse. */
export const passed: Result<void> = { ok: true, value: undefined };

/** The first refusal among checks taken in order, or `passed`. */
export function firstRefusal(...checks: Array<Result<unknown>>): Result<void> {
  for (const check of checks) if (!check.ok) return check;
  return passed;
}
