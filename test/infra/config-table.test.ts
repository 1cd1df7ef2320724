/**
 * The one configuration table (src/config.ts): every example is accepted by its own row's schema,
 * and each reader's rows are what its documentation shows (README.md for the starfish command,
 * docs/aws.md for the Lambdas, infra/README.md for the CDK app), in the table's order.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG, namesReadBy, SETTING_PREFIX, type ConfigName, type Reader } from '../../src/config.js';

const REPO = path.resolve(import.meta.dirname, '../..');

const required = (name: ConfigName) => !CONFIG[name].schema.safeParse(undefined).success;

/** The markdown table a reader's documentation carries. */
function markdown(reader: Reader): string {
  const head = reader === 'cdk' ? '| setting | example | meaning |' : '| variable | example | meaning |';
  const rows = namesReadBy(reader).map((name) => {
    const shown = reader === 'cdk' ? name.slice(SETTING_PREFIX.length) : name;
    const { example, meaning } = CONFIG[name];
    return `| \`${shown}\` | \`${example}\` | ${required(name) ? '**required**: ' : ''}${meaning} |`;
  });
  return [head, '| --- | --- | --- |', ...rows].join('\n');
}

describe('the configuration table', () => {
  it('has an example for every row that its own schema accepts (as the environment or -c gives it: a string)', () => {
    for (const name of Object.keys(CONFIG) as ConfigName[]) {
      const { example, meaning } = CONFIG[name];
      expect(meaning.length, name).toBeGreaterThan(10);
      const parsed = CONFIG[name].schema.safeParse(example);
      expect(parsed.success, `${name}=${example}: ${parsed.error?.issues[0]?.message}`).toBe(true);
    }
  });

  it('gives every row a reader, and the CDK app exactly the starfish: settings', () => {
    const names = Object.keys(CONFIG) as ConfigName[];
    expect(new Set([...namesReadBy('command'), ...namesReadBy('lambdas'), ...namesReadBy('cdk')])).toEqual(new Set(names));
    expect(namesReadBy('cdk')).toEqual(names.filter((n) => n.startsWith(SETTING_PREFIX)));
    expect(names).not.toContain('STARFISH_BACKEND');
  });

  it.each([
    ['command', 'README.md'],
    ['lambdas', 'docs/aws.md'],
    ['cdk', 'infra/README.md'],
  ] as const)('is what the documentation of the %s shows (%s)', (reader, file) => {
    const doc = readFileSync(path.join(REPO, file), 'utf8');
    expect(doc).toContain(markdown(reader));
  });
});
