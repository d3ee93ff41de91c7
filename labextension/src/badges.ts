/** Status badges on %%executor / %%service / %%agent cells, updated live from the notebook's model. */
import type { NotebookPanel } from '@jupyterlab/notebook';
import type { IDisposable } from '@lumino/disposable';

import { findCellIndex } from './cells';
import type { NotebookScanflowModel } from './model';
import { formatDuration, stepElapsed, type IStepState } from './state';
import type { IAppNode, IStepError } from './types';

export const BADGE_CLASS = 'sf-cell-badge';
const HAS_BADGE = 'sf-has-badge';

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

export class CellBadges implements IDisposable {
  private readonly badges = new Map<string, { el: HTMLElement; host: HTMLElement }>();
  private timer: ReturnType<typeof setInterval> | null = null;
  private _isDisposed = false;

  constructor(
    private readonly panel: NotebookPanel,
    private model: NotebookScanflowModel,
    private readonly showLog: ShowLog
  ) {
    model.changed.connect(this.update, this);
    panel.content.model?.cells.changed.connect(this.update, this);
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
    this.setTicking(false);
    for (const { el, host } of this.badges.values()) {
      el.remove();
      host.classList.remove(HAS_BADGE);
    }
    this.badges.clear();
  }

  private setTicking(on: boolean): void {
    if (on && this.timer === null) {
      this.timer = setInterval(() => this.update(), 1000);
    } else if (!on && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  update(): void {
    if (this._isDisposed) {
      return;
    }
    const app = this.model.app;
    const run = this.model.run;
    const notebook = this.panel.content;
    const seen = new Set<string>();
    const nowS = Date.now() / 1000;
    let ticking = false;
    for (const node of app?.nodes ?? []) {
      const index = findCellIndex(notebook, node);
      const cell = index >= 0 ? notebook.widgets[index] : undefined;
      if (!cell) {
        continue;
      }
      seen.add(node.id);
      // Anchor to the input area (bottom right, clear of the active cell's toolbar at the top).
      const host = cell.inputArea?.node ?? cell.node;
      let entry = this.badges.get(node.id);
      if (!entry || entry.host !== host) {
        entry?.el.remove();
        entry?.host.classList.remove(HAS_BADGE);
        const el = document.createElement('button');
        el.className = BADGE_CLASS;
        el.dataset.step = node.id;
        el.addEventListener('click', event => {
          event.stopPropagation();
          this.onClick(node.id);
        });
        host.classList.add(HAS_BADGE);
        host.appendChild(el);
        entry = { el, host };
        this.badges.set(node.id, entry);
      }
      const step = run?.steps[node.id];
      const status = step?.status ?? 'none';
      if (status === 'running' || status === 'retrying') {
        ticking = true;
      }
      entry.el.dataset.status = status;
      entry.el.className = `${BADGE_CLASS} sf-status-${status}`;
      const text = badgeText(node, step, nowS);
      if (entry.el.textContent !== text) {
        entry.el.textContent = text;
      }
      entry.el.title = step
        ? `${node.kind} ${node.id}: ${step.note ?? step.status} — click for the step log`
        : `${node.kind} ${node.id}: not run yet`;
    }
    for (const [id, entry] of this.badges) {
      if (!seen.has(id)) {
        entry.el.remove();
        entry.host.classList.remove(HAS_BADGE);
        this.badges.delete(id);
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
