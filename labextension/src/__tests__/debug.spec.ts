import { debugCode, debugSummary } from '../debug';

describe('debugCode', () => {
  it('calls debug_step (what %scanflow debug calls) with the step and run', () => {
    expect(debugCode('train', '20261204T130000-abc123')).toBe(
      'import scanflow_jupyter.notebook.debug as _scanflow_debug; ' +
        "_scanflow_debug.debug_step('train', '20261204T130000-abc123', get_ipython()); del _scanflow_debug"
    );
  });
  it('refuses names that could inject code', () => {
    expect(debugCode('a; import os', 'r1')).toBeNull();
    expect(debugCode('train', 'r1\nprint(1)')).toBeNull();
    expect(debugCode('', 'r1')).toBeNull();
  });
});

describe('debugSummary', () => {
  it('joins what the kernel printed', () => {
    expect(debugSummary(['scanflow debug: step ', "'b'\n"], null)).toEqual({ ok: true, text: "scanflow debug: step 'b'" });
  });
  it('says so when nothing was printed', () => {
    expect(debugSummary([], null).ok).toBe(true);
  });
  it('reports the error', () => {
    expect(debugSummary(['x'], { ename: 'UsageError', evalue: 'no run' })).toEqual({ ok: false, text: 'UsageError: no run' });
  });
});
