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

/** Zoom limits and step of the DAG's −/+ buttons. */
export const ZOOM_MIN = 0.25;
export const ZOOM_MAX = 3;
export const ZOOM_STEP = 1.25;

/** The scale that fits a `width`-wide DAG into `maxWidth` (never above 1: a small DAG keeps its size). */
export function fitScale(width: number, maxWidth: number): number {
  if (width <= 0 || maxWidth <= 0 || width <= maxWidth) {
    return 1;
  }
  return Math.max(ZOOM_MIN, Math.floor((maxWidth / width) * 1000) / 1000);
}

/** One zoom step in (`+1`) or out (`-1`) from `scale`, within [ZOOM_MIN, ZOOM_MAX]. */
export function zoomStep(scale: number, direction: 1 | -1): number {
  const next = direction > 0 ? scale * ZOOM_STEP : scale / ZOOM_STEP;
  return Math.min(ZOOM_MAX, Math.max(ZOOM_MIN, Math.round(next * 1000) / 1000));
}

/** The DAG with its zoom bar: fitted to the width by default, −/+ to zoom, Fit to go back. */
export function DagView(props: {
  app: IAppInfo;
  run: IRunState | null;
  onSelect: (node: IAppNode) => void;
  maxWidth?: number;
  agentStatus?: Record<string, string>;
}): JSX.Element {
  const maxWidth = props.maxWidth ?? 250;
  const layout = React.useMemo(
    () => fitLayout(props.app.nodes.map(n => n.id), props.app.edges, maxWidth),
    [JSON.stringify(props.app.nodes.map(n => n.id)), JSON.stringify(props.app.edges), maxWidth]
  );
  /** null: fit to the width (the default, follows sidebar resizes). */
  const [zoom, setZoom] = React.useState<number | null>(null);
  const fit = fitScale(layout.width, maxWidth);
  const scale = zoom ?? fit;
  return (
    <div className="sf-dag-view">
      <div className="sf-dag-tools" role="toolbar" aria-label="Pipeline graph zoom">
        <button
          type="button"
          className="sf-dag-tool sf-zoom-out"
          aria-label="Zoom out of the pipeline graph"
          title="Zoom out"
          disabled={scale <= ZOOM_MIN}
          onClick={() => setZoom(zoomStep(scale, -1))}
        >
          −
        </button>
        <span className="sf-dag-zoom-level" aria-live="polite" title={zoom === null ? 'fitted to the width' : 'zoomed'}>
          {Math.round(scale * 100)}%
        </span>
        <button
          type="button"
          className="sf-dag-tool sf-zoom-in"
          aria-label="Zoom in on the pipeline graph"
          title="Zoom in"
          disabled={scale >= ZOOM_MAX}
          onClick={() => setZoom(zoomStep(scale, 1))}
        >
          +
        </button>
        <button
          type="button"
          className="sf-dag-tool sf-zoom-fit"
          aria-label="Fit the pipeline graph to the width"
          title="Fit to the width"
          disabled={zoom === null}
          onClick={() => setZoom(null)}
        >
          Fit
        </button>
      </div>
      <div className="sf-dag-scroll">
        <DagGraph {...props} layout={layout} scale={scale} />
      </div>
    </div>
  );
}

function DagGraph(props: {
  app: IAppInfo;
  run: IRunState | null;
  onSelect: (node: IAppNode) => void;
  layout: ILayout;
  scale: number;
  /** Agent name → running | stopped | crashed (agents are not steps of a run). */
  agentStatus?: Record<string, string>;
}): JSX.Element {
  const { app, run, layout, scale } = props;
  const maxChars = Math.max(6, Math.floor((Object.values(layout.nodes)[0]?.width ?? 112) / 7.4));
  const byId = new Map(app.nodes.map(n => [n.id, n]));
  const status = (id: string): StepStatus | string =>
    byId.get(id)?.kind === 'agent' ? props.agentStatus?.[id] ?? 'none' : run?.steps[id]?.status ?? 'none';
  return (
    <svg
      className="sf-dag"
      width={Math.ceil(layout.width * scale)}
      height={Math.ceil(layout.height * scale)}
      role="group"
      aria-label={`Pipeline ${app.app?.name ?? ''}: its steps are buttons that select their cell`}
    >
      <g className="sf-dag-zoom" transform={`scale(${scale})`}>
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
      </g>
    </svg>
  );
}
