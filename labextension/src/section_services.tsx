/** Services section: the notebook's `%%service` cells — state, URL, model version, Start/Stop, "try it". */
import * as React from 'react';

import { ApiError } from './api';
import type { NotebookScanflowModel } from './model';
import { EXAMPLE_PAYLOAD, answerView, isSettling, parsePayload, serviceRows, servedText } from './services';
import type { IServiceInfo, ITryAnswer } from './types';
import { Btn, StatusPill, Ticks } from './widgets';

function errorText(err: unknown): string {
  if (err instanceof ApiError) {
    return err.userText;
  }
  return String(err);
}

function TryIt(props: { model: NotebookScanflowModel; service: IServiceInfo }): JSX.Element {
  const { model, service } = props;
  const [text, setText] = React.useState(EXAMPLE_PAYLOAD);
  const [answer, setAnswer] = React.useState<ITryAnswer | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [busy, setBusy] = React.useState(false);
  const id = `sf-try-${service.name}`;
  const send = async () => {
    const parsed = parsePayload(text);
    setAnswer(null);
    if (!parsed.ok) {
      setError(parsed.error);
      return;
    }
    setBusy(true);
    setError(null);
    try {
      setAnswer(await model.client.tryService(model.path, service.name, parsed.value));
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  const view = answer ? answerView(answer) : null;
  return (
    <div className="sf-try">
      <label htmlFor={id} className="sf-muted">
        Try it: JSON for <code>POST /predict</code>
      </label>
      <textarea id={id} className="sf-try-payload" rows={3} spellCheck={false} value={text} onChange={e => setText(e.target.value)} />
      <Btn label="Send" busy={busy} disabledReason={service.state === 'running' ? null : `${service.name} is not running`} onClick={() => void send()} />
      {error && (
        <div className="sf-error-text sf-try-error" role="alert">
          <Ticks text={error} />
        </div>
      )}
      {view && (
        <div className={`sf-try-answer ${view.ok ? 'sf-try-ok' : 'sf-try-refused'}`} role="status">
          <div className="sf-try-head">{view.head}</div>
          <pre>{view.body}</pre>
        </div>
      )}
    </div>
  );
}

function ServiceCard(props: { model: NotebookScanflowModel; service: IServiceInfo }): JSX.Element {
  const s = props.service;
  const served = servedText(s);
  return (
    <li className="sf-service" data-service={s.name}>
      <div className="sf-agent-head">
        <span className={`sf-dot sf-status-${s.state}`} />
        <b>{s.name}</b> <StatusPill status={s.state} />
        {s.restarts > 0 && <span className="sf-muted"> restarted {s.restarts}×</span>}
      </div>
      {s.url && s.state !== 'stopped' && (
        <div className="sf-service-url">
          <a href={s.url} target="_blank" rel="noopener noreferrer" className="sf-link">
            {s.url}
          </a>
        </div>
      )}
      {served && <div className="sf-muted sf-service-model">serves {served}</div>}
      {s.error && (
        <div className="sf-error-text sf-service-error">
          <Ticks text={s.error} />
          {s.log && <div className="sf-muted">log: {s.log}</div>}
        </div>
      )}
      {s.state === 'running' && <TryIt model={props.model} service={s} />}
    </li>
  );
}

export function ServicesSection(props: { model: NotebookScanflowModel }): JSX.Element {
  const { model } = props;
  const [listed, setListed] = React.useState<IServiceInfo[]>([]);
  const [error, setError] = React.useState<string | null>(null);
  const [busy, setBusy] = React.useState<'start' | 'stop' | null>(null);
  const declared = (model.app?.nodes ?? []).some(n => n.kind === 'service');
  const refresh = React.useCallback(async () => {
    try {
      setListed(await model.client.services(model.path));
      setError(null);
    } catch (err) {
      setError(errorText(err));
    }
  }, [model]);
  React.useEffect(() => {
    void refresh();
  }, [refresh]);
  const rows = serviceRows(model.app, listed);
  const settling = isSettling(rows);
  React.useEffect(() => {
    if (!settling) {
      return;
    }
    const timer = setInterval(() => void refresh(), 2000);
    return () => clearInterval(timer);
  }, [settling, refresh]);
  const act = async (action: 'start' | 'stop') => {
    setBusy(action);
    try {
      await model.client.servicesAction(model.path, action);
      setError(null);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(null);
      await refresh();
    }
  };
  if (!rows.length) {
    return <div className="sf-muted">{error ?? 'No %%service cells.'}</div>;
  }
  const anyUp = rows.some(s => s.state !== 'stopped' && s.state !== 'failed');
  return (
    <div>
      <div className="sf-buttons">
        <Btn label="Start" accept busy={busy === 'start'} disabledReason={declared ? null : 'the notebook has no %%service cell'}
          title={anyUp ? 'Restart the services of this notebook' : 'Start the services of this notebook'} onClick={() => void act('start')} />
        <Btn label="Stop" busy={busy === 'stop'} disabledReason={anyUp ? null : 'no service is running'} onClick={() => void act('stop')} />
        <button className="sf-link sf-refresh sf-refresh-services" title="Refresh service status" aria-label="Refresh service status" onClick={() => void refresh()}>
          ⟳
        </button>
      </div>
      {error && (
        <div className="sf-error-text" role="alert">
          <Ticks text={error} />
        </div>
      )}
      <ul className="sf-agents sf-services">
        {rows.map(s => (
          <ServiceCard key={s.name} model={model} service={s} />
        ))}
      </ul>
    </div>
  );
}
