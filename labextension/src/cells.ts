/** Find the notebook cell of a Scanflow node (live cell text first, the server's index second). */
import type { Notebook } from '@jupyterlab/notebook';

import type { IAppNode } from './types';

const MAGIC = /^\s*%%(executor|service|agent)\s+([A-Za-z_][\w.-]*)/;

/** Name declared by a cell's first line (`%%executor load ...` → load), or null. */
export function declaredName(source: string): string | null {
  const match = MAGIC.exec(source);
  return match ? match[2] : null;
}

/**
 * Position in `notebook.widgets` (0-based) of a cell NUMBER from the REST API (1-based, as users count
 * cells; see docs/rest-api.md), or -1 when there is no such cell.
 */
export function cellIndexOf(cellNumber: number | null, cellCount: number): number {
  if (cellNumber === null) {
    return -1;
  }
  const index = cellNumber - 1;
  return index >= 0 && index < cellCount ? index : -1;
}

export function findCellIndex(notebook: Notebook, node: Pick<IAppNode, 'id' | 'cell'>): number {
  const cells = notebook.widgets;
  for (let i = 0; i < cells.length; i++) {
    if (cells[i].model.type === 'code' && declaredName(cells[i].model.sharedModel.getSource()) === node.id) {
      return i;
    }
  }
  return cellIndexOf(node.cell, cells.length);
}

/** Select a cell and scroll it into view. */
export async function revealCell(notebook: Notebook, index: number): Promise<void> {
  if (index < 0 || index >= notebook.widgets.length) {
    return;
  }
  notebook.activeCellIndex = index;
  notebook.deselectAll();
  await notebook.scrollToItem(index, 'center');
}

/**
 * Positions (0-based) of every cell of a step: the code cells that declare its name (a multi-cell
 * step repeats `%%executor NAME`), else the server's 1-based `cells`, else its `cell`.
 */
export function stepCellIndices(notebook: Notebook, node: Pick<IAppNode, 'id' | 'cell' | 'cells'>): number[] {
  const cells = notebook.widgets;
  const found: number[] = [];
  for (let i = 0; i < cells.length; i++) {
    if (cells[i].model.type === 'code' && declaredName(cells[i].model.sharedModel.getSource()) === node.id) {
      found.push(i);
    }
  }
  if (found.length) {
    return found;
  }
  const numbers = node.cells?.length ? node.cells : [node.cell];
  return numbers.map(n => cellIndexOf(n, cells.length)).filter(i => i >= 0);
}
