/**
 * Layered DAG layout for the sidebar drawing (top to bottom).
 *
 * 1. Longest-path layering: a node sits one layer below its deepest predecessor (edges that
 *    close a cycle are ignored, so bad input still draws).
 * 2. Edges spanning several layers get virtual points, one per crossed layer.
 * 3. Ordering: barycentre sweeps down and up; the ordering with the fewest crossings wins
 *    (stable sorts + input order as tie-breaker keep the result deterministic).
 * 4. Coordinates: fixed slots per layer, each layer centred, so nodes never overlap.
 */
import type { IEdge } from './types';

export interface ILayoutOptions {
  nodeWidth: number;
  nodeHeight: number;
  hGap: number;
  vGap: number;
  margin: number;
  sweeps: number;
}

export const DEFAULT_LAYOUT: ILayoutOptions = {
  nodeWidth: 112,
  nodeHeight: 30,
  hGap: 16,
  vGap: 30,
  margin: 8,
  sweeps: 8
};

export interface INodeBox {
  id: string;
  layer: number;
  order: number;
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface IEdgePath {
  source: string;
  target: string;
  /** Polyline from the source's bottom centre to the target's top centre. */
  points: Array<[number, number]>;
}

export interface ILayout {
  nodes: Record<string, INodeBox>;
  edges: IEdgePath[];
  layers: string[][];
  width: number;
  height: number;
  crossings: number;
}

/** Layer of each node by longest path from a source; edges that would close a cycle are dropped. */
export function assignLayers(ids: string[], edges: IEdge[]): { layer: Map<string, number>; dag: IEdge[] } {
  const known = new Set(ids);
  const succ = new Map<string, string[]>(ids.map(id => [id, []]));
  const seen = new Set<string>();
  const dagCandidates: IEdge[] = [];
  for (const e of edges) {
    const key = `${e.source}\u0000${e.target}`;
    if (known.has(e.source) && known.has(e.target) && e.source !== e.target && !seen.has(key)) {
      seen.add(key);
      dagCandidates.push(e);
    }
  }
  // Drop back edges found by a DFS in input order (deterministic cycle breaking).
  for (const e of dagCandidates) {
    succ.get(e.source)!.push(e.target);
  }
  const state = new Map<string, 0 | 1 | 2>();
  const back = new Set<string>();
  const visit = (start: string) => {
    const stack: Array<[string, number]> = [[start, 0]];
    state.set(start, 1);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const [node, i] = top;
      const next = succ.get(node)!;
      if (i < next.length) {
        top[1]++;
        const t = next[i];
        const s = state.get(t) ?? 0;
        if (s === 1) {
          back.add(`${node}\u0000${t}`);
        } else if (s === 0) {
          state.set(t, 1);
          stack.push([t, 0]);
        }
      } else {
        state.set(node, 2);
        stack.pop();
      }
    }
  };
  for (const id of ids) {
    if (!state.get(id)) {
      visit(id);
    }
  }
  const dag = dagCandidates.filter(e => !back.has(`${e.source}\u0000${e.target}`));
  // Longest path via Kahn's topological order.
  const indeg = new Map<string, number>(ids.map(id => [id, 0]));
  const out = new Map<string, string[]>(ids.map(id => [id, []]));
  for (const e of dag) {
    indeg.set(e.target, indeg.get(e.target)! + 1);
    out.get(e.source)!.push(e.target);
  }
  const layer = new Map<string, number>(ids.map(id => [id, 0]));
  const queue = ids.filter(id => indeg.get(id) === 0);
  for (let qi = 0; qi < queue.length; qi++) {
    const n = queue[qi];
    for (const t of out.get(n)!) {
      layer.set(t, Math.max(layer.get(t)!, layer.get(n)! + 1));
      indeg.set(t, indeg.get(t)! - 1);
      if (indeg.get(t) === 0) {
        queue.push(t);
      }
    }
  }
  return { layer, dag };
}

interface IChainEdge {
  from: string;
  to: string;
}

/** Number of crossings between consecutive layers for the given ordering. */
export function countCrossings(layers: string[][], segments: IChainEdge[]): number {
  const pos = new Map<string, number>();
  const layerOf = new Map<string, number>();
  layers.forEach((layer, li) =>
    layer.forEach((id, i) => {
      pos.set(id, i);
      layerOf.set(id, li);
    })
  );
  let total = 0;
  for (let li = 0; li + 1 < layers.length; li++) {
    const segs = segments
      .filter(s => layerOf.get(s.from) === li && layerOf.get(s.to) === li + 1)
      .map(s => [pos.get(s.from)!, pos.get(s.to)!] as const);
    for (let a = 0; a < segs.length; a++) {
      for (let b = a + 1; b < segs.length; b++) {
        const [a1, a2] = segs[a];
        const [b1, b2] = segs[b];
        if ((a1 < b1 && a2 > b2) || (a1 > b1 && a2 < b2)) {
          total++;
        }
      }
    }
  }
  return total;
}

function sortByBarycentre(layer: string[], neighbours: Map<string, string[]>, pos: Map<string, number>): string[] {
  const keyed = layer.map((id, i) => {
    const ns = neighbours.get(id) ?? [];
    const bc = ns.length ? ns.reduce((s, n) => s + pos.get(n)!, 0) / ns.length : i;
    return { id, bc, i };
  });
  keyed.sort((a, b) => a.bc - b.bc || a.i - b.i);
  return keyed.map(k => k.id);
}

/** Lay out `ids` (in notebook order) connected by `edges`. Pure and deterministic. */
export function layoutDag(ids: string[], edges: IEdge[], options: Partial<ILayoutOptions> = {}): ILayout {
  const o = { ...DEFAULT_LAYOUT, ...options };
  const uniqueIds = Array.from(new Set(ids));
  const { layer, dag } = assignLayers(uniqueIds, edges);
  const depth = uniqueIds.length ? Math.max(...uniqueIds.map(id => layer.get(id)!)) + 1 : 0;
  const layers: string[][] = Array.from({ length: depth }, () => []);
  for (const id of uniqueIds) {
    layers[layer.get(id)!].push(id);
  }
  // Split long edges with virtual points so ordering accounts for them.
  const segments: IChainEdge[] = [];
  const chains: string[][] = [];
  const layerOf = new Map(layer);
  dag.forEach((e, ei) => {
    const chain = [e.source];
    for (let l = layer.get(e.source)! + 1; l < layer.get(e.target)!; l++) {
      const v = `\u0000v${ei}:${l}`;
      layers[l].push(v);
      layerOf.set(v, l);
      chain.push(v);
    }
    chain.push(e.target);
    for (let i = 0; i + 1 < chain.length; i++) {
      segments.push({ from: chain[i], to: chain[i + 1] });
    }
    chains.push(chain);
  });
  const up = new Map<string, string[]>();
  const down = new Map<string, string[]>();
  for (const s of segments) {
    (down.get(s.from) ?? down.set(s.from, []).get(s.from)!).push(s.to);
    (up.get(s.to) ?? up.set(s.to, []).get(s.to)!).push(s.from);
  }
  const positions = (ls: string[][]) => {
    const pos = new Map<string, number>();
    ls.forEach(l => l.forEach((id, i) => pos.set(id, i)));
    return pos;
  };
  let current = layers.map(l => [...l]);
  let best = current.map(l => [...l]);
  let bestCrossings = countCrossings(best, segments);
  for (let sweep = 0; sweep < o.sweeps && bestCrossings > 0; sweep++) {
    if (sweep % 2 === 0) {
      for (let l = 1; l < current.length; l++) {
        current[l] = sortByBarycentre(current[l], up, positions(current));
      }
    } else {
      for (let l = current.length - 2; l >= 0; l--) {
        current[l] = sortByBarycentre(current[l], down, positions(current));
      }
    }
    const c = countCrossings(current, segments);
    if (c < bestCrossings) {
      bestCrossings = c;
      best = current.map(l => [...l]);
    }
  }
  // Coordinates: every layer centred in the widest one.
  const slot = o.nodeWidth + o.hGap;
  const widest = Math.max(1, ...best.map(l => l.length));
  const width = o.margin * 2 + widest * slot - o.hGap;
  const height = depth ? o.margin * 2 + depth * (o.nodeHeight + o.vGap) - o.vGap : o.margin * 2;
  const centre = new Map<string, [number, number]>();
  const nodes: Record<string, INodeBox> = {};
  best.forEach((l, li) => {
    const offset = o.margin + ((widest - l.length) * slot) / 2;
    const y = o.margin + li * (o.nodeHeight + o.vGap);
    l.forEach((id, i) => {
      const x = offset + i * slot;
      centre.set(id, [x + o.nodeWidth / 2, y]);
      if (!id.startsWith('\u0000')) {
        nodes[id] = { id, layer: li, order: i, x, y, width: o.nodeWidth, height: o.nodeHeight };
      }
    });
  });
  const edgePaths: IEdgePath[] = chains.map(chain => {
    const points: Array<[number, number]> = [];
    chain.forEach((id, i) => {
      const [cx, y] = centre.get(id)!;
      if (i === 0) {
        points.push([cx, y + o.nodeHeight]);
      } else if (i === chain.length - 1) {
        points.push([cx, y]);
      } else {
        points.push([cx, y], [cx, y + o.nodeHeight]);
      }
    });
    return { source: chain[0], target: chain[chain.length - 1], points };
  });
  return {
    nodes,
    edges: edgePaths,
    layers: best.map(l => l.filter(id => !id.startsWith('\u0000'))),
    width,
    height,
    crossings: bestCrossings
  };
}
