/** Find the notebook cell of a Scanflow node (live cell text first, the server's index second). */
import type { Notebook } from '@jupyterlab/notebook';

import type { IAppNode } from './types';

const MAGIC = /^\s*%%(executor|service|agent)\s+([A-Za-z_][\w.-]*)/;

/** Name declared by a cell's first line (`%%executor load ...` → load), or null. */
export function declaredName(source: string): string | null {
  const match = MAGIC.exec(source);
  return match ? match[2] : null;
}

export function findCellIndex(notebook: Notebook, node: Pick<IAppNode, 'id' | 'cell'>): number {
  const cells = notebook.widgets;
  for (let i = 0; i < cells.length; i++) {
    if (cells[i].model.type === 'code' && declaredName(cells[i].model.sharedModel.getSource()) === node.id) {
      return i;
    }
  }
  return node.cell >= 0 && node.cell < cells.length ? node.cell : -1;
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
