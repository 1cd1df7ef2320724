import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseCommand, parseRunForm, type Command } from '../../src/command/grammar.js';

function ok(text: string): Command {
  const r = parseCommand(text);
  if (!r.ok) throw new Error(`expected ${text} to parse, got: ${r.reason}`);
  return r.value;
}

function error(text: string): string {
  const r = parseCommand(text);
  if (r.ok) throw new Error(`expected ${text} to be refused, got ${JSON.stringify(r.value)}`);
  return r.reason;
}

describe('run', () => {
  it('takes an experiment URL with every option', () => {
    expect(ok('run s3://lab-data/iss/experiment.json recipe=s3://lab-data/recipes/iss.py fovs=0-3,7 queue=ondemand name=brain-2 dry-run')).toEqual({
      name: 'run',
      request: {
        experiment: 's3://lab-data/iss/experiment.json',
        recipe: 's3://lab-data/recipes/iss.py',
        fovs: { kind: 'list', ranges: [[0, 3], [7, 7]] },
        queue: 'ondemand',
        name: 'brain-2',
        dryRun: true,
      },
    });
  });

  it('reject takes a reason after the run id, for the requester; too long a reason is refused', () => {
    expect(ok('reject 261125-k3f9 use the spot queue for runs this size')).toEqual({ name: 'reject', runId: '261125-k3f9', reason: 'use the spot queue for runs this size' });
    expect(ok('reject 261125-k3f9')).toEqual({ name: 'reject', runId: '261125-k3f9' });
    expect(error(`reject 261125-k3f9 ${'why '.repeat(100)}`)).toMatch(/the reason is \d+ characters; at most 300 are kept\. Example: \/starfish reject 261125-k3f9 use the spot queue/);
  });

  it('reads a file:// URL as the path it names (the local backend reads paths)', () => {
    expect(ok('run file:///data/iss/experiment.json recipe=file:///data/recipes/my%20recipe.py')).toMatchObject({ request: { experiment: '/data/iss/experiment.json', recipe: '/data/recipes/my recipe.py' } });
    expect(ok('stage file:///data/iss/experiment.json as=iss')).toEqual({ name: 'stage', source: '/data/iss/experiment.json', as: 'iss' });
    expect(error('run file://otherhost/iss/experiment.json')).toMatch(/is not a file:\/\/ URL of this machine; give the path itself/);
    // Percent-decoding must not make a path no one could type: NUL (every fs call throws on it), a line break.
    for (const crafted of ['run file:///data/x%00y/experiment.json', 'run s3://lab-data/e.json recipe=file:///data/a%0Ab.py', 'stage file:///data/%1b[2J/experiment.json']) {
      expect(error(crafted)).toMatch(/names a path with a control character in it/);
    }
  });

  it('defaults to all FOVs and accepts a count, an https URL and a local path', () => {
    expect(ok('run https://example.org/exp/experiment.json')).toMatchObject({ request: { fovs: { kind: 'all' }, dryRun: false } });
    expect(ok('run ./examples/experiment.json first=16')).toMatchObject({ request: { experiment: './examples/experiment.json', fovs: { kind: 'first', count: 16 } } });
  });

  it('reads fovs= as indices only: fovs=2 is FOV 2 (someone redoing FOV 2 runs FOV 2), fovs=0 is FOV 0', () => {
    expect(ok('run s3://lab-data/e.json fovs=2')).toMatchObject({ request: { fovs: { kind: 'list', ranges: [[2, 2]] } } });
    expect(ok('run s3://lab-data/e.json fovs=0')).toMatchObject({ request: { fovs: { kind: 'list', ranges: [[0, 0]] } } });
    expect(ok('run s3://lab-data/e.json fovs=2,3')).toMatchObject({ request: { fovs: { kind: 'list', ranges: [[2, 2], [3, 3]] } } });
  });

  it('unwraps the way Slack formats links and escapes ampersands', () => {
    expect(ok('run <https://example.org/e/experiment.json?a=1&amp;b=2|experiment.json>')).toMatchObject({
      request: { experiment: 'https://example.org/e/experiment.json?a=1&b=2' },
    });
  });

  it.each([
    ['run', /needs the experiment.*Example: \/starfish run s3:\/\//],
    ['run s3://lab-data', /not a complete S3 URL.*s3:\/\/lab-data\/iss\/experiment.json/],
    ['run ftp://host/experiment.json', /not an s3:\/\/ or https:\/\/ URL/],
    ['run fovs=3', /looks like an option, but the experiment must come first/],
    ['run s3://lab-data/e.json fovs=3-1', /runs backwards; write it low-high, like 1-3/],
    ['run s3://lab-data/e.json first=0', /first=0 is not a number of FOVs\. fovs= takes FOV indices and ranges \(fovs=2 is FOV 2; fovs=0-3,7\) or all; first=16 takes the first 16 FOVs/],
    ['run s3://lab-data/e.json first=all', /first=all is not a number of FOVs.*fovs=2 is FOV 2/],
    ['run s3://lab-data/e.json fovs=2 first=3', /fovs= and first= both choose the FOVs; give one/],
    ['run s3://lab-data/e.json fovs=a-b', /"a-b" is not a FOV index or range\. fovs= takes FOV indices and ranges \(fovs=2 is FOV 2/],
    ['run s3://lab-data/e.json fov=3', /no option "fov" \(did you mean fovs=\? fovs= takes FOV indices and ranges \(fovs=2 is FOV 2; fovs=0-3,7\) or all; first=16 takes the first 16 FOVs\)/],
    ['run s3://lab-data/e.json dryrun', /did you mean dry-run\?/],
    ['run s3://lab-data/e.json recipe=s3://lab-data/r.txt', /not a Python file/],
    ['run s3://lab-data/e.json recipe=//host:99999/x', /not a Python file/],
    ['run s3://lab-data/e.json fovs=1 fovs=2', /given twice/],
    ['run s3://lab-data/e.json name=has/slash', /not a usable label/],
    ['run s3://lab-data/e.json queue=', /needs a value/],
    // Every job's environment carries the location, and Batch caps it at 8,192 characters.
    [`run https://example.org/${'a'.repeat(2100)}/experiment.json`, /is 2,1\d\d characters long; a location is at most 2,048\. Example: s3:\/\//],
    [`run s3://lab-data/${'é'.repeat(520)}.json`, /longer than S3's 1,024 bytes/],
    [`run s3://lab-data/e.json recipe=s3://lab-data/${'r'.repeat(2100)}.py`, /recipe: .*a location is at most 2,048\. Example: s3:\/\/lab-data\/recipes\/iss.py/],
  ])('refuses %s with a specific message and an example', (text, message) => {
    expect(error(text)).toMatch(message);
  });
});

describe('other commands', () => {
  it('parses status, list, cancel, retry, approve, reject, stage and help', () => {
    expect(ok('status')).toEqual({ name: 'status' });
    expect(ok('status 261125-K3F9')).toEqual({ name: 'status', runId: '261125-k3f9' });
    expect(ok('list')).toEqual({ name: 'list' });
    expect(ok('cancel 261125-k3f9')).toEqual({ name: 'cancel', runId: '261125-k3f9' });
    expect(ok('retry 261125-k3f9')).toEqual({ name: 'retry', runId: '261125-k3f9' });
    expect(ok('approve 261125-k3f9')).toEqual({ name: 'approve', runId: '261125-k3f9' });
    expect(ok('stage s3://public-data/iss/experiment.json as=iss')).toEqual({ name: 'stage', source: 's3://public-data/iss/experiment.json', as: 'iss' });
    expect(ok('')).toEqual({ name: 'help' });
    expect(ok('help run')).toEqual({ name: 'help', topic: 'run' });
  });

  it.each([
    ['cancel', /needs the run id.*Example: \/starfish cancel 261125-k3f9/],
    ['cancel my-run', /"my-run" is not a run id; run ids look like 261125-k3f9/],
    ['retry a b', /takes one run id, got 2/],
    ['list all', /list takes no arguments/],
    ['stage s3://x-bucket/e.json to=here', /the only option is as=NAME/],
    ['help nope', /There is no command "nope"/],
  ])('refuses %s', (text, message) => {
    expect(error(text)).toMatch(message);
  });

  it('suggests the nearest subcommand for a typo', () => {
    expect(error('stauts')).toMatch(/did you mean "status"\?.*Example: \/starfish status/);
    expect(error('rnu s3://a/b')).toMatch(/did you mean "run"\?/);
    expect(error('cancle 261125-k3f9')).toMatch(/did you mean "cancel"\?/);
  });
});

describe('fuzzed input', () => {
  it('never throws and always yields a command or a non-empty message', () => {
    const words = fc.oneof(
      fc.constantFrom('run', 'status', 'list', 'cancel', 'retry', 'stage', 'help', 'approve', 'fovs=', 'recipe=', 'dry-run', 's3://', 'https://', '<', '>', '|', '&amp;', '=', '-', ','),
      fc.string(),
      fc.string({ unit: 'grapheme' }),
    );
    fc.assert(
      fc.property(fc.array(words, { maxLength: 8 }), (parts) => {
        const result = parseCommand(parts.join(' '));
        if (!result.ok) expect(result.reason.length).toBeGreaterThan(10);
      }),
      { numRuns: 2000 },
    );
  });

  it('answers non-string input with a message', () => {
    for (const input of [undefined, null, 42, {}, []]) expect(parseCommand(input)).toMatchObject({ ok: false });
  });
});

describe('the launch form reads its fields as the typed options', () => {
  const experiment = 's3://lab-data/iss/experiment.json';
  const fovCases = ['', '2', '0-3,7', ' 0-3, 7 ', 'all', 'first=16', '0', '3-1', '2 FOVs', 'first=0', 'first=abc', '1,1-1000001'];

  it('a FOVs field is what fovs= (or first=) typed would be: the same request, or the same refusal', () => {
    for (const fovs of fovCases) {
      const typedOption = !fovs.trim() ? '' : /^first=/.test(fovs.trim()) ? fovs.trim() : `fovs=${fovs.replace(/\s+/g, '')}`;
      const typed = parseCommand(`run ${experiment} ${typedOption}`);
      const form = parseRunForm({ experiment, fovs });
      if (typed.ok && typed.value.name === 'run') expect(form, fovs).toEqual({ ok: true, request: typed.value.request });
      else expect(form, fovs).toEqual({ ok: false, errors: { fovs: (typed as { reason: string }).reason } });
    }
  });

  it('gives every field its own refusal at once, and refuses a space where a typed command could not have one', () => {
    const form = parseRunForm({ experiment: 's3://lab data/experiment.json', recipe: 'notes.txt', fovs: 'x', queue: 'no such queue', name: '-' });
    expect(form.ok).toBe(false);
    const errors = (form as { errors: Record<string, string> }).errors;
    expect(Object.keys(errors).sort()).toEqual(['experiment', 'fovs', 'name', 'queue', 'recipe']);
    expect(errors.experiment).toContain('%20');
    expect(errors.recipe).toContain('is not a Python file');
  });
});
