/**
 * The shared SpaceTx conformance cases (test/fixtures/spacetx/cases.json, written from starfish's
 * and slicedimage's sources by the Python side), materialised as folders of files.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../../src/local/process-executor.js';

export interface SpacetxCase {
  name: string;
  what: string;
  source: string;
  experiment: string;
  files: Record<string, unknown>;
  starfish: { loads: true; fovs: string[] } | { loads: false; error: string };
}

const CASES_FILE = path.join(REPO_ROOT, 'test/fixtures/spacetx/cases.json');

export function loadCases(): SpacetxCase[] {
  return (JSON.parse(readFileSync(CASES_FILE, 'utf8')) as { cases: SpacetxCase[] }).cases;
}

const isBytes = (v: unknown): v is { bytes: string } => typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 1 && 'bytes' in v;

/** Writes the case's files under `root` ({{ROOT}} becomes root) and returns its experiment.json. */
export async function materialise(c: SpacetxCase, root: string): Promise<string> {
  for (const [rel, value] of Object.entries(c.files)) {
    const file = path.join(root, rel);
    await mkdir(path.dirname(file), { recursive: true });
    const text = isBytes(value) ? value.bytes : JSON.stringify(value);
    await writeFile(file, text.replaceAll('{{ROOT}}', root));
  }
  return path.join(root, c.experiment);
}
