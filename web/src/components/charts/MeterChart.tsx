import { useWidth } from "./useWidth";
import { ChartFrame } from "./ChartFrame";

export interface Meter {
  label: string;
  used: number;
  total: number;
  /** "1.5 of 4 cores" */
  text: string;
}

interface MeterChartProps {
  meters: Meter[];
  label: string;
  color?: string;
  testId?: string;
}

const ROW = 40;

/** Horizontal bars of use against capacity, one row per meter. */
export function MeterChart({ meters, label, color = "var(--accent)", testId }: MeterChartProps) {
  const [ref, width] = useWidth<HTMLDivElement>();
  const height = Math.max(meters.length, 1) * ROW;
  return (
    <ChartFrame label={label} testId={testId} width={width} height={height} frameRef={ref}>
      {meters.length === 0 && (
        <text className="empty" x={width / 2} y={ROW / 2} textAnchor="middle" dy="0.32em">
          Nothing to show
        </text>
      )}
      {meters.map((m, i) => {
        const share = m.total > 0 ? Math.min(Math.max(m.used / m.total, 0), 1) : 0;
        const top = i * ROW;
        return (
          <g key={`${m.label}-${i}`}>
            <text className="meter-label" x={0} y={top + 12}>
              {m.label}
            </text>
            <text className="meter-label" x={width} y={top + 12} textAnchor="end">
              {m.text}
            </text>
            <rect className="meter-track" x={0} y={top + 18} width={width} height={12} rx={6} />
            <rect x={0} y={top + 18} width={width * share} height={12} rx={6} fill={color} />
          </g>
        );
      })}
    </ChartFrame>
  );
}
