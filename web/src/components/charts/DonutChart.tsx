import { Legend } from "./Legend";
import { ChartFrame } from "./ChartFrame";

export interface Slice {
  name: string;
  value: number;
  color: string;
}

interface DonutChartProps {
  slices: Slice[];
  label: string;
  /** The number in the middle, e.g. the total. */
  centerText?: string;
  size?: number;
  testId?: string;
}

/** Shares of a whole as a ring, with a legend that gives each value. */
export function DonutChart({ slices, label, centerText, size = 180, testId }: DonutChartProps) {
  const total = slices.reduce((sum, s) => sum + Math.max(s.value, 0), 0);
  const radius = size / 2 - 14;
  const circumference = 2 * Math.PI * radius;
  let offset = 0;
  return (
    <ChartFrame
      className="chart donut"
      label={label}
      testId={testId}
      width={size}
      height={size}
      after={<Legend items={slices.map((s) => ({ name: s.name, color: s.color, value: String(s.value) }))} />}
    >
      <circle className="meter-track-stroke" cx={size / 2} cy={size / 2} r={radius} fill="none" strokeWidth={22} />
      {total > 0 &&
        slices.map((s) => {
          const length = (Math.max(s.value, 0) / total) * circumference;
          const dash = (
            <circle
              key={s.name}
              cx={size / 2}
              cy={size / 2}
              r={radius}
              fill="none"
              stroke={s.color}
              strokeWidth={22}
              strokeDasharray={`${length} ${circumference - length}`}
              strokeDashoffset={-offset}
              transform={`rotate(-90 ${size / 2} ${size / 2})`}
            >
              <title>{`${s.name}: ${s.value}`}</title>
            </circle>
          );
          offset += length;
          return dash;
        })}
      {centerText !== undefined && (
        <text className="donut-center" x={size / 2} y={size / 2} textAnchor="middle" dy="0.35em">
          {centerText}
        </text>
      )}
    </ChartFrame>
  );
}
