import type { ResourceSample } from "../api/types";
import { LineChart } from "../components/charts/LineChart";
import { formatMb } from "../lib/format";

interface ResourceChartsProps {
  samples: ResourceSample[];
  /** What span the charts cover, for their labels: "the last minute", "the whole run". */
  span: string;
  height?: number;
}

const percent = (v: number) => `${Math.round(v)}%`;

function summary(values: number[], format: (v: number) => string): string {
  if (values.length === 0) return "no samples yet";
  const latest = values[values.length - 1]!;
  const peak = Math.max(...values);
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return `latest ${format(latest)}, average ${format(mean)}, peak ${format(peak)}`;
}

/** CPU and memory of a job over time, one sample a second. */
export function ResourceCharts({ samples, span, height = 180 }: ResourceChartsProps) {
  const xs = samples.map((s) => Date.parse(s.at));
  const cpu = samples.map((s) => s.cpu_percent);
  const memory = samples.map((s) => s.memory_mb);
  return (
    <div className="grid-2">
      <div>
        <h3>CPU</h3>
        <LineChart
          testId="cpu-chart"
          label={`CPU use over ${span} (percent of one core): ${summary(cpu, percent)}`}
          series={[{ name: "CPU", color: "var(--chart-1)", points: samples.map((_, i) => ({ x: xs[i]!, y: cpu[i]! })) }]}
          yFormat={percent}
          yAtLeast={100}
          area
          height={height}
          emptyText="No samples yet"
        />
      </div>
      <div>
        <h3>Memory</h3>
        <LineChart
          testId="memory-chart"
          label={`Memory use over ${span}: ${summary(memory, formatMb)}`}
          series={[{ name: "Memory", color: "var(--chart-2)", points: samples.map((_, i) => ({ x: xs[i]!, y: memory[i]! })) }]}
          yFormat={formatMb}
          yAtLeast={16}
          area
          height={height}
          emptyText="No samples yet"
        />
      </div>
    </div>
  );
}
