import { useState } from "react";
import { getMetrics } from "../api/endpoints";
import { JOB_STATES, type MetricsOut, type MetricsWindow } from "../api/types";
import { BarChart } from "../components/charts/BarChart";
import { DonutChart } from "../components/charts/DonutChart";
import { LineChart } from "../components/charts/LineChart";
import { MeterChart } from "../components/charts/MeterChart";
import { LoadError, Loading } from "../components/Status";
import { formatAxisDuration, formatDayHour, formatDuration, formatHourMinute, formatMb, formatNumber } from "../lib/format";
import { STATE_COLORS } from "../lib/stateColors";
import { usePolled } from "../lib/usePolled";
import { useTitle } from "../lib/useTitle";

const REFRESH_MS = 10_000;
const WINDOWS: { value: MetricsWindow; label: string; span: string }[] = [
  { value: "day", label: "Last day", span: "the last day" },
  { value: "week", label: "Last week", span: "the last week" },
];

function JobsByState({ metrics }: { metrics: MetricsOut }) {
  const known = JOB_STATES.map((s) => ({ name: s, value: metrics.jobs_by_state[s] ?? 0, color: STATE_COLORS[s]! }));
  const others = Object.entries(metrics.jobs_by_state)
    .filter(([s]) => !(JOB_STATES as readonly string[]).includes(s))
    .map(([name, value]) => ({ name, value, color: "var(--muted)" }));
  const slices = [...known, ...others];
  const total = slices.reduce((sum, s) => sum + s.value, 0);
  const text = slices.filter((s) => s.value > 0).map((s) => `${s.name} ${s.value}`).join(", ");
  return (
    <DonutChart
      slices={slices}
      centerText={formatNumber(total)}
      label={`Jobs by state: ${total} jobs${text ? `; ${text}` : ""}`}
    />
  );
}

function ProviderResources({ metrics }: { metrics: MetricsOut }) {
  if (metrics.providers.length === 0) return <p className="muted">No providers.</p>;
  const cpu = metrics.providers.map((p) => ({
    label: `${p.name}${p.enabled ? "" : " (disabled)"}`,
    used: p.used_cpu_cores,
    total: p.cpu_cores,
    text: `${formatNumber(p.used_cpu_cores, 2)} of ${formatNumber(p.cpu_cores, 2)} cores`,
  }));
  const memory = metrics.providers.map((p) => ({
    label: `${p.name}${p.enabled ? "" : " (disabled)"}`,
    used: p.used_memory_mb,
    total: p.memory_mb,
    text: `${formatMb(p.used_memory_mb)} of ${formatMb(p.memory_mb)}`,
  }));
  return (
    <div className="grid-2">
      <div>
        <h3>CPU cores in use</h3>
        <MeterChart meters={cpu} label={`CPU cores in use per provider: ${cpu.map((m) => `${m.label} ${m.text}`).join("; ")}`} />
      </div>
      <div>
        <h3>Memory in use</h3>
        <MeterChart
          meters={memory}
          color="var(--chart-2)"
          label={`Memory in use per provider: ${memory.map((m) => `${m.label} ${m.text}`).join("; ")}`}
        />
      </div>
      <ul className="chips wide">
        {metrics.providers.map((p) => (
          <li key={p.name}>
            <strong>{p.name}</strong>: {p.workers} workers, {p.running_jobs} running jobs
          </li>
        ))}
      </ul>
    </div>
  );
}

function Trends({ metrics, span }: { metrics: MetricsOut; span: string }) {
  const hourly = metrics.window === "day";
  const starts = metrics.trend.map((b) => Date.parse(b.bucket_start));
  const categories = starts.map((ms) => (hourly ? formatHourMinute(ms) : formatDayHour(ms)));
  const succeeded = metrics.trend.map((b) => b.succeeded);
  const failed = metrics.trend.map((b) => b.failed);
  const other = metrics.trend.map((b) => Math.max(b.jobs - b.succeeded - b.failed, 0));
  const totalJobs = metrics.trend.reduce((sum, b) => sum + b.jobs, 0);
  const busiest = metrics.trend.reduce((max, b) => Math.max(max, b.jobs), 0);
  const bucketMs = hourly ? 3_600_000 : 6 * 3_600_000;
  // Each average is drawn in the middle of its bucket.
  const durations = metrics.trend.map((b, i) => ({ x: starts[i]! + bucketMs / 2, y: b.avg_duration_ms }));
  const known = metrics.trend.flatMap((b) => (b.avg_duration_ms === null ? [] : [b.avg_duration_ms]));
  const bucketEnd = (starts[starts.length - 1] ?? 0) + bucketMs;
  return (
    <>
      <section className="card" aria-labelledby="per-hour-heading">
        <h2 id="per-hour-heading">Jobs per hour</h2>
        <p className="muted small">
          {hourly ? "Jobs that finished each hour" : "Jobs that finished in each 6-hour span"} over {span}: {totalJobs} in all.
        </p>
        <BarChart
          categories={categories}
          series={[
            { name: "Succeeded", color: "var(--state-succeeded)", values: succeeded },
            { name: "Failed", color: "var(--state-failed)", values: failed },
            { name: "Other", color: "var(--state-pending)", values: other },
          ]}
          label={`Jobs ${hourly ? "per hour" : "per 6 hours"} over ${span}: ${totalJobs} jobs, at most ${busiest} in one ${hourly ? "hour" : "6-hour span"}`}
        />
      </section>
      <section className="card" aria-labelledby="duration-heading">
        <h2 id="duration-heading">Duration</h2>
        <p className="muted small">Average execution time of the jobs that finished in each {hourly ? "hour" : "6-hour span"}.</p>
        <LineChart
          series={[{ name: "Average duration", color: "var(--chart-1)", points: durations }]}
          label={
            known.length
              ? `Average job duration over ${span}: from ${formatDuration(Math.min(...known))} to ${formatDuration(Math.max(...known))}`
              : `Average job duration over ${span}: no finished jobs`
          }
          yFormat={formatAxisDuration}
          xFormat={hourly ? formatHourMinute : formatDayHour}
          xDomain={starts.length ? [starts[0]!, bucketEnd] : undefined}
          emptyText="No finished jobs"
        />
      </section>
    </>
  );
}

/** Jobs by state, average execution time, resources per provider and trends over a day or a week. */
export function Metrics() {
  useTitle("Metrics");
  const [windowName, setWindowName] = useState<MetricsWindow>("day");
  const metrics = usePolled((signal) => getMetrics(windowName, signal), windowName, REFRESH_MS);
  const span = WINDOWS.find((w) => w.value === windowName)!.span;
  const m = metrics.data;

  return (
    <div className="page">
      <div className="page-head">
        <h1>Metrics</h1>
        <div className="segmented" role="group" aria-label="Time window">
          {WINDOWS.map((w) => (
            <button
              key={w.value}
              type="button"
              className="button"
              aria-pressed={windowName === w.value}
              onClick={() => setWindowName(w.value)}
            >
              {w.label}
            </button>
          ))}
        </div>
      </div>
      {metrics.error !== undefined && <LoadError what="the metrics" error={metrics.error} />}
      {!m && metrics.loading && <Loading what="metrics" />}
      {m && (
        <>
          <div className="grid-2">
            <section className="card" aria-labelledby="by-state-heading">
              <h2 id="by-state-heading">Jobs by state</h2>
              <p className="muted small">Every job in the system, by its state now.</p>
              <JobsByState metrics={m} />
            </section>
            <section className="card" aria-labelledby="avg-heading">
              <h2 id="avg-heading">Average execution time</h2>
              <p className="big-number" data-testid="avg-duration">
                {m.avg_duration_ms === null ? "No finished jobs" : formatDuration(m.avg_duration_ms)}
              </p>
              <p className="muted small">
                Over the {formatNumber(m.finished_jobs)} jobs that finished in {span} ({formatNumber(m.total_jobs)} jobs in all).
              </p>
              <MeterChart
                meters={[
                  {
                    label: "Finished",
                    used: m.finished_jobs,
                    total: m.total_jobs,
                    text: `${formatNumber(m.finished_jobs)} of ${formatNumber(m.total_jobs)}`,
                  },
                ]}
                label={`${m.finished_jobs} of ${m.total_jobs} jobs finished over ${span}`}
              />
            </section>
          </div>
          <section className="card" aria-labelledby="providers-heading">
            <h2 id="providers-heading">Resources per provider</h2>
            <ProviderResources metrics={m} />
          </section>
          <Trends metrics={m} span={span} />
        </>
      )}
    </div>
  );
}
