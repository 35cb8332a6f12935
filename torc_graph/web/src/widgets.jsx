// Small display pieces shared by the pages.
import { useEffect, useMemo, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { displayCounts, LABELS } from './status.js';
import { layout, MAX_DRAWN, NODE_H, NODE_W } from './dag.js';

/** Seconds (or an ISO string, or epoch ms) as a local date-time string; '' when absent. */
export function when(value) {
  if (value === null || value === undefined || value === '') return '';
  let d;
  if (typeof value === 'number') d = new Date(value > 1e11 ? value : value * 1000);
  else d = new Date(value);
  return Number.isNaN(d.getTime()) ? String(value) : d.toLocaleString();
}

/** A duration in seconds as `1h 2m`, `3m 4s`, `5.0 s`. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return '';
  const s = Math.max(0, Number(seconds));
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${Math.round(s - m * 60)}s`;
  const h = Math.floor(m / 60);
  return `${h}h ${m - h * 60}m`;
}

/** Count chips, one per non-zero status (`data-status` names it for tests and CSS). */
export function CountChips({ counts, total }) {
  const shown = displayCounts(counts);
  return (
    <div class="chips">
      <span class="chip total">total <b data-count="total">{total}</b></span>
      {Object.entries(shown).map(([s, n]) => (
        <span class="chip" key={s}>
          <i class={`sw st-${s}`} />{LABELS[s]} <b data-count={s}>{n}</b>
        </span>
      ))}
    </div>
  );
}

/** A stacked horizontal bar of the status counts. */
export function CountsBar({ counts, total }) {
  const shown = displayCounts(counts);
  return (
    <div class="bar" title={Object.entries(shown).map(([s, n]) => `${LABELS[s]}: ${n}`).join(', ')}>
      {Object.entries(shown).map(([s, n]) => (
        <span key={s} class={`seg st-${s}`} style={{ width: `${(100 * n) / Math.max(total, 1)}%` }} />
      ))}
    </div>
  );
}

/** Cumulative succeeded/failed completions over time (uPlot). */
export function ProgressChart({ progress, total }) {
  const ref = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const t = progress.map((p) => p.t);
    const ok = progress.map((p) => p.done); // done: finished with return code 0
    const failed = progress.map((p) => p.failed);
    const data = [t, ok, failed];
    if (!plot.current) {
      const css = getComputedStyle(document.documentElement);
      plot.current = new uPlot({
        width: Math.max(320, ref.current.clientWidth), height: 200,
        scales: { y: { range: (u, min, max) => [0, Math.max(max, 1)] } },
        series: [
          {},
          { label: 'succeeded', stroke: css.getPropertyValue('--done'), width: 2,
            fill: css.getPropertyValue('--done-fill') },
          { label: 'failed', stroke: css.getPropertyValue('--failed'), width: 2 },
        ],
        axes: [{}, { label: total ? `of ${total}` : '' }],
      }, data, ref.current);
    } else {
      plot.current.setData(data);
    }
  }, [progress, total]);
  useEffect(() => {
    const resize = () => plot.current
      && plot.current.setSize({ width: Math.max(320, ref.current.clientWidth), height: 200 });
    window.addEventListener('resize', resize);
    return () => {
      window.removeEventListener('resize', resize);
      if (plot.current) plot.current.destroy();
      plot.current = null;
    };
  }, []);
  return <div class="chart" ref={ref} />;
}

/** The DAG of stages (or of jobs, for small workflows): boxes with a status bar, arrows with
 * the number of aggregated edges. `highlight` is a Set of stage names (the critical path). */
export function DagView({ stages, edges, aggregated, highlight, onStage }) {
  if (stages.length === 0) return <p class="muted">No jobs.</p>;
  if (stages.length > MAX_DRAWN) {
    return <p class="muted">{stages.length} stages: too many to draw; see the stage table.</p>;
  }
  return <DagSvg stages={stages} edges={edges} aggregated={aggregated} highlight={highlight}
    onStage={onStage} />;
}

function DagSvg({ stages, edges, aggregated, highlight, onStage }) {
  // The layout depends only on the graph's shape: refreshes that change counts reuse it.
  const shape = `${stages.map((s) => s.stage).join('\n')}\n\n${edges.map((e) => `${e.from}>${e.to}:${e.count}`).join('\n')}`;
  const g = useMemo(() => layout(stages, edges), [shape]);
  const byStage = Object.fromEntries(stages.map((s) => [s.stage, s]));
  return (
    <div class="dag-wrap">
      <svg class="dag" width={g.width} height={g.height} viewBox={`0 0 ${g.width} ${g.height}`}>
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7"
            markerHeight="7" orient="auto-start-reverse">
            <path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead" />
          </marker>
        </defs>
        {g.edges.map((e) => {
          const d = e.points.map((p, i) => `${i ? 'L' : 'M'}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' ');
          const mid = e.points[Math.floor(e.points.length / 2)];
          return (
            <g key={`${e.from}>${e.to}`}>
              <path class="edge" d={d} marker-end="url(#arrow)" />
              {aggregated && e.count > 1 && mid
                && <text class="edge-label" x={mid.x} y={mid.y - 4}>{e.count}</text>}
            </g>
          );
        })}
        {g.nodes.map((n) => {
          const s = byStage[n.stage];
          const shown = displayCounts(s.counts);
          let x = n.x - NODE_W / 2 + 6;
          const hot = highlight && highlight.has(n.stage);
          return (
            <g key={n.stage} class={`node${hot ? ' critical' : ''}`} data-stage={n.stage}
 onClick={() => onStage(n.stage)}>
              <title>{`${s.name ? `${s.name} #${s.key}` : n.stage}: ${s.total} job(s)\n`
                + Object.entries(shown).map(([k, v]) => `${LABELS[k]}: ${v}`).join('\n')}</title>
              <rect x={n.x - NODE_W / 2} y={n.y - NODE_H / 2} width={NODE_W} height={NODE_H} rx="6" />
              <text class="node-name" x={n.x} y={n.y - 5}>{clip(s.name || n.stage, 22)}</text>
              <text class="node-total" x={n.x} y={n.y + 9}>{aggregated ? `${s.total} job${s.total === 1 ? "" : "s"}` : `#${s.key ?? n.stage}`}</text>
              {Object.entries(shown).map(([k, v]) => {
                const w = ((NODE_W - 12) * v) / Math.max(s.total, 1);
                const r = <rect key={k} class={`st-${k}`} x={x} y={n.y + NODE_H / 2 - 9} width={w} height="5" />;
                x += w;
                return r;
              })}
            </g>
          );
        })}
      </svg>
    </div>
  );
}

function clip(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

/** A plain table: `columns` = [[title, row => cell]]; `empty` shown without rows. */
export function Table({ columns, rows, empty, rowKey, cls }) {
  if (!rows || rows.length === 0) return <p class="muted">{empty}</p>;
  return (
    <table class={cls || ''}>
      <thead><tr>{columns.map(([title]) => <th key={title}>{title}</th>)}</tr></thead>
      <tbody>
        {rows.map((r, i) => (
          <tr key={rowKey ? rowKey(r) : i}>
            {columns.map(([title, cell]) => <td key={title}>{cell(r)}</td>)}
          </tr>
        ))}
      </tbody>
    </table>
  );
}
