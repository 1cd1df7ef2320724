#!/usr/bin/env node
/**
 * Bundles the Lambda entry points with esbuild:
 *   src/lambda/slack.ts  → dist/lambda/slack/index.mjs   (+ chunks/ for what it imports lazily)
 *   src/lambda/events.ts → dist/lambda/events/index.mjs
 * A missing entry is skipped with a warning. Prints each function's size; `--json` prints them as
 * one JSON line too. `--bundle-aws-sdk` / `--external-aws-sdk` override the per-function choice below.
 *
 * Choices:
 * - ESM, target node22, minified, code splitting: a dynamic import() (the AWS backend, Secrets
 *   Manager, the Batch/SQS clients) becomes a chunk loaded on first use, so the cold import of
 *   index.mjs evaluates only what every request needs. Without splitting, esbuild would hoist
 *   the lazily used modules' imports into the entry file.
 * - The AWS SDK, per function:
 *   - slack: external. The nodejs22.x runtime ships AWS SDK v3; this function reads S3 (status,
 *     list), calls EventBridge PutEvents, and creates one request claim per signed request with
 *     PutObject If-None-Match. The bucket policy refuses a claim without that header
 *     (infra/stack.ts, SlackRequestClaimsCreateOnly), so a runtime SDK that dropped it would fail
 *     closed (every request answered "try again"), never replay a request; the bundle stays
 *     ~0.45 MB instead of ~1.2 MB. The SDK loads on the first request (or in INIT: the
 *     handler prewarms with a top-level await on Lambda).
 *   - events: bundled. The launcher's compare-and-swap relies on S3 PutObject If-None-Match /
 *     If-Match; an SDK that predates those members would drop them without an error and the
 *     "50 clicks submit once" guarantee would silently go. Pinning package-lock's SDK rules that out.
 * - Bolt's HTTP/Express/Socket Mode receivers (with express, @slack/oauth, @slack/socket-mode,
 *   raw-body and iconv-lite, ~1.2 MB) are replaced by stubs that throw if constructed: the Lambda
 *   only uses AwsLambdaReceiver, passed explicitly, so Bolt never constructs the others.
 * - zod's `z.locales` (error messages in 40+ languages, ~260 KB of the ~440 KB zod adds) is cut
 *   down to English: nothing here calls z.config(z.locales.xx()), and English, the default, is
 *   imported by zod's schemas directly. This halves the cost of evaluating zod on a cold start.
 * - A createRequire banner gives bundled CommonJS (Bolt, the Slack SDK) a `require` for Node
 *   built-ins inside an ES module.
 */
import { build } from 'esbuild';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const ENTRIES = {
  slack: { source: 'src/lambda/slack.ts', bundleAwsSdk: false },
  events: { source: 'src/lambda/events.ts', bundleAwsSdk: true },
};
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
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /[\\/]zod[\\/]v4[\\/](classic|core)$/.test(args.resolveDir) ? { path: path.join(args.resolveDir, '../locales/en.js'), namespace: 'zod-locales' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'zod-locales' }, (args) => ({
      loader: 'js',
      resolveDir: path.dirname(args.path),
      contents: `export { default as en } from './en.js';`,
    }));
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

/** bundleAwsSdk: undefined keeps each function's default (ENTRIES), true/false overrides it. */
export async function bundleLambdas({ bundleAwsSdk, only, outDir = OUT_DIR, log = console.log } = {}) {
  const results = {};
  for (const [name, { source: entry, bundleAwsSdk: byDefault }] of Object.entries(ENTRIES)) {
    if (only && !only.includes(name)) continue;
    const sdkBundled = bundleAwsSdk ?? byDefault;
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
      external: sdkBundled ? [] : ['@aws-sdk/*', '@smithy/*'],
      plugins: [boltForLambda],
      banner: { js: "import{createRequire as __cr}from'node:module';const require=__cr(import.meta.url);" },
      logLevel: 'warning',
    });
    // Beside the function's folder, not in it: the folder is what deploys (and what is measured).
    writeFileSync(path.join(outDir, `${name}.meta.json`), JSON.stringify(result.metafile));
    const index = path.join(outdir, 'index.mjs');
    results[name] = { file: path.relative(ROOT, index), entryBytes: statSync(index).size, totalBytes: sizeOf(outdir), awsSdk: sdkBundled ? 'bundled' : 'external' };
    log(`${name.padEnd(7)} ${path.relative(ROOT, index)}  entry ${(results[name].entryBytes / 1024).toFixed(1)} KiB, with chunks ${(results[name].totalBytes / 1024).toFixed(1)} KiB${sdkBundled ? ' (AWS SDK bundled)' : ' (@aws-sdk/* from the Lambda runtime)'}`);
  }
  return results;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const override = args.includes('--bundle-aws-sdk') ? true : args.includes('--external-aws-sdk') ? false : undefined;
  const onlyAt = args.indexOf('--only');
  const only = onlyAt >= 0 ? args[onlyAt + 1]?.split(',') : undefined;
  const outAt = args.indexOf('--out');
  const outDir = outAt >= 0 ? path.resolve(args[outAt + 1]) : undefined;
  const results = await bundleLambdas({ bundleAwsSdk: override, ...(only ? { only } : {}), ...(outDir ? { outDir } : {}) });
  if (args.includes('--json')) console.log(JSON.stringify(results));
}
