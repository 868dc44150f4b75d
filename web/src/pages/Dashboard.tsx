import { Link } from "react-router-dom";
import { getQueue, getSystem, getWorkers, listJobs } from "../api/endpoints";
import type { JobOut, QueueOut, SystemOut, WorkerOut } from "../api/types";
import { MeterChart } from "../components/charts/MeterChart";
import { StateBadge } from "../components/StateBadge";
import { LoadError, Loading } from "../components/Status";
import { executionMs, formatAgo, formatDuration, formatMb, formatNumber } from "../lib/format";
import { usePolled } from "../lib/usePolled";
import { useTitle } from "../lib/useTitle";
import { useCan } from "../session/SessionContext";

const REFRESH_MS = 2000;

function StatCards({ queue }: { queue: QueueOut }) {
  const count = (state: string) => queue.jobs_by_state[state] ?? 0;
  const total = Object.values(queue.jobs_by_state).reduce((sum, n) => sum + n, 0);
  const stats = [
    { id: "stat-total", label: "Total Jobs", value: total, tone: "neutral" },
    { id: "stat-running", label: "Running", value: count("RUNNING"), tone: "running" },
    { id: "stat-failed", label: "Failed", value: count("FAILED"), tone: "failed" },
    { id: "stat-success", label: "Success", value: count("SUCCEEDED"), tone: "success" },
  ];
  return (
    <div className="stats">
      {stats.map((s) => (
        <div key={s.id} className={`stat stat-${s.tone}`}>
          <span className="stat-label">{s.label}</span>
          <span className="stat-value" data-testid={s.id}>
            {formatNumber(s.value)}
          </span>
        </div>
      ))}
    </div>
  );
}

function HostHealth({ system }: { system: SystemOut }) {
  const { host } = system;
  return (
    <>
      <MeterChart
        label={`Host CPU ${host.cpu_percent.toFixed(0)} percent busy; memory ${formatMb(host.memory_used_mb)} of ${formatMb(host.memory_total_mb)} used`}
        meters={[
          { label: "CPU", used: host.cpu_percent, total: 100, text: `${host.cpu_percent.toFixed(0)} %` },
          {
            label: "Memory",
            used: host.memory_used_mb,
            total: host.memory_total_mb,
            text: `${formatMb(host.memory_used_mb)} of ${formatMb(host.memory_total_mb)}`,
          },
        ]}
      />
      <p className="muted">
        Load average {host.load_1.toFixed(2)} · {host.load_5.toFixed(2)} · {host.load_15.toFixed(2)} on{" "}
        {host.cpu_count} CPUs
      </p>
      <p className="small muted">Workers by state</p>
      <ul className="chips" aria-label="Workers by state">
        {Object.entries(system.workers_by_state).map(([state, n]) => (
          <li key={state}>
            <StateBadge state={state} /> {n}
          </li>
        ))}
      </ul>
    </>
  );
}

function WorkerTable({ workers }: { workers: WorkerOut[] }) {
  if (workers.length === 0) return <p className="muted">No workers are registered.</p>;
  return (
    <div className="table-wrap">
      <table className="table compact">
        <caption className="sr-only">Workers</caption>
        <thead>
          <tr>
            <th scope="col">Worker</th>
            <th scope="col">Provider</th>
            <th scope="col">State</th>
            <th scope="col">Jobs</th>
            <th scope="col">CPU reserved</th>
            <th scope="col">CPU load</th>
          </tr>
        </thead>
        <tbody>
          {workers.map((w) => (
            <tr key={w.id}>
              <td data-label="Worker" title={w.id}>{w.hostname || w.id}</td>
              <td data-label="Provider">{w.provider}</td>
              <td data-label="State">
                <StateBadge state={w.state} />
              </td>
              <td data-label="Jobs">{w.running_jobs}</td>
              <td data-label="CPU reserved">
                {formatNumber(w.used_cpu_cores, 2)} of {formatNumber(w.cpu_cores, 2)} cores
              </td>
              <td data-label="CPU load">
                {w.cpu_percent === null || w.cpu_percent === undefined ? "—" : `${w.cpu_percent.toFixed(0)} %`}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function RecentJobs({ jobs }: { jobs: JobOut[] }) {
  if (jobs.length === 0) return <p className="muted">No jobs yet.</p>;
  return (
    <ul className="recent">
      {jobs.map((job) => (
        <li key={job.id}>
          <Link to={`/jobs/${job.id}`} className="recent-link">
            <span className="recent-name">{job.definition.name || job.id}</span>
            <StateBadge state={job.state} />
            <span className="recent-meta">
              {formatAgo(job.created_at)}
              {job.started_at && ` · ${formatDuration(executionMs(job.started_at, job.finished_at))}`}
            </span>
          </Link>
        </li>
      ))}
    </ul>
  );
}

/** The overview: job counts, system health and the latest jobs, refreshed every 2 s. */
export function Dashboard() {
  useTitle("Dashboard");
  const maySubmit = useCan("submit-jobs");
  const queue = usePolled(getQueue, "queue", REFRESH_MS);
  const system = usePolled(getSystem, "system", REFRESH_MS);
  const workers = usePolled(getWorkers, "workers", REFRESH_MS);
  const recent = usePolled((signal) => listJobs({ pageSize: 5 }, signal), "recent", REFRESH_MS);

  return (
    <div className="page">
      <h1>Dashboard</h1>
      <section aria-labelledby="stats-heading">
        <h2 id="stats-heading" className="sr-only">
          Job counts
        </h2>
        {queue.error !== undefined && <LoadError what="job counts" error={queue.error} />}
        {queue.data ? <StatCards queue={queue.data} /> : queue.loading && <Loading what="job counts" />}
      </section>

      <div className="grid-2">
        <section className="card" data-testid="system-health" aria-labelledby="health-heading">
          <h2 id="health-heading">System Health</h2>
          {system.error !== undefined && <LoadError what="system health" error={system.error} />}
          {system.data ? <HostHealth system={system.data} /> : system.loading && <Loading what="system health" />}
          <h3>Workers</h3>
          {workers.error !== undefined && <LoadError what="workers" error={workers.error} />}
          {workers.data ? <WorkerTable workers={workers.data} /> : workers.loading && <Loading what="workers" />}
        </section>

        <section className="card" aria-labelledby="recent-heading">
          <div className="card-head">
            <h2 id="recent-heading">Recent Executions</h2>
            <Link to="/jobs" className="see-all">
              See All
            </Link>
          </div>
          <div data-testid="recent-executions">
            {recent.error !== undefined && <LoadError what="recent executions" error={recent.error} />}
            {recent.data ? (
              <RecentJobs jobs={recent.data.jobs.slice(0, 5)} />
            ) : (
              recent.loading && <Loading what="recent executions" />
            )}
          </div>
        </section>
      </div>

      {maySubmit && (
        <Link to="/jobs/new" className="fab" aria-label="New job">
          <span aria-hidden="true">+</span>
        </Link>
      )}
    </div>
  );
}
