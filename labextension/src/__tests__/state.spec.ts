import {
  canResume,
  formatDuration,
  fromSummary,
  initialRunState,
  reduceEvent,
  reduceEvents,
  stepElapsed
} from '../state';
import type { IRunEvent, IRunSummary } from '../types';

let seq = 0;
function ev(type: string, step: string | null = null, data: Record<string, any> = {}, attempt: number | null = null, time = 100 + seq): IRunEvent {
  return { seq: seq++, type, run_id: 'r1', step, attempt, time, data };
}

beforeEach(() => {
  seq = 0;
});

describe('reduceEvent', () => {
  it('run_started registers every step as pending and marks the run running', () => {
    const s = reduceEvent(initialRunState('r1'), ev('run_started', null, { steps: ['a', 'b'] }));
    expect(s.status).toBe('running');
    expect(Object.keys(s.steps)).toEqual(['a', 'b']);
    expect(s.steps.a.status).toBe('pending');
    expect(s.startedAt).toBe(100);
    expect(s.lastSeq).toBe(0);
  });

  it('walks a step through queued, running (with cell progress) and succeeded', () => {
    let s = initialRunState('r1', ['a']);
    s = reduceEvent(s, ev('step_queued', 'a'));
    expect(s.steps.a.status).toBe('queued');
    s = reduceEvent(s, ev('step_started', 'a', {}, 1, 200));
    expect(s.steps.a).toMatchObject({ status: 'running', attempt: 1, startedAt: 200 });
    s = reduceEvent(s, ev('step_cell', 'a', { index: 2 }, 1));
    expect(s.steps.a.cellIndex).toBe(2);
    expect(s.steps.a.status).toBe('running');
    s = reduceEvent(s, ev('step_succeeded', 'a', { duration_s: 1.5 }, 1));
    expect(s.steps.a).toMatchObject({ status: 'succeeded', durationS: 1.5, error: null });
  });

  it('step_failed keeps the error with cell, ename, evalue and traceback', () => {
    let s = initialRunState('r1', ['x']);
    s = reduceEvent(s, ev('step_started', 'x', {}, 1));
    s = reduceEvent(
      s,
      ev('step_failed', 'x', { duration_s: 0.3, cell: 3, ename: 'ValueError', evalue: 'boom', traceback: ['line 1', 'line 2'] }, 1)
    );
    expect(s.steps.x.status).toBe('failed');
    expect(s.steps.x.error).toEqual({ cell: 3, ename: 'ValueError', evalue: 'boom', traceback: ['line 1', 'line 2'] });
  });

  it('step_retrying records the failed attempt and a new attempt starts clean', () => {
    let s = initialRunState('r1', ['x']);
    s = reduceEvent(s, ev('step_started', 'x', {}, 1));
    s = reduceEvent(s, ev('step_retrying', 'x', { ename: 'IOError', evalue: 'flaky', next_attempt: 2 }, 1));
    expect(s.steps.x.status).toBe('retrying');
    expect(s.steps.x.attempt).toBe(1);
    expect(s.steps.x.note).toBe('attempt 1 IOError: flaky; retrying (attempt 2)');
    expect(s.steps.x.error?.ename).toBe('IOError');
    s = reduceEvent(s, ev('step_started', 'x', {}, 2, 300));
    expect(s.steps.x).toMatchObject({ status: 'running', attempt: 2, error: null, startedAt: 300 });
    s = reduceEvent(s, ev('step_succeeded', 'x', { duration_s: 2 }, 2));
    expect(s.steps.x).toMatchObject({ status: 'succeeded', attempt: 2 });
  });

  it('step_cached and step_skipped carry their reason', () => {
    let s = initialRunState('r1', ['a', 'b']);
    s = reduceEvent(s, ev('step_cached', 'a', { cached_from: 'r0' }));
    s = reduceEvent(s, ev('step_skipped', 'b', { reason: "upstream step 'x' did not succeed", upstream: 'x' }));
    expect(s.steps.a).toMatchObject({ status: 'cached', note: 'reused from run r0' });
    expect(s.steps.b).toMatchObject({ status: 'skipped', note: "upstream step 'x' did not succeed" });
  });

  it('step_killed and run_finished(killed) mark unfinished steps killed', () => {
    let s = initialRunState('r1', ['a', 'b', 'c']);
    s = reduceEvent(s, ev('step_succeeded', 'c', { duration_s: 1 }, 1));
    s = reduceEvent(s, ev('step_started', 'a', {}, 1));
    s = reduceEvent(s, ev('step_killed', 'a', {}, 1));
    expect(s.steps.a.status).toBe('killed');
    s = reduceEvent(s, ev('run_finished', null, { status: 'killed', mlflow_run_id: 'm1' }));
    expect(s).toMatchObject({ status: 'killed', finished: true, mlflowRunId: 'm1' });
    expect(s.steps.b.status).toBe('killed');
    expect(s.steps.c.status).toBe('succeeded');
  });

  it('run_finished(failed) marks steps that never ran as skipped', () => {
    let s = initialRunState('r1', ['a', 'b']);
    s = reduceEvent(s, ev('step_failed', 'a', { ename: 'E', evalue: 'v' }, 1));
    s = reduceEvent(s, ev('run_finished', null, { status: 'failed' }));
    expect(s.steps.b.status).toBe('skipped');
    expect(s.status).toBe('failed');
  });

  it('ignores events already applied (overlap between SSE and polling)', () => {
    const started = ev('step_started', 'a', {}, 1);
    const done = ev('step_succeeded', 'a', { duration_s: 1 }, 1);
    let s = reduceEvents(initialRunState('r1', ['a']), [started, done]);
    const again = reduceEvent(s, started);
    expect(again).toBe(s);
    s = reduceEvent(s, ev('step_queued', 'b'));
    expect(s.steps.b.status).toBe('queued');
  });

  it('never mutates its input and ignores unknown types and step_log', () => {
    const s0 = initialRunState('r1', ['a']);
    const frozen = JSON.stringify(s0);
    const s1 = reduceEvents(s0, [ev('step_log', 'a', { text: 'hi' }), ev('mystery', 'a'), ev('step_started', 'a', {}, 1)]);
    expect(JSON.stringify(s0)).toBe(frozen);
    expect(s1.steps.a.status).toBe('running');
    expect(s1.lastSeq).toBe(2);
  });
});

describe('fromSummary', () => {
  it('builds the state of a finished run from its RunSummary', () => {
    const summary: IRunSummary = {
      run_id: 'r9',
      app: 'diamond',
      notebook: 'notebooks/diamond.ipynb',
      backend: 'local',
      status: 'failed',
      created_at: 1,
      started_at: 2,
      finished_at: 5,
      duration_s: 3,
      params: {},
      mlflow_run_id: 'm9',
      resumed_from: null,
      started_by: 'sidebar',
      tracking: null,
      warnings: [],
      workflow: null,
      managed: true,
      steps: {
        load: { status: 'succeeded', attempts: 1, duration_s: 1, cell: 3, error: null, started_at: 2, finished_at: 3 },
        boom: {
          status: 'failed',
          attempts: 2,
          duration_s: 1,
          cell: 4,
          error: { cell: 4, ename: 'E', evalue: 'v', traceback: [] },
          started_at: 3,
          finished_at: 4
        },
        odd: { status: 'weird', attempts: 0, duration_s: null, cell: null, error: null, started_at: null, finished_at: null }
      }
    };
    const s = fromSummary(summary);
    expect(s).toMatchObject({ runId: 'r9', status: 'failed', finished: true, mlflowRunId: 'm9' });
    expect(s.steps.boom).toMatchObject({ status: 'failed', attempt: 2 });
    expect(s.steps.boom.error?.ename).toBe('E');
    expect(s.steps.odd.status).toBe('pending');
  });
});

describe('helpers', () => {
  it('stepElapsed ticks for running steps and is fixed once done', () => {
    let s = reduceEvent(initialRunState('r1', ['a']), ev('step_started', 'a', {}, 1, 1000));
    expect(stepElapsed(s.steps.a, 1004.5)).toBe(4.5);
    s = reduceEvent(s, ev('step_succeeded', 'a', { duration_s: 2 }, 1));
    expect(stepElapsed(s.steps.a, 9999)).toBe(2);
    expect(stepElapsed(initialRunState('r', ['q']).steps.q, 5)).toBeNull();
  });

  it('formatDuration', () => {
    expect(formatDuration(0.42)).toBe('0.4 s');
    expect(formatDuration(42)).toBe('42 s');
    expect(formatDuration(185)).toBe('3 m 05 s');
    expect(formatDuration(7260)).toBe('2 h 01 m');
    expect(formatDuration(null)).toBe('');
  });

  it('canResume only after an unfinished run', () => {
    expect(['failed', 'killed', 'interrupted'].every(canResume)).toBe(true);
    expect(['succeeded', 'running', null].some(canResume)).toBe(false);
  });
});
