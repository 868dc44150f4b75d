import { linearScale, niceMax, niceTicks } from "./scale";
import { useWidth } from "./useWidth";
import { SeriesLegend } from "./Legend";
import { ChartFrame, ValueGrid } from "./ChartFrame";

export interface BarSeries {
  name: string;
  color: string;
  /** One value per category; series are stacked. */
  values: number[];
}

interface BarChartProps {
  categories: string[];
  series: BarSeries[];
  label: string;
  yFormat?: (value: number) => string;
  height?: number;
  testId?: string;
}

const MARGIN = { top: 12, right: 12, bottom: 26, left: 44 };

/** Vertical stacked bars, one per category, with a value axis. */
export function BarChart({
  categories,
  series,
  label,
  yFormat = (v) => String(v),
  height = 220,
  testId,
}: BarChartProps) {
  const [ref, width] = useWidth<HTMLDivElement>();
  const totals = categories.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] ?? 0), 0));
  const top = niceMax(Math.max(0, ...totals));
  const innerW = Math.max(width - MARGIN.left - MARGIN.right, 10);
  const innerH = height - MARGIN.top - MARGIN.bottom;
  const y = linearScale([0, top], [MARGIN.top + innerH, MARGIN.top]);
  const slot = innerW / Math.max(categories.length, 1);
  const barW = Math.max(slot * 0.7, 1);
  const labelEvery = Math.max(1, Math.ceil(categories.length / Math.max(1, Math.floor(innerW / 56))));
  const base = MARGIN.top + innerH;

  return (
    <ChartFrame
      label={label}
      testId={testId}
      width={width}
      height={height}
      frameRef={ref}
      after={<SeriesLegend series={series} />}
    >
      <ValueGrid ticks={niceTicks(0, top, 4)} left={MARGIN.left} width={innerW} y={y} format={yFormat} />
      {categories.map((category, i) => {
        const x0 = MARGIN.left + i * slot + (slot - barW) / 2;
        let stacked = 0;
        return (
          <g key={`${category}-${i}`}>
            {series.map((s) => {
              const value = s.values[i] ?? 0;
              if (value <= 0) return null;
              const yTop = y(stacked + value);
              const yBottom = y(stacked);
              stacked += value;
              return (
                <rect key={s.name} x={x0} y={yTop} width={barW} height={Math.max(yBottom - yTop, 0.5)} fill={s.color}>
                  <title>{`${category}: ${s.name} ${yFormat(value)}`}</title>
                </rect>
              );
            })}
            {i % labelEvery === 0 && (
              <text className="tick" x={x0 + barW / 2} y={base + 17} textAnchor="middle">
                {category}
              </text>
            )}
          </g>
        );
      })}
      <line className="axis" x1={MARGIN.left} x2={MARGIN.left + innerW} y1={base} y2={base} />
    </ChartFrame>
  );
}
