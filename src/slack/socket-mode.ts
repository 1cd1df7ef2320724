/**
 * `starfish serve`: the Slack app in Socket Mode on the embedded (local) backend, so a developer
 * can use the bot from a real workspace with no AWS and no public URL: Bolt opens a WebSocket to
 * Slack with the app-level token; runs execute as local processes, results land in STARFISH_HOME.
 */
import { pino } from 'pino';
import type { Env } from '../config.js';
import { ConfigError, homeDir, loadPolicy, localUser } from '../config.js';
import { localSystemFromEnv } from '../local/system.js';
import { approverGroupResolver, SlackChat } from './slack-chat.js';
import { createSlackApp } from './app.js';

const TOKEN_HELP = {
  SLACK_BOT_TOKEN:
    'SLACK_BOT_TOKEN=xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx (Slack app settings → OAuth & Permissions → Bot User OAuth Token, after installing the app to the workspace)',
  SLACK_APP_TOKEN:
    'SLACK_APP_TOKEN=xapp-1-A0123456789-1234567890123-0123456789abcdef (Slack app settings → Basic Information → App-Level Tokens, with the connections:write scope; Socket Mode must be enabled)',
} as const;


function missingTokens(env: Env): string | undefined {
  const missing = (['SLACK_BOT_TOKEN', 'SLACK_APP_TOKEN'] as const).filter((name) => !env[name]);
  if (!missing.length) return undefined;
  return `starfish serve connects to Slack in Socket Mode and needs ${missing.join(' and ')}. Set ${missing.map((m) => TOKEN_HELP[m]).join('; and ')}. See docs/slack.md; without Slack, use \`starfish console\`.`;
}

export async function serve(env: Env): Promise<number> {
  const problem = missingTokens(env);
  if (problem) throw new ConfigError(problem);
  const botToken = env.SLACK_BOT_TOKEN!;
  const appToken = env.SLACK_APP_TOKEN!;
  const logger = pino({ level: env.LOG_LEVEL === 'warn' ? 'info' : env.LOG_LEVEL }, pino.destination(2));

  const chat = new SlackChat({ token: botToken, slackApiUrl: env.SLACK_API_URL });
  let identity: { user?: string; team?: string };
  try {
    identity = await chat.client.auth.test();
  } catch (error) {
    throw new ConfigError(`Slack refused SLACK_BOT_TOKEN (${(error as Error).message}). Copy the Bot User OAuth Token again; example: ${TOKEN_HELP.SLACK_BOT_TOKEN}`);
  }

  const policy = loadPolicy(env, localUser());
  if (!env.STARFISH_POLICY) {
    // The built-in local policy names the Unix user as approver, who is no Slack member.
    policy.approval.approvers = [];
    policy.approval.allowSelfApproval = false;
    logger.warn(
      `No STARFISH_POLICY: anyone in any channel may start runs, and runs above ${policy.approval.fovThreshold} FOVs will wait for an approver nobody is. Example policy: {"approval": {"fovThreshold": 500, "approvers": ["U012ABCDEF"]}, "access": {"channels": ["C0123456789"]}, "queues": {"default": "local", "allowed": ["local"]}}`,
    );
  }
  const group = policy.approval.approverGroup;
  const system = localSystemFromEnv(env, chat, logger, policy, group ? { approverGroupMembers: approverGroupResolver(chat.client, group) } : {});

  const accepted = { teamId: env.SLACK_TEAM_ID, appId: env.SLACK_APP_ID };
  const app = createSlackApp({ appToken, token: botToken, slackApiUrl: env.SLACK_API_URL, dispatchDeps: system.dispatchDeps, chat, identity: accepted });
  await app.start();
  // What a previous start left (jobs of a command that stopped) is settled now, not in a minute.
  await system.reconciler.run().catch((error: unknown) => logger.error({ err: (error as Error).message }, 'reconcile failed'));
  // Expired approvals, lost job ends and held-back progress, as the AWS schedule does.
  const reconcile = setInterval(() => {
    system.reconciler.run().catch((error: unknown) => logger.error({ err: (error as Error).message }, 'reconcile failed'));
  }, 60_000);
  reconcile.unref();
  process.stderr.write(
    `starfish is connected to Slack (Socket Mode) as ${identity.user ?? 'the bot'}${identity.team ? ` in ${identity.team}` : ''}. Type /starfish help in a channel the bot is in. Runs execute here; results in ${homeDir(env)}. Ctrl-C stops.\n`,
  );

  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  clearInterval(reconcile);
  process.stderr.write('Disconnecting from Slack; waiting for running jobs to finish. Ctrl-C again stops them: they are recorded as interrupted, and the next start reports their runs failed or partially failed (retry reruns them).\n');
  process.once('SIGINT', () => {
    process.stderr.write('Stopping the running jobs…\n');
    void system.processes.stop('Ctrl-C').finally(() => process.exit(130));
  });
  await app.stop();
  await system.settle();
  return 0;
}
