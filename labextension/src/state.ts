/**
 * Reduce a run's event stream into per-step statuses (pure functions, no DOM, no network).
 *
 * The same reducer serves SSE, the JSON polling fallback and history (a RunSummary): events
 * already applied (seq <= lastSeq) are ignored, so overlapping deliveries are harmless.
 */
import type { IRunEvent, IRunSummary, IStepError } from './types';

export type StepStatus =
  | 'pending'
  | 'queued'
  | 'running'
  | 'retrying'
  | 'succeeded'
  | 'failed'
  | 'cached'
  | 'skipped'
  | 'killed';

export type RunPhase = 'running' | 'succeeded' | 'failed' | 'killed' | 'interrupted';

export interface IStepState {
  status: StepStatus;
  attempt: number;
  /** Epoch seconds of the current attempt's start (for the ticking elapsed time). */
  startedAt: number | null;
  finishedAt: number | null;
  durationS: number | null;
  error: IStepError | null;
  /** Short human note: why skipped, where the cache came from, retry info. */
  note: string | null;
  /** Index of the notebook cell being executed inside the step (step_cell events). */
  cellIndex: number | null;
}

export interface IRunState {
  runId: string;
  status: RunPhase;
  steps: Record<string, IStepState>;
  lastSeq: number;
  startedAt: number | null;
  finishedAt: number | null;
  mlflowRunId: string | null;
  finished: boolean;
}

/** Statuses after which a step will not change again in this run. */
export const FINAL_STEP_STATUSES: ReadonlySet<StepStatus> = new Set([
  'succeeded',
  'failed',
  'cached',
  'skipped',
  'killed'
]);

export function emptyStep(): IStepState {
  return {
    status: 'pending',
    attempt: 0,
    startedAt: null,
    finishedAt: null,
    durationS: null,
    error: null,
    note: null,
    cellIndex: null
  };
}

export function initialRunState(runId: string, steps: string[] = []): IRunState {
  const map: Record<string, IStepState> = {};
  for (const name of steps) {
    map[name] = emptyStep();
  }
  return {
    runId,
    status: 'running',
    steps: map,
    lastSeq: -1,
    startedAt: null,
    finishedAt: null,
    mlflowRunId: null,
    finished: false
  };
}

function errorOf(data: Record<string, any>): IStepError | null {
  if (!data || (data.ename === undefined && data.evalue === undefined)) {
    return null;
  }
  return {
    cell: typeof data.cell === 'number' ? data.cell : null,
    ename: String(data.ename ?? 'Error'),
    evalue: String(data.evalue ?? ''),
    traceback: Array.isArray(data.traceback) ? data.traceback.map(String) : []
  };
}

function num(value: unknown): number | null {
  return typeof value === 'number' && isFinite(value) ? value : null;
}

function withStep(
  state: IRunState,
  name: string,
  update: (step: IStepState) => Partial<IStepState>
): IRunState {
  const previous = state.steps[name] ?? emptyStep();
  return { ...state, steps: { ...state.steps, [name]: { ...previous, ...update(previous) } } };
}

/** Apply one runner event; returns a new state (the input is never mutated). */
export function reduceEvent(state: IRunState, event: IRunEvent): IRunState {
  if (typeof event.seq === 'number' && event.seq <= state.lastSeq) {
    return state;
  }
  let next: IRunState = typeof event.seq === 'number' ? { ...state, lastSeq: event.seq } : state;
  const data = event.data ?? {};
  const step = event.step;
  const time = num(event.time);
  const attempt = (prev: IStepState) => event.attempt ?? prev.attempt;

  switch (event.type) {
    case 'run_started': {
      const steps = { ...next.steps };
      for (const name of Array.isArray(data.steps) ? data.steps : []) {
        steps[name] = steps[name] ?? emptyStep();
      }
      return { ...next, steps, status: 'running', startedAt: time, finished: false };
    }
    case 'run_finished': {
      const status = (data.status as RunPhase) ?? 'failed';
      const steps = { ...next.steps };
      for (const [name, s] of Object.entries(steps)) {
        if (!FINAL_STEP_STATUSES.has(s.status)) {
          steps[name] = { ...s, status: status === 'killed' ? 'killed' : 'skipped' };
        }
      }
      return {
        ...next,
        steps,
        status,
        finished: true,
        finishedAt: time,
        mlflowRunId: (data.mlflow_run_id as string) ?? next.mlflowRunId
      };
    }
  }
  if (!step) {
    return next;
  }
  switch (event.type) {
    case 'step_queued':
      return withStep(next, step, () => ({ status: 'queued' }));
    case 'step_started':
      return withStep(next, step, prev => ({
        status: 'running',
        attempt: attempt(prev) || 1,
        startedAt: time,
        finishedAt: null,
        durationS: null,
        error: null,
        cellIndex: null
      }));
    case 'step_cell':
      return withStep(next, step, prev => ({
        status: prev.status === 'pending' || prev.status === 'queued' || prev.status === 'retrying'
          ? 'running'
          : prev.status,
        startedAt: prev.startedAt ?? time,
        attempt: attempt(prev) || 1,
        cellIndex: num(data.index)
      }));
    case 'step_succeeded':
      return withStep(next, step, prev => ({
        status: 'succeeded',
        attempt: attempt(prev),
        finishedAt: time,
        durationS: num(data.duration_s),
        error: null,
        note: null
      }));
    case 'step_failed':
      return withStep(next, step, prev => ({
        status: 'failed',
        attempt: attempt(prev),
        finishedAt: time,
        durationS: num(data.duration_s),
        error: errorOf(data)
      }));
    case 'step_retrying':
      return withStep(next, step, prev => {
        const failed = attempt(prev);
        const nextAttempt = num(data.next_attempt) ?? failed + 1;
        const err = errorOf(data);
        const why = err ? `${err.ename}: ${err.evalue}` : 'failed';
        return {
          status: 'retrying',
          attempt: failed,
          error: err,
          note: `attempt ${failed} ${why}; retrying (attempt ${nextAttempt})`
        };
      });
    case 'step_cached':
      return withStep(next, step, () => ({
        status: 'cached',
        finishedAt: time,
        note: data.cached_from ? `reused from run ${data.cached_from}` : 'reused from cache'
      }));
    case 'step_skipped':
      return withStep(next, step, () => ({
        status: 'skipped',
        note: (data.reason as string) ?? null
      }));
    case 'step_killed':
      return withStep(next, step, prev => ({
        status: 'killed',
        attempt: attempt(prev),
        finishedAt: time
      }));
    default:
      return next;
  }
}

export function reduceEvents(state: IRunState, events: IRunEvent[]): IRunState {
  return events.reduce(reduceEvent, state);
}

const KNOWN: ReadonlySet<string> = new Set([
  'pending',
  'queued',
  'running',
  'retrying',
  'succeeded',
  'failed',
  'cached',
  'skipped',
  'killed'
]);

/** State of a run from its stored summary (history, or a run started elsewhere). */
export function fromSummary(summary: IRunSummary): IRunState {
  const state = initialRunState(summary.run_id);
  for (const [name, s] of Object.entries(summary.steps ?? {})) {
    const status = (KNOWN.has(s.status) ? s.status : 'pending') as StepStatus;
    state.steps[name] = {
      ...emptyStep(),
      status,
      attempt: s.attempts ?? 0,
      durationS: s.duration_s ?? null,
      error: s.error ?? null
    };
  }
  state.status = summary.status;
  state.startedAt = summary.started_at;
  state.finishedAt = summary.finished_at;
  state.mlflowRunId = summary.mlflow_run_id;
  state.finished = summary.status !== 'running';
  return state;
}

/** Seconds a step has been running (live) or took (finished); null when unknown. */
export function stepElapsed(step: IStepState, nowS: number): number | null {
  if (step.durationS !== null) {
    return step.durationS;
  }
  if ((step.status === 'running' || step.status === 'retrying') && step.startedAt !== null) {
    return Math.max(0, nowS - step.startedAt);
  }
  return null;
}

/** "0.4 s", "12 s", "3 m 05 s", "2 h 01 m". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) {
    return '';
  }
  if (seconds < 10) {
    return `${seconds.toFixed(1)} s`;
  }
  if (seconds < 60) {
    return `${Math.round(seconds)} s`;
  }
  const m = Math.floor(seconds / 60);
  if (m < 60) {
    return `${m} m ${String(Math.round(seconds % 60)).padStart(2, '0')} s`;
  }
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} m`;
}

/** Resume is offered when the last run ended without finishing every step. */
export function canResume(status: string | null | undefined): boolean {
  return status === 'failed' || status === 'killed' || status === 'interrupted';
}
