import { badgeText } from '../badges';
import { declaredName } from '../cells';
import { initialRunState, reduceEvents } from '../state';
import type { IRunEvent } from '../types';

const node = { id: 'explode', kind: 'executor' as const };
let seq = 0;
const ev = (type: string, data: Record<string, unknown> = {}, attempt = 1, time = 1000): IRunEvent => ({
  seq: ++seq,
  type,
  run_id: 'r',
  step: 'explode',
  attempt,
  time,
  data
});

describe('badgeText', () => {
  it('names the step before any run', () => {
    expect(badgeText(node, undefined, 0)).toBe('executor explode');
  });

  it('ticks while running and shows the error when failed', () => {
    let s = reduceEvents(initialRunState('r', ['explode']), [ev('step_started')]);
    expect(badgeText(node, s.steps.explode, 1003.2)).toBe('running · 3.2 s');
    s = reduceEvents(s, [ev('step_failed', { duration_s: 0.8, ename: 'ValueError', evalue: 'this step fails on purpose', traceback: [] })]);
    expect(badgeText(node, s.steps.explode, 5000)).toBe('failed · 0.8 s — ValueError: this step fails on purpose');
  });

  it('shows the attempt of a retried step, and no time for cached/skipped', () => {
    let s = reduceEvents(initialRunState('r', ['explode']), [ev('step_started'), ev('step_retrying', { ename: 'E', evalue: 'v' }), ev('step_started', {}, 2, 2000)]);
    expect(badgeText(node, s.steps.explode, 2001)).toBe('running · attempt 2 · 1.0 s');
    s = reduceEvents(initialRunState('r', ['explode']), [ev('step_cached', { cached_from: 'r0' })]);
    expect(badgeText(node, s.steps.explode, 0)).toBe('cached');
  });
});

describe('declaredName', () => {
  it('reads the step name of a magic cell', () => {
    expect(declaredName('%%executor load --outputs X df\nx = 1')).toBe('load');
    expect(declaredName('  %%agent monitor --template monitor')).toBe('monitor');
    expect(declaredName('%%setup\nimport os')).toBeNull();
    expect(declaredName('# %%executor nope')).toBeNull();
  });
});
