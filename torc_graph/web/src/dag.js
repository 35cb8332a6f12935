// Layered layout of the (stage-aggregated) DAG with dagre; rendering is in components.jsx.
import dagre from '@dagrejs/dagre';

export const NODE_W = 168;
export const NODE_H = 46;
/** Above this many stages the graph is not drawn (the table lists them). */
export const MAX_DRAWN = 400;

/** Positions of `stages` and `edges` (`{from, to, count}`): `{width, height, nodes: [{stage,
 * x, y}], edges: [{from, to, count, points: [{x, y}]}]}`. x/y are node centers. */
export function layout(stages, edges) {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: 'LR', nodesep: 16, ranksep: 48, marginx: 8, marginy: 8 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const s of stages) g.setNode(s.stage, { width: NODE_W, height: NODE_H });
  for (const e of edges) {
    if (e.from !== e.to && g.hasNode(e.from) && g.hasNode(e.to)) {
      g.setEdge(e.from, e.to, { count: e.count });
    }
  }
  dagre.layout(g);
  const graph = g.graph();
  return {
    width: Math.ceil(graph.width || 0),
    height: Math.ceil(graph.height || 0),
    nodes: g.nodes().map((id) => ({ stage: id, x: g.node(id).x, y: g.node(id).y })),
    edges: g.edges().map((e) => ({
      from: e.v, to: e.w, count: g.edge(e).count, points: g.edge(e).points || [],
    })),
  };
}
