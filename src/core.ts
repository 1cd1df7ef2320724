/** What the workers need, wired once by the backend (src/local/system.ts or src/aws/system.ts). */
import type { Chat, Clock, Executor, Reader, Store } from './ports.js';
import type { Policy } from './run/policy.js';
import type { Result } from './result.js';

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };

export interface Settings {
  /** Root-message updates closer together than this are held back (the last one always goes). */
  progressIntervalMs: number;
  /** Failure digests closer together than this are held back, so 500 failures are not 500 posts. */
  digestIntervalMs: number;
  /** A job in RUNNABLE longer than this is reported as stuck. */
  stuckAfterMs: number;
  /** Whether plain file paths are acceptable experiment and recipe locations. */
  allowPaths: boolean;
}

export interface CoreDeps {
  store: Store;
  reader: Reader;
  executor: Executor;
  chat: Chat;
  policy: Policy;
  clock: Clock;
  log: Logger;
  settings: Settings;
  /**
   * Checks a recipe's source before launch (the local backend parses it with Python, so a
   * syntax error is one answer, not one failure per FOV); undefined when fine.
   */
  checkRecipe?: (source: Buffer) => Promise<Result<void>>;
  /** Members of the policy's approver group, resolved by the chat side (Slack usergroups). */
  approverGroupMembers?: () => Promise<string[]>;
}

/**
 * The deployed cadence: a 10,000-FOV run over two hours then costs about 120 progress updates
 * and 24 digests, whatever its FOV count (see BENCHMARKS.md, notifier simulation).
 */
export const PRODUCTION_SETTINGS: Settings = {
  progressIntervalMs: 60_000,
  digestIntervalMs: 5 * 60_000,
  stuckAfterMs: 30 * 60_000,
  allowPaths: false,
};
