/**
 * Links out of the sidebar (#15): "Open in MLflow" (the server starts the project's MLflow UI on
 * demand: POST mlflow-ui), a kubernetes run's Argo Workflow (Argo UI link or a copyable kubectl
 * line), and run ids shown whole-on-hover with a copy button.
 */
import * as React from 'react';

import type { ScanflowClient } from './api';
import { reportError } from './notify';
import type { IMlflowUi, IWorkflowRef } from './types';

/** The MLflow UI page of a run: `<base>/#/experiments/<id>/runs/<run>` (or `#/runs/<run>` without an experiment id). */
export function mlflowRunUrl(base: string, runId: string, experimentId?: string | null): string {
  const root = base.replace(/\/+$/, '');
  const run = encodeURIComponent(runId);
  return experimentId
    ? `${root}/#/experiments/${encodeURIComponent(experimentId)}/runs/${run}`
    : `${root}/#/runs/${run}`;
}

/** A URL safe to put in a link: http(s) only, never with user:password. Null otherwise. */
export function safeLink(url: string | null | undefined): string | null {
  if (!url) {
    return null;
  }
  try {
    const u = new URL(url);
    if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.username || u.password) {
      return null;
    }
    return u.href;
  } catch {
    return null;
  }
}

/** The UI base per tracking URI setting (one POST per setting and page load; failures are retried). */
const uiBases = new Map<string, Promise<IMlflowUi>>();
const known = new Map<string, string>();
const listeners = new Set<() => void>();

function key(client: ScanflowClient): string {
  return client.settingsPayload().tracking_uri ?? '';
}

export function knownMlflowBase(client: ScanflowClient): string | null {
  return known.get(key(client)) ?? null;
}

export function mlflowBase(client: ScanflowClient): Promise<IMlflowUi> {
  const k = key(client);
  let pending = uiBases.get(k);
  if (!pending) {
    pending = client.mlflowUi().then(
      ui => {
        known.set(k, ui.url);
        listeners.forEach(l => l());
        return ui;
      },
      err => {
        uiBases.delete(k);
        throw err;
      }
    );
    uiBases.set(k, pending);
  }
  return pending;
}

/** Re-render when an MLflow UI base becomes known (every link then has its real href). */
function useMlflowBase(client: ScanflowClient): string | null {
  const [, tick] = React.useReducer((n: number) => n + 1, 0);
  React.useEffect(() => {
    listeners.add(tick);
    return () => void listeners.delete(tick);
  }, []);
  return knownMlflowBase(client);
}

/**
 * "MLflow ↗": a real link once the UI's address is known. The first click asks the server for the
 * UI (which may take a few seconds to start) in a tab opened at once, so no popup blocker stops it.
 */
export function MlflowLink(props: {
  client: ScanflowClient;
  runId: string;
  experimentId?: string | null;
  label?: string;
  what: string;
}): JSX.Element {
  const base = useMlflowBase(props.client);
  const href = base ? mlflowRunUrl(base, props.runId, props.experimentId) : undefined;
  const onClick = (e: React.MouseEvent<HTMLAnchorElement>) => {
    e.stopPropagation();
    if (href) {
      return; // the browser follows the link
    }
    e.preventDefault();
    const tab = window.open('', '_blank');
    mlflowBase(props.client)
      .then(ui => {
        const url = mlflowRunUrl(ui.url, props.runId, props.experimentId);
        if (tab) {
          tab.opener = null;
          tab.location.href = url;
        } else {
          window.open(url, '_blank', 'noopener');
        }
      })
      .catch(err => {
        tab?.close();
        reportError(err, 'Open in MLflow');
      });
  };
  return (
    <a
      className="sf-link sf-mlflow-link"
      href={href ?? '#'}
      target="_blank"
      rel="noopener noreferrer"
      data-run={props.runId}
      title={`Open ${props.what} in the MLflow UI${base ? '' : ' (started on demand)'}`}
      aria-label={`Open ${props.what} in MLflow`}
      onClick={onClick}
    >
      {props.label ?? 'MLflow'} ↗
    </a>
  );
}

/** A button that copies `text` and says so (for screen readers too). */
export function CopyButton(props: { text: string; what: string }): JSX.Element {
  const [done, setDone] = React.useState<'copied' | 'failed' | null>(null);
  const copy = async (e: React.MouseEvent) => {
    e.stopPropagation();
    try {
      await navigator.clipboard.writeText(props.text);
      setDone('copied');
    } catch {
      setDone('failed');
    }
    window.setTimeout(() => setDone(null), 1500);
  };
  return (
    <button
      type="button"
      className="sf-link sf-copy"
      title={`Copy ${props.what}`}
      aria-label={`Copy ${props.what}`}
      data-copy={props.text}
      onClick={e => void copy(e)}
    >
      {done === 'copied' ? '✔ copied' : done === 'failed' ? 'copy failed' : 'copy'}
      <span className="sf-sr-only" aria-live="polite">
        {done ? `${props.what} ${done}` : ''}
      </span>
    </button>
  );
}

/** A run id on one line: ellipsis when narrow, the whole id on hover, a copy button. */
export function RunId(props: { runId: string; label?: string }): JSX.Element {
  return (
    <span className="sf-run-id-line">
      {props.label && <span className="sf-muted">{props.label} </span>}
      <code className="sf-run-id" title={props.runId}>
        {props.runId}
      </code>
      <CopyButton text={props.runId} what={`run id ${props.runId}`} />
    </span>
  );
}

/** A kubernetes run's Workflow: a link to the Argo UI when configured, else the kubectl line to copy. */
export function WorkflowLine(props: { workflow: IWorkflowRef }): JSX.Element {
  const wf = props.workflow;
  const url = safeLink(wf.url);
  return (
    <div className="sf-workflow" data-workflow={wf.name}>
      <span className="sf-muted">Workflow </span>
      {url ? (
        <a
          className="sf-link sf-workflow-link"
          href={url}
          target="_blank"
          rel="noopener noreferrer"
          title={`Argo Workflow ${wf.namespace}/${wf.name}`}
        >
          {wf.name} ↗
        </a>
      ) : (
        <>
          <code className="sf-workflow-command" title={wf.command}>
            {wf.command}
          </code>
          <CopyButton text={wf.command} what="the kubectl command" />
        </>
      )}
    </div>
  );
}
