/** Runs section: the app's MLflow runs (paged, filterable), each expandable into its step runs. */
import * as React from 'react';

import { ApiError } from './api';
import { RunComparison } from './compare';
import type { ISidebarContext } from './context';
import type { NotebookScanflowModel } from './model';
import { formatDuration } from './state';
import { MlflowLink, RunId, WorkflowLine } from './links';
import type { IAppNode, IMlflowRun } from './types';
import { Btn, StatusPill } from './widgets';

function fmtTime(ms: number | null): string {
  if (!ms) {
    return '';
  }
  const d = new Date(ms);
  return d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

function fmtNumber(v: number): string {
  return Number.isInteger(v) ? String(v) : Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(3);
}

function KeyValues(props: { title: string; values: Record<string, unknown>; limit?: number }): JSX.Element | null {
  const entries = Object.entries(props.values).filter(([k]) => !k.startsWith('scanflow.'));
  if (!entries.length) {
    return null;
  }
  const shown = props.limit ? entries.slice(0, props.limit) : entries;
  return (
    <div className={`sf-kv sf-kv-${props.title}`}>
      <span className="sf-kv-title">{props.title}</span>
      {shown.map(([k, v]) => (
        <span key={k} className="sf-kv-item" title={`${k} = ${v}`}>
          {k}=<b>{typeof v === 'number' ? fmtNumber(v) : String(v)}</b>
        </span>
      ))}
      {shown.length < entries.length && <span className="sf-muted">+{entries.length - shown.length}</span>}
    </div>
  );
}

/** A Scanflow run id (`20261204T100055-6f3cf9`) shown short: `#6f3cf9` (the date line has the time). */
/** "started by agent planner", "started from the CLI", …; null for runs that do not say. */
export function startedByLabel(by: string | null | undefined): string | null {
  if (!by) {
    return null;
  }
  if (by.startsWith('agent:')) {
    return `started by agent ${by.slice('agent:'.length)}`;
  }
  const where: Record<string, string> = { cli: 'the CLI', notebook: 'the notebook', sidebar: 'the sidebar', python: 'Python' };
  return `started from ${where[by] ?? by}`;
}

export function shortRunName(name: string | null, runId: string): string {
  const m = /^\d{8}T\d{6}-([A-Za-z0-9]+)$/.exec(name ?? '');
  return m ? `#${m[1]}` : name ?? runId.slice(0, 8);
}

function mlflowStatus(run: IMlflowRun): string {
  const s = run.tags?.['scanflow.status'] ?? run.status ?? '';
  const map: Record<string, string> = { FINISHED: 'succeeded', FAILED: 'failed', KILLED: 'killed', RUNNING: 'running', SCHEDULED: 'queued' };
  return map[s] ?? s.toLowerCase();
}

/** Step runs in notebook order (then by start time). */
export function sortSteps(runs: IMlflowRun[], nodes: IAppNode[]): IMlflowRun[] {
  const order = new Map(nodes.map(n => [n.id, n.cell]));
  const key = (r: IMlflowRun) => order.get(r.tags?.['scanflow.step'] ?? '') ?? Number.MAX_SAFE_INTEGER;
  return [...runs].sort((a, b) => key(a) - key(b) || (a.start_time ?? 0) - (b.start_time ?? 0));
}

function StepRuns(props: { parent: IMlflowRun; model: NotebookScanflowModel; ctx: ISidebarContext }): JSX.Element {
  const [steps, setSteps] = React.useState<IMlflowRun[] | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  React.useEffect(() => {
    props.model.client
      .mlflowRuns({ parent: props.parent.run_id, maxResults: 200 })
      .then(page => setSteps(sortSteps(page.runs, props.model.app?.nodes ?? [])))
      .catch(err => setError(err instanceof ApiError ? err.userText : String(err)));
  }, [props.parent.run_id]);
  const runId = props.parent.tags?.['scanflow.run_id'];
  const openOutput = (step: string) => props.ctx.openOutput(runId!, step);
  if (error) {
    return <div className="sf-error-text">{error}</div>;
  }
  if (!steps) {
    return <div className="sf-muted">Loading steps…</div>;
  }
  if (!steps.length) {
    return <div className="sf-muted">No step runs recorded.</div>;
  }
  return (
    <ul className="sf-steps">
      {steps.map(s => {
        const name = s.tags?.['scanflow.step'] ?? s.run_name ?? s.run_id;
        const st = mlflowStatus(s);
        const err = s.tags?.['scanflow.error.ename'];
        return (
          <li key={s.run_id} className="sf-step" data-step={name}>
            <span className={`sf-dot sf-status-${st}`} title={st} />
            <span className="sf-step-name">{name}</span>
            <span className="sf-muted sf-step-duration">{formatDuration(s.duration_s)}</span>
            {runId && (
              <>
                <button className="sf-link sf-step-log" onClick={() => props.ctx.showLog(runId, name, null)}>
                  log
                </button>
                <button
                  className="sf-link sf-step-notebook"
                  title={`Open the output notebook of ${name} (read-only)`}
                  onClick={() => openOutput(name)}
                >
                  notebook
                </button>
                {st === 'failed' && props.ctx.debugInNotebook && (
                  <button
                    className="sf-link sf-step-debug"
                    title={`Load the inputs and parameters ${name} received in this run into the notebook's kernel`}
                    onClick={() => props.ctx.debugInNotebook!(runId, name)}
                  >
                    Debug in notebook
                  </button>
                )}
              </>
            )}
            <MlflowLink client={props.model.client} runId={s.run_id} experimentId={s.experiment_id} what={`step run ${name}`} />
            {err && (
              <div className="sf-error-text sf-step-error">
                {err}: {s.tags?.['scanflow.error.evalue']}
              </div>
            )}
            <KeyValues title="metrics" values={s.metrics ?? {}} limit={4} />
          </li>
        );
      })}
    </ul>
  );
}

/** An expanded run's ids (whole, copyable) and, for a kubernetes run, its Workflow. */
function RunDetail(props: { run: IMlflowRun; model: NotebookScanflowModel; ctx: ISidebarContext }): JSX.Element {
  const runId = props.run.tags?.['scanflow.run_id'];
  const workflow = runId ? props.model.storeRuns[runId]?.workflow : null;
  const open = props.ctx.openRunAsNotebook;
  return (
    <div className="sf-run-detail">
      {runId && <RunId runId={runId} label="run" />}
      {runId && open && (
        <button
          className="sf-link sf-run-as-notebook"
          title={`Write scanflow-run-${runId}.ipynb (parameters and each step's outputs) and open it`}
          onClick={() => open(runId)}
        >
          Open run as notebook
        </button>
      )}
      <RunId runId={props.run.run_id} label="MLflow run" />
      {workflow && <WorkflowLine workflow={workflow} />}
    </div>
  );
}

export function RunsSection(props: { model: NotebookScanflowModel; ctx: ISidebarContext }): JSX.Element {
  const { model } = props;
  const experiment = model.app?.app?.name ?? null;
  const [runs, setRuns] = React.useState<IMlflowRun[]>([]);
  const [token, setToken] = React.useState<string | null>(null);
  const [filter, setFilter] = React.useState('');
  const [applied, setApplied] = React.useState('');
  const [error, setError] = React.useState<string | null>(null);
  const [loading, setLoading] = React.useState(false);
  const [expanded, setExpanded] = React.useState<string | null>(null);
  /** Up to two runs picked for comparison (MLflow run ids, in the order picked). */
  const [picked, setPicked] = React.useState<string[]>([]);
  const togglePick = (id: string) =>
    setPicked(prev => (prev.includes(id) ? prev.filter(p => p !== id) : [...prev, id].slice(-2)));
  /** Bumped by Filter: the same filter applied again reloads too. */
  const [reloads, setReloads] = React.useState(0);
  const load = async (pageToken: string | null, replace: boolean) => {
    if (!experiment) {
      return;
    }
    setLoading(true);
    try {
      const page = await model.client.mlflowRuns({ experiment, filter: applied || undefined, pageToken, maxResults: 20 });
      setRuns(replace ? page.runs : prev => [...prev, ...page.runs]);
      setToken(page.next_page_token);
      setError(null);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404 && !applied) {
        // No experiment yet: the app has never run.
        setRuns([]);
        setToken(null);
        setError(null);
        return;
      }
      setError(err instanceof ApiError ? err.userText : String(err));
      if (replace) {
        setRuns([]);
        setToken(null);
      }
    } finally {
      setLoading(false);
    }
  };
  React.useEffect(() => {
    void load(null, true);
  }, [experiment, applied, reloads, model.runsVersion, props.ctx.settings().trackingUri]);
  if (!experiment) {
    return <div className="sf-muted">Runs appear once the notebook declares an app.</div>;
  }
  return (
    <div className="sf-runs">
      <form
        className="sf-row sf-filter"
        onSubmit={e => {
          e.preventDefault();
          setApplied(filter.trim());
          setReloads(n => n + 1);
        }}
      >
        <input
          className="jp-mod-styled sf-input sf-filter-input"
          placeholder="MLflow filter, e.g. metrics.accuracy > 0.8"
          value={filter}
          onChange={e => setFilter(e.target.value)}
        />
        <button className="jp-Button jp-mod-styled sf-btn" type="submit">
          Filter
        </button>
      </form>
      {error && <div className="sf-error-text sf-filter-error">{error}</div>}
      {!error && !runs.length && !loading && (
        <div className="sf-muted sf-runs-empty">
          {applied ? `No runs match “${applied}”.` : `No runs in experiment “${experiment}” yet.`}
        </div>
      )}
      {picked.length === 1 && <div className="sf-muted sf-compare-hint">Pick one more run to compare.</div>}
      {picked.length === 2 && runs.find(r => r.run_id === picked[0]) && runs.find(r => r.run_id === picked[1]) && (
        <RunComparison
          client={model.client}
          a={runs.find(r => r.run_id === picked[0])!}
          b={runs.find(r => r.run_id === picked[1])!}
          onClose={() => setPicked([])}
        />
      )}
      <ul className="sf-run-list">
        {runs.map(r => {
          const st = mlflowStatus(r);
          const open = expanded === r.run_id;
          return (
            <li key={r.run_id} className={`sf-run ${open ? 'sf-expanded' : ''}`} data-run={r.run_id}>
              <div className="sf-run-row">
                <input
                  type="checkbox"
                  className="sf-compare-pick"
                  title="Pick two runs to compare them"
                  aria-label={`Compare run ${r.run_name ?? r.run_id}`}
                  checked={picked.includes(r.run_id)}
                  onChange={() => togglePick(r.run_id)}
                />
                <div
                  className="sf-run-head"
                  role="button"
                  tabIndex={0}
                  aria-expanded={open}
                  onClick={() => setExpanded(open ? null : r.run_id)}
                  onKeyDown={e => {
                    if (e.key === 'Enter' || e.key === ' ') {
                      e.preventDefault();
                      setExpanded(open ? null : r.run_id);
                    }
                  }}
                >
                  <span className={`sf-caret ${open ? 'sf-open' : ''}`}>▸</span>
                  <StatusPill status={st} />
                  <span className="sf-run-name" title={`run ${r.run_name ?? ''} (MLflow run ${r.run_id})`}>
                    {shortRunName(r.run_name, r.run_id)}
                  </span>
                  <span className="sf-muted sf-run-duration">{formatDuration(r.duration_s)}</span>
                </div>
                <MlflowLink
                  client={model.client}
                  runId={r.run_id}
                  experimentId={r.experiment_id}
                  what={`run ${shortRunName(r.run_name, r.run_id)}`}
                />
              </div>
              <div className="sf-muted sf-run-when">
                {fmtTime(r.start_time)}
                {r.tags?.['scanflow.backend'] ? ` · ${r.tags['scanflow.backend']}` : ''}
                {(() => {
                  const by = startedByLabel(model.storeRuns[r.tags?.['scanflow.run_id'] ?? '']?.started_by);
                  return by ? <span className="sf-started-by">{` · ${by}`}</span> : null;
                })()}
                {(() => {
                  const from = model.storeRuns[r.tags?.['scanflow.run_id'] ?? '']?.resumed_from;
                  return from ? <span className="sf-resumed-from" title={`resumed from run ${from}`}>{` · resumed from ${shortRunName(from, from)}`}</span> : null;
                })()}
              </div>
              <KeyValues title="metrics" values={r.metrics ?? {}} limit={open ? undefined : 3} />
              {open && <RunDetail run={r} model={model} ctx={props.ctx} />}
              {open && <KeyValues title="params" values={r.params ?? {}} />}
              {open && <StepRuns parent={r} model={model} ctx={props.ctx} />}
            </li>
          );
        })}
      </ul>
      {token && (
        <Btn label="Load more" busy={loading} onClick={() => void load(token, false)} />
      )}
    </div>
  );
}
