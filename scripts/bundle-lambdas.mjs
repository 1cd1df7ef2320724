#!/usr/bin/env node
/**
 * Bundles the Lambda entry points with esbuild:
 *   src/lambda/slack.ts  → dist/lambda/slack/index.mjs   (+ chunks/ for what it imports lazily)
 *   src/lambda/events.ts → dist/lambda/events/index.mjs
 * A missing entry is skipped with a warning. Prints each function's size; `--json` prints them as
 * one JSON line too. `--bundle-aws-sdk` bundles the AWS SDK instead of leaving it to the runtime.
 *
 * Choices:
 * - ESM, target node22, minified, code splitting: a dynamic import() (the AWS backend, Secrets
 *   Manager, the Batch/SQS clients) becomes a chunk loaded on first use, so the cold import of
 *   index.mjs evaluates only what every request needs. Without splitting, esbuild would hoist
 *   the lazily used modules' imports into the entry file.
 * - @aws-sdk/* is external by default: the nodejs22.x runtime ships AWS SDK v3, so the functions
 *   stay small (the Slack one is ~0.2 MB instead of ~1 MB+) and the SDK is loaded from the runtime
 *   only when a request needs it. Everything this code calls (S3 PutObject If-None-Match/If-Match,
 *   EventBridge PutEvents, Batch, SQS, Secrets Manager) is in the SDK versions the runtime has
 *   shipped for a long time. Pin the SDK instead with --bundle-aws-sdk (reproducible to the
 *   byte, larger bundle, slower first request); infra can choose per stack.
 * - Bolt's HTTP/Express/Socket Mode receivers (with express, @slack/oauth, @slack/socket-mode,
 *   raw-body and iconv-lite, ~1.2 MB) are replaced by stubs that throw if constructed: the Lambda
 *   only uses AwsLambdaReceiver, passed explicitly, so Bolt never constructs the others.
 * - A createRequire banner gives bundled CommonJS (Bolt, the Slack SDK) a `require` for Node
 *   built-ins inside an ES module.
 */
import { build } from 'esbuild';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const ENTRIES = { slack: 'src/lambda/slack.ts', events: 'src/lambda/events.ts' };
export const OUT_DIR = path.join(ROOT, 'dist/lambda');

const STUBBED_RECEIVERS = /[\\/]@slack[\\/]bolt[\\/]dist[\\/]receivers[\\/](HTTPReceiver|ExpressReceiver|SocketModeReceiver)\.js$/;
const STUBBED_PACKAGES = new Set(['express', 'raw-body', '@slack/oauth', '@slack/socket-mode']);

/** Replaces the parts of Bolt a Lambda never runs by modules that say so if they are used. */
const boltForLambda = {
  name: 'bolt-for-lambda',
  setup(b) {
    b.onResolve({ filter: /^(express|raw-body|@slack\/oauth|@slack\/socket-mode)$/ }, (args) =>
      STUBBED_PACKAGES.has(args.path) && /@slack[\\/]bolt/.test(args.importer) ? { path: args.path, namespace: 'lambda-stub' } : undefined,
    );
    b.onResolve({ filter: /receivers[\\/](HTTPReceiver|ExpressReceiver|SocketModeReceiver)$/ }, (args) => {
      const full = path.resolve(args.resolveDir, `${args.path}.js`);
      return STUBBED_RECEIVERS.test(full) ? { path: path.basename(full, '.js'), namespace: 'lambda-stub' } : undefined;
    });
    b.onLoad({ filter: /.*/, namespace: 'lambda-stub' }, (args) => ({
      loader: 'js',
      contents: `
        class NotBundled { constructor() { throw new Error(${JSON.stringify(`${args.path} is not in the Lambda bundle (scripts/bundle-lambdas.mjs); use AwsLambdaReceiver`)}); } }
        module.exports = { __esModule: true, default: NotBundled };`,
    }));
  },
};

function sizeOf(dir) {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) total += sizeOf(p);
    else if (!entry.name.endsWith('.map') && !entry.name.endsWith('.json')) total += statSync(p).size;
  }
  return total;
}

export async function bundleLambdas({ bundleAwsSdk = false, only, outDir = OUT_DIR, log = console.log } = {}) {
  const results = {};
  for (const [name, entry] of Object.entries(ENTRIES)) {
    if (only && !only.includes(name)) continue;
    const source = path.join(ROOT, entry);
    if (!existsSync(source)) {
      console.warn(`bundle-lambdas: ${entry} does not exist yet; skipping the ${name} function`);
      continue;
    }
    const outdir = path.join(outDir, name);
    rmSync(outdir, { recursive: true, force: true });
    mkdirSync(outdir, { recursive: true });
    const result = await build({
      entryPoints: { index: source },
      absWorkingDir: ROOT,
      bundle: true,
      splitting: true,
      outdir,
      outExtension: { '.js': '.mjs' },
      chunkNames: 'chunks/[name]-[hash]',
      platform: 'node',
      format: 'esm',
      target: 'node22',
      minify: true,
      treeShaking: true,
      sourcemap: false,
      legalComments: 'none',
      metafile: true,
      external: bundleAwsSdk ? [] : ['@aws-sdk/*', '@smithy/*'],
      plugins: [boltForLambda],
      banner: { js: "import{createRequire as __cr}from'node:module';const require=__cr(import.meta.url);" },
      logLevel: 'warning',
    });
    writeFileSync(path.join(outdir, 'meta.json'), JSON.stringify(result.metafile));
    const index = path.join(outdir, 'index.mjs');
    results[name] = { file: path.relative(ROOT, index), entryBytes: statSync(index).size, totalBytes: sizeOf(outdir) };
    log(`${name.padEnd(7)} ${path.relative(ROOT, index)}  entry ${(results[name].entryBytes / 1024).toFixed(1)} KiB, with chunks ${(results[name].totalBytes / 1024).toFixed(1)} KiB${bundleAwsSdk ? ' (AWS SDK bundled)' : ' (@aws-sdk/* from the Lambda runtime)'}`);
  }
  return results;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const results = await bundleLambdas({ bundleAwsSdk: args.includes('--bundle-aws-sdk') });
  if (args.includes('--json')) console.log(JSON.stringify(results));
}
