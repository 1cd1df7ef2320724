/**
 * The SpaceTx conformance table: every format variant in test/fixtures/spacetx/cases.json (each
 * with the verdict of starfish's real loader, read from its sources) against what this project
 * does with it, on files on disk:
 *
 * - plan: what `/starfish run` plans (readExperiment): the FOV numbers, or a refusal. Planning
 *   reads experiment.json and the primary collection only (a million FOVs plan from two files),
 *   so it accepts experiments whose codebook or tile lists starfish would refuse; the FOV jobs
 *   check those before compute.
 * - stage: what `/starfish stage` decides before copying (walkExperiment): it reads every
 *   document, so it must agree with starfish wherever starfish fails at load time. Where it does
 *   not, `differs` says why (a tile's bytes are not read when staging).
 *
 * A loadable case is also staged, and the staged copy must load the same way from inside the
 * store. The table is printed at the end.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LocalReader } from '../../src/local/file-reader.js';
import { DirectoryStore } from '../../src/local/dir-store.js';
import { readExperiment } from '../../src/run/experiment.js';
import { walkExperiment } from '../../src/spacetx/walk.js';
import { stageExperiment } from '../../src/launcher/staging.js';
import { silentLogger } from '../../src/core.js';
import { RecordingChat } from '../aws/helpers.js';
import { loadCases, materialise, type SpacetxCase } from './cases.js';

/** What this project does with a case: planned FOV numbers or a refusal; staging accepts or refuses. */
interface Ours {
  plan: number[] | RegExp;
  stage: true | RegExp;
  /** Why stage's verdict is not starfish's (required exactly when they differ). */
  differs?: string;
}

const FILE_FIELD = (file: string, field: string) => new RegExp(`${file.replace(/[.[\]]/g, '\\$&')}.*${field.replace(/[.[\]]/g, '\\$&')}`);
const VERSION_RANGE = /experiment\.json: "version" .*starfish reads experiment versions 4\.0\.0 to 5\.0\.0\. Example: \{"version": "5\.0\.0"/;
const NUMBERED = /FOVs must be named fov_<number>, e\.g\. fov_000.*starfish itself accepts any name/;

const OURS: Record<string, Ours> = {
  'v5-flat': { plan: [0, 1], stage: true },
  'v5-with-nuclei': { plan: [0, 1], stage: true },
  'v4-primary-images': { plan: [0, 1], stage: true },
  'v4-empty-auxiliary-images': { plan: [0, 1], stage: true },
  'v4-without-auxiliary-images': { plan: /experiment\.json has no "auxiliary_images"\. Example: \{"version": "4\.0\.0"/, stage: /has no "auxiliary_images"/ },
  'v4-with-images': { plan: /"version" is 4\.0\.0, below 5\.0\.0, so starfish reads it in the 4\.x shape .*but it has "images"/, stage: /but it has "images"/ },
  'v5-with-primary-images': { plan: /"version" is 5\.0\.0, so starfish reads "images", but it has "primary_images"/, stage: /but it has "primary_images"/ },
  'version-6': { plan: /"version" is 6\.0\.0, which starfish does not support/, stage: VERSION_RANGE },
  'version-5.0.1': { plan: /"version" is 5\.0\.1, which starfish does not support/, stage: VERSION_RANGE },
  'version-3': { plan: /"version" is 3\.0\.0, which starfish does not support/, stage: VERSION_RANGE },
  'version-missing': { plan: /"version" is missing/, stage: VERSION_RANGE },
  'version-not-semver': { plan: /"version" is "5\.0", not a version like "5\.0\.0"/, stage: VERSION_RANGE },
  'version-5-prerelease': { plan: /"version" is 5\.0\.0-rc1, below 5\.0\.0, so starfish reads it in the 4\.x shape/, stage: /below 5\.0\.0/ },
  'experiment-not-object': { plan: /experiment\.json .* is not a JSON object/, stage: /is not a JSON object/ },
  'extras-missing': { plan: /experiment\.json has no "extras"\. Example: .*"extras": \{\}/, stage: /experiment\.json has no "extras"\. Example: .*"extras": \{\}/ },
  'extras-null': { plan: [0, 1], stage: true },
  'v5-without-primary': {
    plan: /experiment\.json "images" .*has no "primary"/,
    stage: /has no "primary"/,
    differs: 'starfish lists the FOVs of every image type; a recipe decodes the primary images, so an experiment without them is refused',
  },
  'fov-only-in-nuclei': { plan: [0, 1], stage: true },
  'v4-fov-only-in-nuclei': { plan: [0, 1], stage: true },
  'nuclei-missing-a-fov': { plan: [0, 1], stage: true },
  'codeword-without-v': { plan: FILE_FIELD('codebook.json', 'has no "mappings[0].codeword[1].v"'), stage: FILE_FIELD('codebook.json', 'has no "mappings[0].codeword[1].v"') },
  'codeword-without-r': { plan: FILE_FIELD('codebook.json', 'has no "mappings[0].codeword[1].r"'), stage: FILE_FIELD('codebook.json', 'has no "mappings[0].codeword[1].r"') },
  'codebook-list': { plan: /codebook\.json is a list of codewords/, stage: /codebook\.json is a list of codewords.*Example: \{"version": "0\.0\.0", "mappings"/ },
  'codebook-version-0.1.0': { plan: /codebook\.json "version" is "0\.1\.0": must be "0\.0\.0"/, stage: /codebook\.json "version" is "0\.1\.0": must be "0\.0\.0"/ },
  'codebook-missing': { plan: /Could not read the codebook at .*codebook\.json: no such file/, stage: /Could not read the codebook at .*codebook\.json: no such file/ },
  'nested-collections': { plan: [0, 1, 2], stage: true },
  'nested-collections-fov-in-first': { plan: [0, 1, 2], stage: true },
  'nested-collection-key-is-not-a-fov': { plan: [5, 6], stage: true },
  'nested-three-levels': { plan: [0, 1], stage: true },
  'nested-duplicate-fov-name': { plan: /FOV "fov_000" is listed twice in the primary images/, stage: true },
  'fov-names-4-digits': { plan: [0, 1], stage: true },
  'fov-names-unpadded': { plan: [7, 8], stage: true },
  'fov-names-unpadded-absent': { plan: [7, 8], stage: true },
  'fov-names-duplicate-number': { plan: /FOVs "fov_001" and "fov_1" both have the number 1/, stage: true },
  'fov-names-not-numbered': { plan: new RegExp(`FOV "A1" .* is not named fov_<number>\\. .*${NUMBERED.source}`), stage: true },
  'empty-manifest': { plan: /list no FOVs \(their "contents" is empty\); there is nothing to process\. A collection lists FOVs like \{"version": "0\.1\.0", "contents": \{"fov_000"/, stage: true },
  'fov-not-in-experiment': { plan: [0, 1], stage: true },
  'primary-is-a-tile-set': { plan: /primary_images-fov_000\.json is one FOV's tile list, but an experiment's images must be a collection/, stage: /one FOV's tile list/ },
  'file-url-reference': { plan: [0, 1], stage: true },
  'absolute-path-reference': { plan: [0, 1], stage: true },
  'absolute-tile-reference': { plan: [0, 1], stage: true },
  'file-url-codebook': { plan: [0, 1], stage: true },
  'sibling-folder-reference': { plan: [0, 1], stage: true },
  'names-with-spaces': { plan: [0, 1], stage: true },
  'percent-encoded-reference': { plan: [0, 1], stage: true },
  'tile-name-with-hash': { plan: [0, 1], stage: /"tiles\[0\]\.file" is "primary_images-fov_000#c0-r0-z0\.tiff", which starfish cannot follow: it contains "\?" or "#"/ },
  'http-reference': { plan: /"images\.primary" is "http:\/\/example\.invalid\/iss\/primary_images\.json", which this deployment may not read/, stage: /http:\/\/ is not/ },
  'unknown-scheme-reference': { plan: /"images\.primary" is "ftp:\/\/example\.org\/iss\/primary_images\.json": starfish \(slicedimage\) reads file:\/\/, https:\/\/ and s3:\/\//, stage: /ftp:/ },
  'sha256-absent': { plan: [0, 1], stage: true },
  'sha256-mismatch': { plan: [0, 1], stage: true, differs: 'staging copies tiles byte for byte without reading them (S3 copies server-side); the FOV job verifies sha256 before compute' },
  'sha256-mismatch-other-fov': { plan: [0, 1], stage: true },
  'sha256-uppercase': { plan: [0, 1], stage: /"tiles\[0\]\.sha256" must be 64 lower-case hex digits/ },
  'tile-file-missing': { plan: [0, 1], stage: true, differs: 'tiles are not read before copying; the copy then reports the missing tile and the name is not kept' },
  'tile-format-png': { plan: [0, 1], stage: true },
  'tile-format-numpy': { plan: [0, 1], stage: true },
  'tile-format-from-extension': { plan: [0, 1], stage: true },
  'tile-format-from-default': { plan: [0, 1], stage: true },
  'tile-format-unknown-extension': { plan: [0, 1], stage: /"tiles\[0\]\.file" is "primary_images-fov_000-c0-r0-z0\.jpg", whose format slicedimage cannot tell: give "tile_format" \(TIFF, NUMPY or PNG\)/ },
  'tile-format-lower-case': { plan: [0, 1], stage: /"tiles\[0\]\.tile_format" is "tiff": must be one of TIFF, NUMPY, PNG/ },
  'tile-set-version-0.0.0': { plan: [0, 1], stage: true },
  'tile-shape-dict-in-0.0.0': { plan: [0, 1], stage: /"default_tile_shape" is \{"y":4,"x":4\}: must be \[y, x\] in a version 0\.0\.0 tile list/ },
  'tile-shape-list-in-0.1.0': { plan: [0, 1], stage: /primary_images-fov_000\.json "tiles\[0\]\.tile_shape" is \[4,4\]: must be \{"y": …, "x": …\}/ },
  'tile-shape-list-in-other-fov': { plan: [0, 1], stage: /primary_images-fov_001\.json "tiles\[0\]\.tile_shape"/ },
  'partition-version-missing': { plan: /primary_images-fov_000\.json: "version" is missing; slicedimage reads versions 0\.0\.0 to 0\.1\.x/, stage: /"version" is missing/ },
  'partition-version-0.2.0': { plan: /primary_images\.json: "version" is 0\.2\.0, which slicedimage cannot read/, stage: /0\.2\.0/ },
  'partition-neither': { plan: /primary_images-fov_000\.json is neither an image collection .*"contents".* nor a FOV's tile list .*"tiles"/, stage: /is neither/ },
  'tile-set-without-dimensions': { plan: [0, 1], stage: /primary_images-fov_000\.json has no "dimensions"/ },
  'tile-set-dimensions-with-a-list': { plan: [0, 1], stage: /primary_images-fov_001\.json "dimensions\[\d\]" is \[.*\]: must be a dimension name like "r"/ },
  'tile-set-without-shape': { plan: [0, 1], stage: /primary_images-fov_000\.json has no "shape"/ },
  'tile-without-file': { plan: [0, 1], stage: /has no "tiles\[1\]\.file"/ },
  'tile-without-coordinates': { plan: [0, 1], stage: /has no "tiles\[1\]\.coordinates"/ },
  'tile-without-indices': { plan: [0, 1], stage: /has no "tiles\[1\]\.indices"/ },
  'tile-indices-without-r': { plan: [0, 1], stage: /has no "tiles\[0\]\.indices\.r"/ },
  'tile-coordinates-without-xc': { plan: [0, 1], stage: /has no "tiles\[0\]\.coordinates\.xc"/ },
  'tile-coordinates-scalar-zc': { plan: [0, 1], stage: true },
  'experiment-not-json': { plan: /experiment\.json .*is not valid JSON/, stage: /not valid JSON/ },
  'tile-set-not-json-other-fov': { plan: [0, 1], stage: /primary_images-fov_001\.json is not valid JSON/ },
  'starfish-example-fov-manifest': { plan: new RegExp(`FOV "fov_00N" .* is not named fov_<number>\\. .*${NUMBERED.source}`), stage: true },
  'starfish-example-field-of-view': { plan: [0], stage: /primary_images-fov_000\.json "tiles\[1\]\.sha256" must be 64 lower-case hex digits/ },
  'starfish-example-field-of-view-fixed': { plan: [0], stage: true },
  'starfish-example-no-fov-manifest': { plan: /field_of_view\.json is one FOV's tile list, but an experiment's images must be a collection of FOVs/, stage: /one FOV's tile list/ },
  'starfish-example-codebook-inferred-value': { plan: /codebook\.json has no "mappings\[0\]\.codeword\[0\]\.r"/, stage: /codebook\.json has no "mappings\[0\]\.codeword\[0\]\.r"/ },
  'starfish-example-dartfish-experiment': { plan: /"version" is 1\.0\.0, which starfish does not support/, stage: VERSION_RANGE },
  'tile-indices-without-z': { plan: [0, 1], stage: true },
  'codebook-mapping-without-target': { plan: /codebook\.json has no "mappings\[1\]\.target"/, stage: /codebook\.json has no "mappings\[1\]\.target"/ },
  'tile-set-missing-other-fov': { plan: [0, 1], stage: /Could not read the image collection or FOV tile list at .*primary_images-fov_001\.json: no such file/ },
};

const cases = loadCases();
const reader = new LocalReader();
const roots: string[] = [];
const table: string[] = [];

async function caseDir(c: SpacetxCase): Promise<{ root: string; experiment: string }> {
  const root = await mkdtemp(path.join(os.tmpdir(), `starfish-spacetx-${c.name}-`));
  roots.push(root);
  return { root, experiment: await materialise(c, root) };
}

async function planOf(experiment: string): Promise<number[] | string> {
  try {
    return (await readExperiment(reader, experiment)).fovs;
  } catch (error) {
    return (error as Error).message;
  }
}

const show = (v: number[] | string | true) => (v === true ? 'accepted' : Array.isArray(v) ? `FOVs ${v.join(',') || '-'}` : `refused: ${v.slice(0, 90)}`);

afterAll(async () => {
  console.log(['| case | starfish 0.2.2/0.4.0 | /starfish run plans | /starfish stage |', '|---|---|---|---|', ...table].join('\n'));
  await Promise.all(roots.map((r) => rm(r, { recursive: true, force: true })));
});

describe('SpaceTx conformance (test/fixtures/spacetx/cases.json)', () => {
  it('has an expectation for every case, and none for a case that is gone', () => {
    const names = cases.map((c) => c.name);
    expect(names.filter((n) => !(n in OURS)), 'cases without a TypeScript expectation in OURS').toEqual([]);
    expect(Object.keys(OURS).filter((n) => !names.includes(n)), 'expectations for cases no longer in cases.json').toEqual([]);
  });

  for (const c of cases) {
    const ours = OURS[c.name];
    it.skipIf(!ours)(`${c.name}: ${c.what}`, async () => {
      const { root, experiment } = await caseDir(c);
      const plan = await planOf(experiment);
      const walked = await walkExperiment(reader, experiment);
      const stage = walked.problems.length ? walked.problems.join(' • ') : true;
      const starfish = c.starfish.loads ? `loads ${c.starfish.fovs.join(',') || '(no FOVs)'}` : `fails: ${c.starfish.error.slice(0, 60)}`;
      table.push(`| ${c.name} | ${starfish} | ${show(plan).replaceAll(root, '…')} | ${show(stage).replaceAll(root, '…')}${ours!.differs ? ` (differs: ${ours!.differs})` : ''} |`);

      if (Array.isArray(ours!.plan)) expect(plan).toEqual(ours!.plan);
      else expect(plan).toMatch(ours!.plan);
      if (ours!.stage === true) expect(walked.problems).toEqual([]);
      else expect(stage).toMatch(ours!.stage);
      // Staging is starfish's verdict, except where `differs` says why not.
      expect(stage === true, ours!.differs ?? 'stage agrees with starfish').toBe(ours!.differs ? !c.starfish.loads : c.starfish.loads);
      // What plan accepts, starfish loads, with the same FOV names for those numbers.
      if (Array.isArray(plan) && c.starfish.loads) expect(plan.every((n) => c.starfish.loads && c.starfish.fovs.some((name) => Number(name.slice(4)) === n))).toBe(true);
    });
  }
});

describe('a staged copy of each loadable case', () => {
  for (const c of cases.filter((x) => x.starfish.loads && OURS[x.name]?.stage === true && Array.isArray(OURS[x.name]?.plan))) {
    it(`${c.name}: loads from the store with the same FOVs, every reference inside the copy`, async () => {
      const { root, experiment } = await caseDir(c);
      const home = path.join(root, '..', `${path.basename(root)}-store`);
      roots.push(home);
      const store = new DirectoryStore(home);
      const chat = new RecordingChat();
      await stageExperiment({ reader, store, chat, log: silentLogger }, { type: 'StageRequested', userId: 'U1', channel: 'C1', source: experiment, name: 'copy' });
      expect(chat.calls.at(-1)!.text).toMatch(/Staged \d+ files as copy/);

      const staged = path.join(home, 'experiments/copy/experiment.json');
      expect((await readExperiment(reader, staged)).fovs).toEqual(OURS[c.name]!.plan);
      const again = await walkExperiment(reader, staged);
      expect(again.problems).toEqual([]);
      const folder = path.join(home, 'experiments/copy') + path.sep;
      expect(again.files.map((f) => f.at).filter((at) => !at.startsWith(folder))).toEqual([]);
      const source = await walkExperiment(reader, experiment);
      expect(again.files.length).toBe(source.files.length);
      // Nothing is left outside the staged folder but the marker: no file was written elsewhere.
      expect(await readdir(home)).toEqual(['experiments']);
    });
  }
});
