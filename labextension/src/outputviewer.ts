/**
 * A step's output notebook, read-only, in a main-area tab. It comes from the Scanflow API
 * (`runs/{id}/notebook?step=`), not the contents API (which refuses the hidden `.scanflow/`), so it
 * is never a 404, never a document (no save prompt) and never the notebook the sidebar follows.
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { OutputArea, OutputAreaModel } from '@jupyterlab/outputarea';
import { MimeModel, type IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Panel, Widget } from '@lumino/widgets';

import type { ScanflowClient } from './api';
import { ApiError } from './api';
import type { INotebookCell, IOutputNotebook } from './types';

export const VIEWER_CLASS = 'sf-output-notebook';

/** A cell's source as one string (nbformat allows a list of lines). */
export function cellText(cell: Pick<INotebookCell, 'source'>): string {
  return Array.isArray(cell.source) ? cell.source.join('') : String(cell.source ?? '');
}

/** Id of the viewer tab of one step of one run (one tab each). */
export function viewerId(runId: string, step: string): string {
  return `scanflow-output-${runId}-${step}`.replace(/[^A-Za-z0-9_-]/g, '_');
}

function textBlock(className: string, text: string): HTMLElement {
  const el = document.createElement('div');
  el.className = className;
  el.textContent = text;
  return el;
}

function codeCell(cell: INotebookCell, rendermime: IRenderMimeRegistry): Widget {
  const box = new Panel();
  box.addClass('sf-onb-cell');
  box.addClass('sf-onb-code');
  const input = new Widget();
  input.addClass('sf-onb-input');
  const count = cell.execution_count;
  input.node.appendChild(textBlock('sf-onb-prompt', `[${count ?? ' '}]:`));
  const pre = document.createElement('pre');
  pre.className = 'sf-onb-source';
  pre.textContent = cellText(cell);
  input.node.appendChild(pre);
  box.addWidget(input);
  const outputs = Array.isArray(cell.outputs) ? cell.outputs : [];
  if (outputs.length) {
    // Untrusted: HTML is sanitized and scripts do not run (the notebook came from a run, not the user).
    const model = new OutputAreaModel({ values: outputs as any, trusted: false });
    const area = new OutputArea({ model, rendermime });
    area.addClass('sf-onb-outputs');
    box.addWidget(area);
  }
  return box;
}

function markdownCell(cell: INotebookCell, rendermime: IRenderMimeRegistry): Widget {
  const text = cellText(cell);
  const renderer = rendermime.createRenderer('text/markdown');
  renderer.addClass('sf-onb-cell');
  renderer.addClass('sf-onb-markdown');
  void renderer.renderModel(new MimeModel({ data: { 'text/markdown': text }, trusted: false }));
  return renderer;
}

/** The body of the viewer: every cell of the output notebook, inputs as text, outputs rendered. */
export class OutputNotebookView extends Panel {
  constructor(doc: IOutputNotebook, rendermime: IRenderMimeRegistry) {
    super();
    this.addClass('sf-onb');
    const note = new Widget();
    note.addClass('sf-onb-note');
    note.node.textContent = `Output notebook of step ${doc.step} in run ${doc.run_id} — read-only (from the run store).`;
    this.addWidget(note);
    for (const cell of doc.notebook.cells ?? []) {
      if (cell.cell_type === 'code') {
        this.addWidget(codeCell(cell, rendermime));
      } else if (cell.cell_type === 'markdown') {
        this.addWidget(markdownCell(cell, rendermime));
      } else {
        const raw = new Widget();
        raw.addClass('sf-onb-cell');
        raw.node.appendChild(textBlock('sf-onb-raw', cellText(cell)));
        this.addWidget(raw);
      }
    }
  }
}

/** Shell hooks the viewer needs (JupyterFrontEnd's shell, or a stand-in in tests). */
export interface IViewerShell {
  add(widget: Widget, area: 'main'): void;
  activateById(id: string): void;
  widgetExists(id: string): boolean;
}

/** Open (or reveal) the read-only viewer of `step` in `runId`; errors go to `report`. */
export async function openOutputNotebook(
  client: ScanflowClient,
  rendermime: IRenderMimeRegistry,
  shell: IViewerShell,
  runId: string,
  step: string,
  report: (error: unknown, context: string) => void
): Promise<void> {
  const id = viewerId(runId, step);
  if (shell.widgetExists(id)) {
    shell.activateById(id);
    return;
  }
  let doc: IOutputNotebook;
  try {
    doc = await client.outputNotebook(runId, step);
  } catch (err) {
    report(err instanceof ApiError ? err : new ApiError(0, String(err)), `Output notebook of ${step}`);
    return;
  }
  const widget = new MainAreaWidget({ content: new OutputNotebookView(doc, rendermime) });
  widget.id = id;
  widget.addClass(VIEWER_CLASS);
  widget.node.dataset.run = runId;
  widget.node.dataset.step = step;
  widget.title.label = `${step} · output (read-only)`;
  widget.title.caption = `Output notebook of step ${step} in run ${runId} (read-only)`;
  widget.title.closable = true;
  shell.add(widget, 'main');
  shell.activateById(id);
}
