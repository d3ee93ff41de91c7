/** The application's steps as an SVG DAG, nodes coloured by the status of the current/last run. */
import * as React from 'react';

import { DEFAULT_LAYOUT, layoutDag, type ILayout } from './layout';
import type { IRunState, StepStatus } from './state';
import type { IAppInfo, IAppNode } from './types';

/** Narrow the nodes (down to 64 px) so that wide layers fit `maxWidth` without scaling text. */
export function fitLayout(ids: string[], edges: IAppInfo['edges'], maxWidth: number): ILayout {
  const first = layoutDag(ids, edges);
  if (first.width <= maxWidth) {
    return first;
  }
  const widest = Math.max(1, ...first.layers.map(l => l.length));
  const { margin } = DEFAULT_LAYOUT;
  const hGap = 8;
  const nodeWidth = Math.max(64, Math.floor((maxWidth - 2 * margin + hGap) / widest) - hGap);
  return layoutDag(ids, edges, { nodeWidth, hGap });
}

export function DagView(props: {
  app: IAppInfo;
  run: IRunState | null;
  onSelect: (node: IAppNode) => void;
  maxWidth?: number;
  /** Agent name → running | stopped | crashed (agents are not steps of a run). */
  agentStatus?: Record<string, string>;
}): JSX.Element {
  const { app, run } = props;
  const layout = React.useMemo(
    () => fitLayout(app.nodes.map(n => n.id), app.edges, props.maxWidth ?? 250),
    [JSON.stringify(app.nodes.map(n => n.id)), JSON.stringify(app.edges), props.maxWidth]
  );
  const maxChars = Math.max(6, Math.floor((Object.values(layout.nodes)[0]?.width ?? 112) / 7.4));
  const byId = new Map(app.nodes.map(n => [n.id, n]));
  const status = (id: string): StepStatus | string =>
    byId.get(id)?.kind === 'agent' ? props.agentStatus?.[id] ?? 'none' : run?.steps[id]?.status ?? 'none';
  return (
    <svg
      className="sf-dag"
      width={layout.width}
      height={layout.height}
      viewBox={`0 0 ${layout.width} ${layout.height}`}
      role="group"
      aria-label={`Pipeline ${app.app.name}: its steps are buttons that select their cell`}
    >
      <defs>
        <marker id="sf-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
          <path d="M 0 0 L 10 5 L 0 10 z" className="sf-dag-arrow" />
        </marker>
      </defs>
      {layout.edges.map(edge => {
        const d = edge.points
          .map(([x, y], i) => {
            if (i === 0) {
              return `M ${x} ${y}`;
            }
            const [px, py] = edge.points[i - 1];
            const my = (py + y) / 2;
            return px === x ? `L ${x} ${y}` : `C ${px} ${my} ${x} ${my} ${x} ${y}`;
          })
          .join(' ');
        return <path key={`${edge.source}->${edge.target}`} className="sf-dag-edge" d={d} markerEnd="url(#sf-arrow)" />;
      })}
      {Object.values(layout.nodes).map(box => {
        const node = byId.get(box.id)!;
        const st = status(box.id);
        const label = box.id;
        const shown = label.length > maxChars ? label.slice(0, maxChars - 1) + '…' : label;
        return (
          <g
            key={box.id}
            className={`sf-dag-node sf-status-${st} sf-kind-${node.kind}`}
            data-node={box.id}
            data-status={st}
            transform={`translate(${box.x}, ${box.y})`}
            onClick={() => props.onSelect(node)}
            role="button"
            tabIndex={0}
            onKeyDown={e => {
              if (e.key === 'Enter' || e.key === ' ') {
                props.onSelect(node);
              }
            }}
          >
            <title>{`${node.kind} ${box.id} — cell ${node.cell}${st !== 'none' ? ` — ${st}` : ''}`}</title>
            <rect width={box.width} height={box.height} rx={node.kind === 'executor' ? 6 : 15} />
            <text x={box.width / 2} y={box.height / 2} dominantBaseline="central" textAnchor="middle">
              {shown}
            </text>
          </g>
        );
      })}
    </svg>
  );
}
