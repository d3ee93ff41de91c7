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
              <th>last value</th>
              <th>next run</th>
            </tr>
          </thead>
          <tbody>
            {a.sensors.map(s => (
              <tr key={s.name} title={s.schedule ?? ''}>
                <td>{s.name}</td>
                <td>
                  {s.last_value === null || s.last_value === undefined ? '—' : JSON.stringify(s.last_value)}
                  {s.last_error && <div className="sf-error-text">{s.last_error}</div>}
                </td>
                <td>{fmtWhen(s.next_run)}</td>
              </tr>
            ))}
          </tbody>
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
