import type { Notebook } from '@jupyterlab/notebook';

import { cellIndexOf, findCellIndex } from '../cells';

/** A notebook stand-in: findCellIndex reads only widgets[i].model.{type, sharedModel.getSource()}. */
const notebook = (...sources: string[]): Notebook =>
  ({
    widgets: sources.map(source => ({ model: { type: 'code', sharedModel: { getSource: () => source } } }))
  }) as unknown as Notebook;

describe('cell numbers (REST: 1-based) and widget positions (0-based)', () => {
  it('maps a 1-based cell number to its position, -1 outside the notebook', () => {
    expect(cellIndexOf(1, 3)).toBe(0);
    expect(cellIndexOf(3, 3)).toBe(2);
    expect(cellIndexOf(4, 3)).toBe(-1);
    expect(cellIndexOf(0, 3)).toBe(-1);
    expect(cellIndexOf(null, 3)).toBe(-1);
  });

  it('finds a node by its magic line first, by its 1-based cell number second', () => {
    const nb = notebook('import x', 'print(1)', '%%executor train\nfit()');
    expect(findCellIndex(nb, { id: 'train', cell: 1 })).toBe(2);
    expect(findCellIndex(nb, { id: 'renamed', cell: 2 })).toBe(1);
    expect(findCellIndex(nb, { id: 'gone', cell: 9 })).toBe(-1);
  });
});
