/** State logic of the sidebar fixes of #15: live runs, stale badges, changed parameters, reasons, contrast. */
import { badgeText, isStale, normalizedSource, staleText } from '../badges';
import { contrastRatio, parseColor } from '../contrast';
import { newerRun } from '../model';
import { cellText, viewerId } from '../outputviewer';
import { changedParams, reasonLines } from '../params';
import { emptyStep, type IStepState } from '../state';
import { debounce } from '../typing';
import type { IParameter, IRunSummary } from '../types';

const summary = (run_id: string, created_at: number | null, status = 'succeeded'): IRunSummary =>
  ({
    run_id,
    app: 'a',
    notebook: 'n.ipynb',
    backend: 'local',
    status,
    created_at,
    started_at: created_at,
    finished_at: null,
    duration_s: null,
    params: {},
    mlflow_run_id: null,
    resumed_from: null,
    steps: {},
    managed: false
  }) as IRunSummary;

describe('newerRun (runs started elsewhere)', () => {
  const old = summary('20261204T090000-aaaaaa', 100);
  const cli = summary('20261204T090500-bbbbbb', 400, 'running');
  it('shows the newest run when none is shown', () => {
    expect(newerRun(null, [cli, old])).toBe(cli);
    expect(newerRun(null, [])).toBeNull();
  });
  it('switches to a newer run started by the CLI, an agent or another tab', () => {
    expect(newerRun(old, [cli, old])).toBe(cli);
  });
  it('keeps the shown run when it is the newest, or newer than the list', () => {
    expect(newerRun(cli, [cli, old])).toBeNull();
    expect(newerRun(cli, [old])).toBeNull();
  });
  it('orders runs of the same second by id', () => {
    const a = summary('20261204T090000-aaaaaa', 100);
    const b = summary('20261204T090000-bbbbbb', 100);
    expect(newerRun(a, [b])).toBe(b);
    expect(newerRun(b, [a])).toBeNull();
  });
  it('never adopts an unreadable run', () => {
    expect(newerRun(old, [summary('20261204T100000-cccccc', 900, 'unreadable')])).toBeNull();
  });
});

describe('stale badges', () => {
  const done: IStepState = { ...emptyStep(), status: 'succeeded', durationS: 1 };
  it('a finished step whose cells changed is stale; whitespace at line ends does not count', () => {
    const ran = normalizedSource(['%%executor a\nx = 1']);
    expect(isStale(done, ran, normalizedSource(['%%executor a\nx = 1  \n']))).toBe(false);
    expect(isStale(done, ran, normalizedSource(['%%executor a\nx = 2']))).toBe(true);
    expect(staleText(done)).toBe('stale · was succeeded');
  });
  it('a running or never-run step is not stale; nor is one without a snapshot', () => {
    const running: IStepState = { ...emptyStep(), status: 'running' };
    expect(isStale(running, 'a', 'b')).toBe(false);
    expect(isStale(undefined, 'a', 'b')).toBe(false);
    expect(isStale(done, undefined, 'b')).toBe(false);
  });
  it('every part of a multi-cell step counts', () => {
    const ran = normalizedSource(['%%executor a\nx = 1', '%%executor a\ny = x']);
    expect(isStale(done, ran, normalizedSource(['%%executor a\nx = 1', '%%executor a\ny = x + 1']))).toBe(true);
  });
  it('a cancelled step says killed (its colour is neutral in CSS)', () => {
    expect(badgeText({ id: 'a', kind: 'executor' }, { ...emptyStep(), status: 'killed' }, 0)).toBe('killed');
  });
});

describe('changed parameters', () => {
  const params: IParameter[] = [
    { name: 'n', value: 50, type: 'int' },
    { name: 'lr', value: 0.1, type: 'float' },
    { name: 'label', value: 'x', type: 'str' },
    { name: 'flag', value: false, type: 'bool' },
    { name: 'sizes', value: [1, 2], type: 'list' }
  ];
  it('marks values that differ from the notebook, not values typed back', () => {
    expect([...changedParams(params, {})]).toEqual([]);
    expect([...changedParams(params, { n: '50', lr: '0.10', label: 'x', flag: false, sizes: '[1,2]' })]).toEqual([]);
    expect([...changedParams(params, { n: '7', lr: '', label: 'y', flag: true, sizes: '[1]' })].sort()).toEqual([
      'flag',
      'label',
      'lr',
      'n',
      'sizes'
    ]);
    expect([...changedParams(params, { sizes: 'not json' })]).toEqual(['sizes']);
  });
});

describe('reasonLines', () => {
  it('shows each reason once, with the buttons it disables', () => {
    expect(
      reasonLines([
        ['Build images', 'fix the validation errors listed above first'],
        ['Deploy', 'fix the validation errors listed above first'],
        ['Undeploy', null]
      ])
    ).toEqual(['Build images, Deploy: fix the validation errors listed above first']);
    expect(reasonLines([['Run', null]])).toEqual([]);
  });
});

describe('contrast', () => {
  it('parses the forms getComputedStyle returns', () => {
    expect(parseColor('#fff')).toEqual([255, 255, 255]);
    expect(parseColor('rgb(46, 125, 50)')).toEqual([46, 125, 50]);
    expect(parseColor('rgba(0, 0, 0, 0.5)')).toEqual([128, 128, 128]);
    expect(() => parseColor('transparent')).toThrow(/not a colour/);
  });
  it('computes WCAG ratios (white on the old green was 4.1:1, the new one passes)', () => {
    const white = parseColor('#ffffff');
    expect(contrastRatio(white, parseColor('#000000'))).toBeCloseTo(21, 5);
    expect(contrastRatio(white, parseColor('#388e3c'))).toBeLessThan(4.5);
    for (const bg of ['#2e7d32', '#1565c0', '#c62828', '#00695c', '#616161', '#546e7a']) {
      expect(contrastRatio(white, parseColor(bg))).toBeGreaterThanOrEqual(4.5);
    }
  });
});

describe('output viewer helpers', () => {
  it('joins list sources and makes one tab id per run and step', () => {
    expect(cellText({ source: ['a\n', 'b'] })).toBe('a\nb');
    expect(viewerId('20261204T090000-aaaaaa', 'train.v2')).toBe('scanflow-output-20261204T090000-aaaaaa-train_v2');
  });
});

describe('debounce (validation as you type)', () => {
  it('calls once after the burst ends; cancel drops the pending call', () => {
    jest.useFakeTimers();
    const fn = jest.fn();
    const d = debounce(fn, 600);
    d();
    jest.advanceTimersByTime(300);
    d();
    jest.advanceTimersByTime(599);
    expect(fn).not.toHaveBeenCalled();
    jest.advanceTimersByTime(1);
    expect(fn).toHaveBeenCalledTimes(1);
    d();
    d.cancel();
    jest.advanceTimersByTime(1000);
    expect(fn).toHaveBeenCalledTimes(1);
    jest.useRealTimers();
  });
});

import { failureText, jobFailure, splitFix } from '../jobs';

describe('build failures (readable, with the fix)', () => {
  it("splits the CLI's 'Fix:' sentence off the message", () => {
    expect(splitFix('base image x is not on this engine. Fix: run `scanflow build-base`.')).toEqual({
      message: 'base image x is not on this engine',
      fix: 'run `scanflow build-base`.'
    });
    expect(splitFix('no fix here')).toEqual({ message: 'no fix here', fix: null });
  });
  it('reads the CLI JSON of a failed build, not the raw log', () => {
    const job = {
      status: 'failed',
      exit_code: 1,
      log: '{\n  "status": "error",\n  "error": "..."\n}',
      result: { status: 'error', error: 'base image 127.0.0.1:9/nope:1 cannot be pulled (refused). Fix: check the image name.' }
    };
    const f = jobFailure(job);
    expect(f).toEqual({ message: 'base image 127.0.0.1:9/nope:1 cannot be pulled (refused)', fix: 'check the image name.', details: [] });
    expect(failureText('Image build', f)).toBe(
      'Image build failed: base image 127.0.0.1:9/nope:1 cannot be pulled — Fix: check the image name.'
    );
  });
  it('lists import-check problems with their fixes', () => {
    const job = {
      status: 'failed',
      result: { ok: false, steps: { train: { import_check: { problems: [{ module: 'sklearn', error: 'No module named sklearn', fix: 'add scikit-learn' }] } } } }
    };
    expect(jobFailure(job)).toEqual({
      message: '1 problem found',
      fix: null,
      details: ['train: No module named sklearn — fix: add scikit-learn']
    });
  });
  it('falls back to the last log lines', () => {
    expect(jobFailure({ status: 'failed', log: 'a\nb\nTraceback\nboom', exit_code: 1 }).message).toBe('b\nTraceback\nboom');
  });
});

import { nextRunText, sensorValueLines } from '../section_agents';

describe('agent sensors (readable values, no next run in the past)', () => {
  it('shows values as key: value lines', () => {
    expect(sensorValueLines({ accuracy: 0.91234, rows: 120, drift: { a: 1 }, tags: ['x', 'y'] })).toEqual([
      'accuracy: 0.912',
      'rows: 120',
      'drift: {1 keys}',
      'tags: [x, y]'
    ]);
    expect(sensorValueLines(null)).toEqual(['—']);
    expect(sensorValueLines(3.14159)).toEqual(['3.14']);
    expect(sensorValueLines(Object.fromEntries([...'abcdefgh'].map((k, i) => [k, i])), 6)).toHaveLength(7);
  });
  it('never shows a next run in the past', () => {
    expect(nextRunText(1012, 1000, true)).toBe('in 12 s');
    expect(nextRunText(990, 1000, true)).toBe('due now');
    expect(nextRunText(2000, 1000, false)).toBe('—');
    expect(nextRunText(null, 1000, true)).toBe('—');
    expect(nextRunText(new Date(1_000_030_000).toISOString(), 1_000_000, true)).toBe('in 30 s');
  });
});

import { compareRows } from '../compare';
import type { IMlflowRun } from '../types';

describe('run comparison', () => {
  const mk = (id: string, extra: Partial<IMlflowRun>): IMlflowRun => ({
    run_id: id,
    run_name: id,
    experiment_id: '1',
    status: 'FINISHED',
    start_time: 0,
    end_time: 0,
    duration_s: 1,
    metrics: {},
    params: {},
    tags: {},
    ...extra
  });
  it('lists params, step metrics and step durations of both runs, marking differences', () => {
    const a = mk('a', { params: { n_rows: '50', lr: '0.1' } });
    const b = mk('b', { params: { n_rows: '7', lr: '0.1' } });
    const stepsA = [mk('a1', { tags: { 'scanflow.step': 'train' }, metrics: { accuracy: 0.9, 'scanflow.duration_s': 2 }, duration_s: 2 })];
    const stepsB = [mk('b1', { tags: { 'scanflow.step': 'train' }, metrics: { accuracy: 0.95 }, duration_s: 2 })];
    expect(compareRows(a, b, stepsA, stepsB)).toEqual([
      { section: 'params', key: 'lr', a: '0.1', b: '0.1', differs: false },
      { section: 'params', key: 'n_rows', a: '50', b: '7', differs: true },
      { section: 'metrics', key: 'train.accuracy', a: '0.9000', b: '0.9500', differs: true },
      { section: 'steps', key: 'train', a: '2.0 s', b: '2.0 s', differs: false }
    ]);
  });
  it('shows — for what only one run has', () => {
    const rows = compareRows(mk('a', { params: { x: '1' } }), mk('b', {}), [], []);
    expect(rows).toEqual([{ section: 'params', key: 'x', a: '1', b: '—', differs: true }]);
  });
});

import { shortRunName } from '../section_runs';

describe('run names', () => {
  it('shows a Scanflow run id short (the date line has its time)', () => {
    expect(shortRunName('20261204T100055-6f3cf9', 'abc')).toBe('#6f3cf9');
    expect(shortRunName('my run', 'abc')).toBe('my run');
    expect(shortRunName(null, '0123456789abcdef')).toBe('01234567');
  });
});
