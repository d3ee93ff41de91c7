import { assignLayers, countCrossings, layoutDag } from '../layout';
import type { IEdge } from '../types';

const e = (source: string, target: string): IEdge => ({ source, target });

function overlaps(a: { x: number; y: number; width: number; height: number }, b: typeof a): boolean {
  return a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
}

function checkInvariants(ids: string[], edges: IEdge[]) {
  const layout = layoutDag(ids, edges);
  const boxes = Object.values(layout.nodes);
  expect(boxes.map(b => b.id).sort()).toEqual([...new Set(ids)].sort());
  for (const edge of edges) {
    if (edge.source !== edge.target && layout.nodes[edge.source] && layout.nodes[edge.target]) {
      const ok = layout.nodes[edge.source].layer < layout.nodes[edge.target].layer;
      const drawn = layout.edges.some(p => p.source === edge.source && p.target === edge.target);
      // Either the edge points down, or it was dropped to break a cycle.
      expect(ok || !drawn).toBe(true);
    }
  }
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      expect(overlaps(boxes[i], boxes[j])).toBe(false);
    }
    expect(boxes[i].x).toBeGreaterThanOrEqual(0);
    expect(boxes[i].x + boxes[i].width).toBeLessThanOrEqual(layout.width);
    expect(boxes[i].y + boxes[i].height).toBeLessThanOrEqual(layout.height);
  }
  return layout;
}

describe('layoutDag', () => {
  it('lays a diamond out in three layers with the branches side by side', () => {
    const layout = checkInvariants(
      ['load', 'features', 'stats', 'train'],
      [e('load', 'features'), e('load', 'stats'), e('features', 'train'), e('stats', 'train')]
    );
    expect(layout.layers).toEqual([['load'], ['features', 'stats'], ['train']]);
    expect(layout.crossings).toBe(0);
    expect(layout.nodes.features.y).toBe(layout.nodes.stats.y);
    // The single nodes are centred over the pair.
    const mid = (layout.nodes.features.x + layout.nodes.stats.x) / 2;
    expect(layout.nodes.load.x).toBeCloseTo(mid);
  });

  it('uses the longest path: a shortcut edge does not pull a node up', () => {
    const layout = checkInvariants(['a', 'b', 'c'], [e('a', 'b'), e('b', 'c'), e('a', 'c')]);
    expect(layout.nodes.c.layer).toBe(2);
    const long = layout.edges.find(p => p.source === 'a' && p.target === 'c')!;
    // One virtual point pair for the crossed layer: start, virtual top, virtual bottom, end.
    expect(long.points).toHaveLength(4);
  });

  it('orders layers to remove avoidable crossings', () => {
    // a→y, b→x drawn in input order would cross; the barycentre sweep swaps them.
    const ids = ['a', 'b', 'x', 'y'];
    const edges = [e('a', 'y'), e('b', 'x')];
    expect(countCrossings([['a', 'b'], ['x', 'y']], edges.map(d => ({ from: d.source, to: d.target })))).toBe(1);
    const layout = checkInvariants(ids, edges);
    expect(layout.crossings).toBe(0);
  });

  it('is deterministic', () => {
    const ids = ['n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7'];
    const edges = [e('n1', 'n4'), e('n2', 'n4'), e('n3', 'n5'), e('n1', 'n6'), e('n4', 'n7'), e('n5', 'n7'), e('n6', 'n7'), e('n2', 'n5')];
    expect(JSON.stringify(layoutDag(ids, edges))).toBe(JSON.stringify(layoutDag(ids, edges)));
    checkInvariants(ids, edges);
  });

  it('survives cycles, self-loops, duplicate and dangling edges', () => {
    const edges = [e('a', 'b'), e('b', 'c'), e('c', 'a'), e('a', 'a'), e('a', 'b'), e('a', 'ghost')];
    const layout = checkInvariants(['a', 'b', 'c'], edges);
    expect(layout.edges).toHaveLength(2);
    const { layer } = assignLayers(['a', 'b', 'c'], edges);
    expect([layer.get('a'), layer.get('b'), layer.get('c')]).toEqual([0, 1, 2]);
  });

  it('handles isolated nodes and the empty graph', () => {
    const layout = checkInvariants(['solo', 'a', 'b'], [e('a', 'b')]);
    expect(layout.nodes.solo.layer).toBe(0);
    const empty = layoutDag([], []);
    expect(empty.nodes).toEqual({});
    expect(empty.width).toBeGreaterThan(0);
  });
});
