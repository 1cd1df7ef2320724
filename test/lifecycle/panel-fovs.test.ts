import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PANEL_FOVS } from '../../src/run/results.js';

describe('which runs get spots.png', () => {
  it('the control plane requires it for exactly the runs merge-results draws it for', () => {
    // A mismatch fails runs of 17+ FOVs as incomplete (here larger) or accepts a small run without it.
    const merge = readFileSync(new URL('../../containers/merge-results/merge_results.py', import.meta.url), 'utf8');
    const drawn = /^PANEL_FOVS = (\d+)\b/m.exec(merge);
    expect(drawn, 'merge_results.py defines PANEL_FOVS').not.toBeNull();
    expect(Number(drawn![1])).toBe(PANEL_FOVS);
  });
});
