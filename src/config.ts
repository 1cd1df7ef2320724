/** Configuration from the environment, validated once at start with messages a person can act on. */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { z } from 'zod';
import { parsePolicy, type Policy } from './run/policy.js';

const envSchema = z.object({
  STARFISH_BACKEND: z.enum(['local', 'aws']).default('local'),
  STARFISH_HOME: z.string().min(1).default('.starfish'),
  STARFISH_CONCURRENCY: z.coerce.number().int().positive().optional(),
  STARFISH_PYTHON: z.string().min(1).optional(),
  STARFISH_POLICY: z.string().min(1).optional(),
  STARFISH_CHANNEL: z.string().min(1).default('starfish'),
  SLACK_BOT_TOKEN: z.string().startsWith('xoxb-').optional(),
  SLACK_SIGNING_SECRET: z.string().min(1).optional(),
  SLACK_APP_TOKEN: z.string().startsWith('xapp-').optional(),
  SLACK_API_URL: z.string().url().optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('warn'),
});

const EXAMPLES: Record<string, string> = {
  STARFISH_BACKEND: 'STARFISH_BACKEND=local',
  STARFISH_CONCURRENCY: 'STARFISH_CONCURRENCY=4',
  SLACK_BOT_TOKEN: 'SLACK_BOT_TOKEN=xoxb-…',
  SLACK_APP_TOKEN: 'SLACK_APP_TOKEN=xapp-…',
  SLACK_API_URL: 'SLACK_API_URL=http://127.0.0.1:3999/api/',
  LOG_LEVEL: 'LOG_LEVEL=info',
};

export type Env = z.infer<typeof envSchema>;

export class ConfigError extends Error {}

export function readEnv(env: NodeJS.ProcessEnv = process.env): Env {
  const parsed = envSchema.safeParse(env);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const name = String(issue.path[0]);
  throw new ConfigError(`${name}=${env[name] ?? ''} is not valid: ${issue.message}.${EXAMPLES[name] ? ` Example: ${EXAMPLES[name]}` : ''}`);
}

/** Debian's interpreter sees the python3-* packages; a pyenv python3 on PATH may not. */
export function defaultPython(env: Env): string {
  if (env.STARFISH_PYTHON) return env.STARFISH_PYTHON;
  return existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
}

export function loadPolicy(env: Env, localUser: string): Policy {
  let raw: unknown = {};
  if (env.STARFISH_POLICY) {
    try {
      raw = JSON.parse(readFileSync(env.STARFISH_POLICY, 'utf8'));
    } catch (error) {
      throw new ConfigError(`Could not read the policy file STARFISH_POLICY=${env.STARFISH_POLICY}: ${(error as Error).message}`);
    }
  } else if (env.STARFISH_BACKEND === 'local') {
    // One person at one machine: they approve their own large runs.
    raw = { approval: { approvers: [localUser], allowSelfApproval: true }, queues: { default: 'local', allowed: ['local'] } };
  }
  return parsePolicy(raw, env.STARFISH_POLICY ?? 'the built-in local policy');
}

export function homeDir(env: Env): string {
  return path.resolve(env.STARFISH_HOME);
}

export const localUser = () => process.env.USER || os.userInfo().username || 'you';
