/** The log of one step of one run, in a dialog: error first (ename: evalue + traceback), then the log. */
import { Dialog, ReactWidget } from '@jupyterlab/apputils';
import * as React from 'react';

import type { ScanflowClient } from './api';
import type { IStepError, IStepLog } from './types';

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*[A-Za-z]/g;

export function stripAnsi(text: string): string {
  return text.replace(ANSI, '');
}

function LogBody(props: {
  client: ScanflowClient;
  runId: string;
  step: string;
  error: IStepError | null;
  onNotebook: (path: string) => void;
  onDebug?: () => void;
}): JSX.Element {
  const [log, setLog] = React.useState<IStepLog | null>(null);
  const [failure, setFailure] = React.useState<string | null>(null);
  React.useEffect(() => {
    props.client
      .logs(props.runId, props.step)
      .then(setLog)
      .catch(err => setFailure(err.userText ?? String(err)));
  }, [props.runId, props.step]);
  const error = props.error;
  return (
    <div className="sf-log">
      <div className="sf-log-meta">
        run <code>{props.runId}</code> · step <code>{props.step}</code>
        {log?.output_notebook && (
          <>
            {' · '}
            <button className="sf-link sf-open-output" onClick={() => props.onNotebook(log.output_notebook!)}>
              open output notebook
            </button>
          </>
        )}
      </div>
      {error && (
        <div className="sf-log-error">
          <div className="sf-log-ename">
            {error.ename}: {error.evalue}
          </div>
          {props.onDebug && (
            <button
              className="sf-link sf-log-debug"
              title={`Load the inputs and parameters ${props.step} received in this run into the notebook's kernel`}
              onClick={props.onDebug}
            >
              Debug in notebook
            </button>
          )}
          {error.traceback.length > 0 && <pre className="sf-log-traceback">{stripAnsi(error.traceback.join('\n'))}</pre>}
        </div>
      )}
      {failure && <div className="sf-error-text">Could not load the log: {failure}</div>}
      {!log && !failure && <div className="sf-muted">Loading log…</div>}
      {log && <pre className="sf-log-text">{stripAnsi(log.log) || '(empty log)'}</pre>}
    </div>
  );
}

export function showStepLog(
  client: ScanflowClient,
  runId: string,
  step: string,
  error: IStepError | null,
  openNotebook: (path: string) => void,
  debug?: () => void
): void {
  let dialog: Dialog<unknown> | null = null;
  const body = ReactWidget.create(
    <LogBody
      client={client}
      runId={runId}
      step={step}
      error={error}
      onNotebook={path => {
        dialog?.resolve();
        openNotebook(path);
      }}
      onDebug={
        error && debug
          ? () => {
              dialog?.resolve();
              debug();
            }
          : undefined
      }
    />
  );
  body.addClass('sf-log-dialog-body');
  dialog = new Dialog({
    title: `Scanflow log — ${step}`,
    body,
    buttons: [Dialog.okButton({ label: 'Close' })]
  });
  dialog.addClass('sf-log-dialog');
  void dialog.launch();
}
