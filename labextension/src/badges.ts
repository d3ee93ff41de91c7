/**
 * Status badges of %%executor / %%service / %%agent cells, updated live from the notebook's model.
 *
 * A badge sits in its cell's header row (above the code, aligned with it), so it never covers code
 * or the cell toolbar. Every cell of a multi-cell step gets one. A finished step whose cell changed
 * since the run was shown is `stale`.
 */
import type { Cell } from '@jupyterlab/cells';
import type { NotebookPanel } from '@jupyterlab/notebook';
import type { IDisposable } from '@lumino/disposable';

import { stepCellIndices } from './cells';
import type { NotebookScanflowModel } from './model';
import { FINAL_STEP_STATUSES, formatDuration, stepElapsed, type IStepState } from './state';
import type { IAppNode, IStepError } from './types';

export const BADGE_CLASS = 'sf-cell-badge';
const ROW_CLASS = 'sf-badge-row';
const HEADER_WITH_BADGES = 'sf-has-badges';

export type ShowLog = (runId: string, step: string, error: IStepError | null) => void;

/** Text of a badge: status, time, and for a failure the error line. */
export function badgeText(node: Pick<IAppNode, 'id' | 'kind'>, step: IStepState | undefined, nowS: number): string {
  if (!step) {
    return `${node.kind} ${node.id}`;
  }
  const time = formatDuration(stepElapsed(step, nowS));
  const parts: string[] = [step.status];
  if (step.attempt > 1) {
    parts.push(`attempt ${step.attempt}`);
  }
  if (time && step.status !== 'cached' && step.status !== 'skipped') {
    parts.push(time);
  }
  let text = parts.join(' · ');
  if ((step.status === 'failed' || step.status === 'retrying') && step.error) {
    text += ` — ${step.error.ename}: ${step.error.evalue}`;
  }
  return text;
}

/** Text of a stale badge: what the step was before its cell changed. */
export function staleText(step: IStepState): string {
  return `stale · was ${step.status}`;
}

/** A cell's code as compared for staleness (trailing whitespace does not count). */
export function normalizedSource(sources: string[]): string {
  return sources.map(s => s.replace(/\s+$/g, '').replace(/[ \t]+\n/g, '\n')).join('\n\u0000\n');
}

/** Whether a step's badge is stale: it finished in the shown run and its cells changed since. */
export function isStale(step: IStepState | undefined, ranSource: string | undefined, source: string): boolean {
  return !!step && FINAL_STEP_STATUSES.has(step.status) && ranSource !== undefined && ranSource !== source;
}

interface IBadge {
  el: HTMLElement;
  row: HTMLElement;
}

export class CellBadges implements IDisposable {
  private readonly badges = new Map<string, IBadge>();
  /** Source of each step's cells when the shown run was adopted (run id → step → source). */
  private snapshotRun: string | null = null;
  private readonly snapshot = new Map<string, string>();
  private timer: ReturnType<typeof setInterval> | null = null;
  private readonly waiting = new WeakSet<Cell>();
  private _isDisposed = false;

  constructor(
    private readonly panel: NotebookPanel,
    private model: NotebookScanflowModel,
    private readonly showLog: ShowLog
  ) {
    model.changed.connect(this.update, this);
    panel.content.model?.cells.changed.connect(this.update, this);
    panel.content.model?.contentChanged.connect(this.update, this);
    this.update();
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Follow another model (the notebook was renamed). */
  setModel(model: NotebookScanflowModel): void {
    this.model.changed.disconnect(this.update, this);
    this.model = model;
    model.changed.connect(this.update, this);
    this.update();
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this.model.changed.disconnect(this.update, this);
    this.panel.content.model?.cells.changed.disconnect(this.update, this);
    this.panel.content.model?.contentChanged.disconnect(this.update, this);
    this.setTicking(false);
    for (const key of [...this.badges.keys()]) {
      this.remove(key);
    }
  }

  private setTicking(on: boolean): void {
    if (on && this.timer === null) {
      this.timer = setInterval(() => this.update(), 1000);
    } else if (!on && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  private remove(key: string): void {
    const entry = this.badges.get(key);
    if (entry) {
      entry.el.remove();
      if (!entry.row.querySelector(`.${BADGE_CLASS}`)) {
        entry.row.parentElement?.classList.remove(HEADER_WITH_BADGES);
        entry.row.remove();
      }
      this.badges.delete(key);
    }
  }

  /**
   * The badge row of a cell, in its (empty) header widget; null while the cell is a placeholder
   * (a windowed notebook builds a cell's DOM when it first scrolls into view: update then).
   */
  private rowOf(cell: Cell): HTMLElement | null {
    const header = cell.node.querySelector<HTMLElement>(':scope > .jp-Cell-header');
    if (!header) {
      if (!this.waiting.has(cell)) {
        this.waiting.add(cell);
        void cell.ready.then(() => this.update());
      }
      return null;
    }
    let row = header.querySelector<HTMLElement>(`:scope > .${ROW_CLASS}`);
    if (!row) {
      row = document.createElement('div');
      row.className = ROW_CLASS;
      // JupyterLab's cell header has zero height until something lives in it.
      header.classList.add(HEADER_WITH_BADGES);
      header.appendChild(row);
    }
    return row;
  }

  update(): void {
    if (this._isDisposed) {
      return;
    }
    const app = this.model.app;
    const run = this.model.run;
    if ((run?.runId ?? null) !== this.snapshotRun) {
      this.snapshotRun = run?.runId ?? null;
      this.snapshot.clear();
    }
    const notebook = this.panel.content;
    const seen = new Set<string>();
    const nowS = Date.now() / 1000;
    let ticking = false;
    for (const node of app?.nodes ?? []) {
      const indices = stepCellIndices(notebook, node).filter(i => notebook.widgets[i]);
      if (!indices.length) {
        continue;
      }
      const source = normalizedSource(indices.map(i => notebook.widgets[i].model.sharedModel.getSource()));
      const step = run?.steps[node.id];
      if (run && step && !this.snapshot.has(node.id)) {
        this.snapshot.set(node.id, source);
      }
      const stale = isStale(step, this.snapshot.get(node.id), source);
      const status = stale ? 'stale' : step?.status ?? 'none';
      if (status === 'running' || status === 'retrying') {
        ticking = true;
      }
      const text = stale ? staleText(step!) : badgeText(node, step, nowS);
      const title = stale
        ? `${node.kind} ${node.id}: the cell changed after run ${run!.runId} (${step!.status}); run again to refresh — click for that run's log`
        : step
          ? `${node.kind} ${node.id}: ${step.note ?? step.status} — click for the step log`
          : `${node.kind} ${node.id}: not run yet`;
      indices.forEach((index, part) => {
        const cell = notebook.widgets[index];
        const key = `${node.id}#${part}`;
        seen.add(key);
        const row = this.rowOf(cell);
        if (!row) {
          return;
        }
        let entry = this.badges.get(key);
        if (!entry || entry.row !== row || !row.contains(entry.el)) {
          this.remove(key);
          const el = document.createElement('button');
          el.type = 'button';
          el.className = BADGE_CLASS;
          el.dataset.step = node.id;
          el.dataset.part = String(part + 1);
          el.addEventListener('click', event => {
            event.stopPropagation();
            this.onClick(node.id);
          });
          row.appendChild(el);
          entry = { el, row };
          this.badges.set(key, entry);
        }
        entry.el.dataset.status = status;
        entry.el.className = `${BADGE_CLASS} sf-status-${status}`;
        const shown = indices.length > 1 ? `${text} (part ${part + 1}/${indices.length})` : text;
        if (entry.el.textContent !== shown) {
          entry.el.textContent = shown;
        }
        entry.el.title = title;
      });
    }
    for (const key of [...this.badges.keys()]) {
      if (!seen.has(key)) {
        this.remove(key);
      }
    }
    this.setTicking(ticking);
  }

  private onClick(step: string): void {
    const run = this.model.run;
    if (!run || !run.steps[step]) {
      return;
    }
    this.showLog(run.runId, step, run.steps[step].error);
  }
}
