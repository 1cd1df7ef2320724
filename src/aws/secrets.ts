/**
 * The Slack credentials, read from Secrets Manager (STARFISH_SLACK_SECRET_ARN, a JSON secret
 * {"signingSecret": "…", "botToken": "xoxb-…"}) once per container. The values are never
 * logged and never appear in an error message.
 */
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { z } from 'zod';
import { secretsClient } from './clients.js';

const slackSecretSchema = z.object({
  signingSecret: z.string().min(1),
  botToken: z.string().startsWith('xoxb-'),
});
export type SlackSecret = z.infer<typeof slackSecretSchema>;

async function readSlackSecret(client: SecretsManagerClient, secretArn: string): Promise<SlackSecret> {
  const { GetSecretValueCommand } = await import('@aws-sdk/client-secrets-manager');
  const out = await client.send(new GetSecretValueCommand({ SecretId: secretArn }));
  let raw: unknown;
  try {
    raw = JSON.parse(out.SecretString ?? '');
  } catch {
    throw new Error(`the secret ${secretArn} is not JSON; it must be {"signingSecret": "…", "botToken": "xoxb-…"}`);
  }
  const parsed = slackSecretSchema.safeParse(raw);
  if (!parsed.success) {
    // Name the fields, never the values.
    const fields = [...new Set(parsed.error.issues.map((i) => String(i.path[0] ?? '(top level)')))].join(', ');
    throw new Error(`the secret ${secretArn} has no valid ${fields}; it must be {"signingSecret": "…", "botToken": "xoxb-…"}`);
  }
  return parsed.data;
}

const cache = new Map<string, Promise<SlackSecret>>();

/** Cached per container; a failed read is not cached, so the next invocation tries again. */
export function slackSecret(secretArn: string, client?: SecretsManagerClient): Promise<SlackSecret> {
  let p = cache.get(secretArn);
  if (!p) {
    p = (client ? Promise.resolve(client) : secretsClient()).then((c) => readSlackSecret(c, secretArn));
    cache.set(secretArn, p);
    p.catch(() => cache.delete(secretArn));
  }
  return p;
}

export function forgetSlackSecrets(): void {
  cache.clear();
}
