/** Agents section: status, sensors (last value, next run, last error) and recent messages. */
import * as React from 'react';

import type { NotebookScanflowModel } from './model';
import { formatDuration } from './state';
import type { IAgentInfo } from './types';
import { StatusPill } from './widgets';

function fmtWhen(v: number | string | null): string {
  if (v === null || v === undefined || v === '') {
    return '—';
  }
  if (typeof v === 'number') {
    return new Date(v > 1e12 ? v : v * 1000).toLocaleTimeString();
  }
  const d = new Date(v);
  return isNaN(d.getTime()) ? String(v) : d.toLocaleTimeString();
}

function fmtNumber(v: number): string {
  return Number.isInteger(v) ? String(v) : Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(3);
}

/** A sensor's last value as short readable lines (`key: value`), not raw JSON. */
export function sensorValueLines(value: unknown, limit = 6): string[] {
  if (value === null || value === undefined) {
    return ['—'];
  }
  const one = (v: unknown): string =>
    typeof v === 'number'
      ? fmtNumber(v)
      : typeof v === 'string'
        ? v
        : Array.isArray(v)
          ? `[${v.slice(0, 5).map(one).join(', ')}${v.length > 5 ? `, … ${v.length - 5} more` : ''}]`
          : v && typeof v === 'object'
            ? `{${Object.keys(v).length} keys}`
            : String(v);
  if (typeof value === 'object' && !Array.isArray(value)) {
    const entries = Object.entries(value as Record<string, unknown>);
    const lines = entries.slice(0, limit).map(([k, v]) => `${k}: ${one(v)}`);
    return entries.length > limit ? [...lines, `… ${entries.length - limit} more`] : lines.length ? lines : ['{}'];
  }
  return [one(value)];
}

function epochS(v: number | string | null | undefined): number | null {
  if (v === null || v === undefined || v === '') {
    return null;
  }
  if (typeof v === 'number') {
    return v > 1e12 ? v / 1000 : v;
  }
  const t = new Date(v).getTime();
  return isNaN(t) ? null : t / 1000;
}

/** "in 12 s", "due now" (a scheduled run a little late), "—" when the agent is not running. */
export function nextRunText(next: number | string | null | undefined, nowS: number, running: boolean): string {
  const at = epochS(next);
  if (!running || at === null) {
    return '—';
  }
  const delta = at - nowS;
  return delta <= 1 ? 'due now' : `in ${formatDuration(delta)}`;
}

/** One agent message as `12:01:02 kind name: details`. */
export function messageText(m: unknown): string {
  if (!m || typeof m !== 'object') {
    return String(m);
  }
  const { id: _id, at, kind, name, ...rest } = m as Record<string, unknown>;
  const when = typeof at === 'number' ? new Date(at * 1000).toLocaleTimeString() : '';
  const details = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  return [when, kind, name ? `${name}:` : '', details].filter(Boolean).join(' ');
}

function AgentCard(props: { agent: IAgentInfo }): JSX.Element {
  const a = props.agent;
  return (
    <li className="sf-agent" data-agent={a.name}>
      <div className="sf-agent-head">
        <span className={`sf-dot sf-status-${a.status}`} />
        <b>{a.name}</b> <StatusPill status={a.status} />
        {a.uptime_s !== null && a.status === 'running' && <span className="sf-muted"> up {formatDuration(a.uptime_s)}</span>}
        {a.url && (
          <span className="sf-muted sf-agent-url" title={`pid ${a.pid ?? '?'}`}>
            {' '}
            {a.url}
          </span>
        )}
      </div>
      {a.sensors.length > 0 && (
        <table className="sf-sensors">
          <thead>
            <tr>
              <th>sensor</th>
              <th>last run</th>
              <th>next run</th>
            </tr>
          </thead>
          {a.sensors.map(s => (
            <tbody key={s.name} className="sf-sensor" data-sensor={s.name}>
              <tr title={s.schedule ?? ''}>
                <td>{s.name}</td>
                <td className="sf-sensor-last" title={`last run ${fmtWhen(s.last_run)}`}>
                  {fmtWhen(s.last_run)}
                </td>
                <td className="sf-sensor-next" title={`next run ${fmtWhen(s.next_run)}`}>
                  {nextRunText(s.next_run, Date.now() / 1000, a.status === 'running')}
                </td>
              </tr>
              <tr>
                <td colSpan={3} className="sf-sensor-value">
                  {sensorValueLines(s.last_value).map((line, i) => (
                    <div key={i}>{line}</div>
                  ))}
                  {s.last_error && <div className="sf-error-text">{s.last_error}</div>}
                </td>
              </tr>
            </tbody>
          ))}
        </table>
      )}
      {a.messages.length > 0 && (
        <ul className="sf-agent-messages">
          {a.messages.slice(-5).map((m, i) => {
            const text = messageText(m);
            return (
              <li key={i} title={text}>
                {text}
              </li>
            );
          })}
        </ul>
      )}
    </li>
  );
}

export function AgentsSection(props: { model: NotebookScanflowModel }): JSX.Element {
  const { model } = props;
  const anyRunning = model.agents.some(a => a.status === 'running');
  React.useEffect(() => {
    if (!anyRunning) {
      return;
    }
    const timer = setInterval(() => void model.refreshAgents(), 5000);
    return () => clearInterval(timer);
  }, [anyRunning, model]);
  if (model.agentsError) {
    return <div className="sf-error-text">{model.agentsError.userText}</div>;
  }
  if (!model.agents.length) {
    return <div className="sf-muted">{model.app?.nodes.some(n => n.kind === 'agent') ? 'No agent status yet.' : 'No %%agent cells.'}</div>;
  }
  return (
    <ul className="sf-agents">
      {model.agents.map(a => (
        <AgentCard key={a.name} agent={a} />
      ))}
    </ul>
  );
}
