/** Application section: the pipeline DAG and the validation messages with links to their cells. */
import type { NotebookPanel } from '@jupyterlab/notebook';
import * as React from 'react';

import { cellIndexOf, findCellIndex, revealCell } from './cells';
import type { ISidebarContext } from './context';
import { DagView } from './dag';
import { MlflowLink, RunId, WorkflowLine } from './links';
import type { NotebookScanflowModel } from './model';
import type { IAppNode } from './types';
import { StatusPill, Ticks } from './widgets';

/** A full-width box that tells its child how wide it is (the sidebar can be resized). */
function DagBox(props: { children: (width: number) => JSX.Element }): JSX.Element {
  const ref = React.useRef<HTMLDivElement>(null);
  const [width, setWidth] = React.useState(0);
  React.useEffect(() => {
    const el = ref.current;
    if (!el) {
      return;
    }
    const measure = () => setWidth(el.clientWidth);
    measure();
    const observer = typeof ResizeObserver !== 'undefined' ? new ResizeObserver(measure) : null;
    observer?.observe(el);
    return () => observer?.disconnect();
  }, []);
  return (
    <div className="sf-dag-wrap" ref={ref}>
      {width > 0 && props.children(width)}
    </div>
  );
}

export function ApplicationSection(props: { model: NotebookScanflowModel; panel: NotebookPanel; ctx: ISidebarContext }): JSX.Element {
  const { model, panel } = props;
  const select = (node: Pick<IAppNode, 'id' | 'cell'>) => {
    props.ctx.activate(panel);
    void revealCell(panel.content, findCellIndex(panel.content, node));
  };
  const gotoCell = (cell: number) => {
    props.ctx.activate(panel);
    void revealCell(panel.content, cellIndexOf(cell, panel.content.widgets.length));
  };
  if (model.appError) {
    return (
      <div className="sf-error-text">
        <Ticks text={model.appError.message} />
        {model.appError.fix && (
          <div className="sf-fix">
            <Ticks text={model.appError.fix} />
          </div>
        )}
      </div>
    );
  }
  if (!model.app) {
    return <div className="sf-muted">Reading the notebook…</div>;
  }
  const app = model.app;
  return (
    <div>
      <div className="sf-app-name">
        app <b>{app.app?.name || '(unnamed)'}</b> · {app.nodes.length} step{app.nodes.length === 1 ? '' : 's'}
        {model.appSource === 'editor' && (
          <span className="sf-muted sf-unsaved" title="Validated from the editor's unsaved content">
            {' '}
            · unsaved
          </span>
        )}
        {model.run && (
          <>
            {' · last run '}
            <StatusPill status={model.run.status} />
          </>
        )}
      </div>
      {model.run && (
        <div className="sf-last-run">
          <RunId runId={model.run.runId} label="last run" />
          {model.run.mlflowRunId && (
            <MlflowLink client={model.client} runId={model.run.mlflowRunId} what={`run ${model.run.runId}`} />
          )}
          {model.storeRuns[model.run.runId]?.workflow && (
            <WorkflowLine workflow={model.storeRuns[model.run.runId].workflow!} />
          )}
        </div>
      )}
      {app.nodes.length ? (
        <DagBox>{width => <DagView
              app={app}
              run={model.run}
              onSelect={select}
              maxWidth={width}
              agentStatus={Object.fromEntries(model.agents.map(a => [a.name, a.status]))}
            />}</DagBox>
      ) : (
        <div className="sf-muted">No %%executor, %%service or %%agent cells in this notebook.</div>
      )}
      {app.messages.length > 0 && (
        <ul className="sf-messages">
          {app.messages.map((m, i) => (
            <li key={i} className={`sf-message sf-${m.severity}`}>
              <span className="sf-severity">{m.severity === 'error' ? '✖' : '⚠'}</span>
              <span>
                <Ticks text={m.text} />
                {m.fix && (
                  <span className="sf-fix">
                    {' — '}
                    <Ticks text={m.fix} />
                  </span>
                )}
                {m.cell !== null && (
                  <button className="sf-link sf-cell-link" title={`Go to cell ${m.cell}`} onClick={() => gotoCell(m.cell!)}>
                    cell {m.cell}
                  </button>
                )}
              </span>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
