import { useMemo } from "react";
import { formatTime } from "../../lib/format";
import { linearScale, niceMax, niceTicks, timeTicks } from "./scale";
import { useWidth } from "./useWidth";
import { SeriesLegend } from "./Legend";
import { ChartFrame, ValueGrid } from "./ChartFrame";

export interface Point {
  /** Time in ms since the epoch. */
  x: number;
  /** null leaves a gap in the line. */
  y: number | null;
}

export interface LineSeries {
  name: string;
  color: string;
  points: Point[];
}

interface LineChartProps {
  series: LineSeries[];
  /** What the chart shows, for people who cannot see it (the SVG's aria-label). */
  label: string;
  yFormat: (value: number) => string;
  xFormat?: (ms: number) => string;
  /** The x range; defaults to the points' range. */
  xDomain?: readonly [number, number];
  /** The y axis reaches at least this high (e.g. 100 for a percentage). */
  yAtLeast?: number;
  height?: number;
  area?: boolean;
  emptyText?: string;
  testId?: string;
}

const MARGIN = { top: 12, right: 16, bottom: 26, left: 56 };

function pathFor(points: Point[], x: (v: number) => number, y: (v: number) => number): string {
  let d = "";
  let drawing = false;
  for (const p of points) {
    if (p.y === null || !Number.isFinite(p.y)) {
      drawing = false;
      continue;
    }
    d += `${drawing ? "L" : "M"}${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`;
    drawing = true;
  }
  return d;
}

/** Runs of consecutive non-null points, each closed down to the baseline. */
function areaFor(
  points: Point[],
  x: (v: number) => number,
  y: (v: number) => number,
  base: number,
): string {
  let d = "";
  let run: Point[] = [];
  const flush = () => {
    if (run.length) {
      const first = run[0]!;
      const last = run[run.length - 1]!;
      d += `M${x(first.x).toFixed(1)},${base}`;
      for (const p of run) d += `L${x(p.x).toFixed(1)},${y(p.y!).toFixed(1)}`;
      d += `L${x(last.x).toFixed(1)},${base}Z`;
    }
    run = [];
  };
  for (const p of points) {
    if (p.y === null || !Number.isFinite(p.y)) flush();
    else run.push(p);
  }
  flush();
  return d;
}

/** A time-series line (or area) chart with a value axis and a time axis. */
export function LineChart({
  series,
  label,
  yFormat,
  xFormat = formatTime,
  xDomain,
  yAtLeast = 0,
  height = 200,
  area = false,
  emptyText = "No data yet",
  testId,
}: LineChartProps) {
  const [ref, width] = useWidth<HTMLDivElement>();
  const layout = useMemo(() => {
    const xs = series.flatMap((s) => s.points.map((p) => p.x));
    const ys = series.flatMap((s) =>
      s.points.flatMap((p) => (p.y === null || !Number.isFinite(p.y) ? [] : [p.y])),
    );
    const x0 = xDomain?.[0] ?? Math.min(...xs);
    const x1 = xDomain?.[1] ?? Math.max(...xs);
    const top = niceMax(Math.max(yAtLeast, ...ys, 0));
    return { empty: ys.length === 0, x0, x1: x1 > x0 ? x1 : x0 + 1000, top };
  }, [series, xDomain, yAtLeast]);

  const innerW = Math.max(width - MARGIN.left - MARGIN.right, 10);
  const innerH = height - MARGIN.top - MARGIN.bottom;
  const x = linearScale([layout.x0, layout.x1], [MARGIN.left, MARGIN.left + innerW]);
  const y = linearScale([0, layout.top], [MARGIN.top + innerH, MARGIN.top]);
  const base = MARGIN.top + innerH;
  const yTicks = niceTicks(0, layout.top, 4);
  const xTicks = layout.empty ? [] : timeTicks(layout.x0, layout.x1, Math.max(2, Math.floor(innerW / 90)));

  return (
    <ChartFrame
      label={label}
      testId={testId}
      width={width}
      height={height}
      frameRef={ref}
      after={<SeriesLegend series={series} />}
    >
      <ValueGrid ticks={yTicks} left={MARGIN.left} width={innerW} y={y} format={yFormat} />
      <line className="axis" x1={MARGIN.left} x2={MARGIN.left + innerW} y1={base} y2={base} />
      {xTicks.map((t) => {
        const at = x(t);
        const anchor = at > width - 40 ? "end" : at < MARGIN.left + 30 ? "start" : "middle";
        return (
          <text key={t} className="tick" x={at} y={base + 17} textAnchor={anchor}>
            {xFormat(t)}
          </text>
        );
      })}
      {layout.empty ? (
        <text className="empty" x={MARGIN.left + innerW / 2} y={MARGIN.top + innerH / 2} textAnchor="middle">
          {emptyText}
        </text>
      ) : (
        series.map((s) => {
          const last = [...s.points].reverse().find((p) => p.y !== null && Number.isFinite(p.y));
          return (
            <g key={s.name}>
              {area && <path d={areaFor(s.points, x, y, base)} fill={s.color} opacity={0.18} />}
              <path d={pathFor(s.points, x, y)} fill="none" stroke={s.color} strokeWidth={2} />
              {last && <circle cx={x(last.x)} cy={y(last.y!)} r={3.5} fill={s.color} />}
            </g>
          );
        })
      )}
    </ChartFrame>
  );
}
