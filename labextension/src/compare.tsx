/** Run comparison: two pipeline runs side by side (parameters, metrics, step durations). */
import * as React from 'react';

import { ApiError, type ScanflowClient } from './api';
import { formatDuration } from './state';
import type { IMlflowRun } from './types';

export interface ICompareRow {
  section: 'params' | 'metrics' | 'steps';
  key: string;
  a: string;
  b: string;
  differs: boolean;
}

function shown(v: unknown): string {
  if (v === undefined || v === null || v === '') {
    return '—';
  }
  if (typeof v === 'number') {
    return Number.isInteger(v) ? String(v) : Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4);
  }
  return String(v);
}

/** Step name → duration in seconds, from a run's step runs. */
export function stepDurations(steps: IMlflowRun[]): Record<string, number | null> {
  const out: Record<string, number | null> = {};
  for (const s of steps) {
    out[s.tags?.['scanflow.step'] ?? s.run_name ?? s.run_id] = s.duration_s;
  }
  return out;
}

/**
 * Rows of the comparison: every parameter, metric (a run's own and its steps', as `step.metric`)
 * and step duration of either run, sorted by name within each section.
 */
export function compareRows(
  a: IMlflowRun,
  b: IMlflowRun,
  stepsA: IMlflowRun[],
  stepsB: IMlflowRun[]
): ICompareRow[] {
  const metrics = (run: IMlflowRun, steps: IMlflowRun[]) => {
    // scanflow.* metrics (durations, cache hits) are Scanflow's bookkeeping: the steps rows show durations
    const own = (m: Record<string, number> | undefined) => Object.entries(m ?? {}).filter(([k]) => !k.startsWith('scanflow.'));
    const out: Record<string, number> = Object.fromEntries(own(run.metrics));
    for (const s of steps) {
      const step = s.tags?.['scanflow.step'] ?? s.run_name ?? s.run_id;
      for (const [k, v] of own(s.metrics)) {
        out[`${step}.${k}`] = v;
      }
    }
    return out;
  };
  const rows: ICompareRow[] = [];
  const add = (section: ICompareRow['section'], x: Record<string, unknown>, y: Record<string, unknown>, fmt = shown) => {
    for (const key of [...new Set([...Object.keys(x), ...Object.keys(y)])].sort()) {
      const [va, vb] = [fmt(x[key]), fmt(y[key])];
      rows.push({ section, key, a: va, b: vb, differs: va !== vb });
    }
  };
  add('params', a.params ?? {}, b.params ?? {});
  add('metrics', metrics(a, stepsA), metrics(b, stepsB));
  add('steps', stepDurations(stepsA), stepDurations(stepsB), v => (typeof v === 'number' ? formatDuration(v) : '—'));
  return rows;
}

export function RunComparison(props: { client: ScanflowClient; a: IMlflowRun; b: IMlflowRun; onClose: () => void }): JSX.Element {
  const { client, a, b } = props;
  const [steps, setSteps] = React.useState<[IMlflowRun[], IMlflowRun[]] | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  React.useEffect(() => {
    Promise.all([a, b].map(r => client.mlflowRuns({ parent: r.run_id, maxResults: 200 })))
      .then(([pa, pb]) => setSteps([pa.runs, pb.runs]))
      .catch(err => setError(err instanceof ApiError ? err.userText : String(err)));
  }, [a.run_id, b.run_id]);
  const name = (r: IMlflowRun) => r.run_name ?? r.run_id.slice(0, 8);
  return (
    <div className="sf-compare">
      <div className="sf-compare-head">
        <b>Compare</b>
        <button className="sf-link sf-compare-close" onClick={props.onClose} aria-label="Close the comparison">
          close
        </button>
      </div>
      {error && <div className="sf-error-text">{error}</div>}
      {!steps && !error && <div className="sf-muted">Loading steps…</div>}
      {steps && (
        <table className="sf-compare-table">
          <thead>
            <tr>
              <th />
              <th title={a.run_id}>{name(a)}</th>
              <th title={b.run_id}>{name(b)}</th>
            </tr>
          </thead>
          <tbody>
            {compareRows(a, b, steps[0], steps[1]).map(r => (
              <tr key={`${r.section}:${r.key}`} className={r.differs ? 'sf-differs' : ''} data-row={`${r.section}:${r.key}`}>
                <td title={r.section}>
                  <span className="sf-muted">{r.section === 'steps' ? 'step ' : r.section === 'params' ? 'param ' : ''}</span>
                  {r.key}
                </td>
                <td>{r.a}</td>
                <td>{r.b}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
