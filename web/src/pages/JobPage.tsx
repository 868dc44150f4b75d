import { useEffect, useState } from "react";
import { Link, useParams, useSearchParams } from "react-router-dom";
import { cancelJob, getJob, getJobEvents, getJobResources, logDownloadUrl } from "../api/endpoints";
import { isFinal, type JobOut, type JobResources } from "../api/types";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { DefinitionList } from "../components/DefinitionList";
import { StateBadge } from "../components/StateBadge";
import { ActionError, LoadError, Loading } from "../components/Status";
import { Tabs } from "../components/Tabs";
import { JobConfig } from "../job/JobConfig";
import { LogPreview } from "../job/LogPreview";
import { ResourceCharts } from "../job/ResourceCharts";
import { Timeline } from "../job/Timeline";
import { buildTimeline } from "../job/timeline";
import { executionMs, formatDateTime, formatDuration, shortId } from "../lib/format";
import { usePolled, type Polled } from "../lib/usePolled";
import { useTitle } from "../lib/useTitle";
import { useCan } from "../session/SessionContext";

const POLL_MS = 1000;
const LIVE_SAMPLES = 60;

const TABS = [
  { id: "overview", label: "Overview" },
  { id: "config", label: "Config" },
  { id: "logs", label: "Logs" },
  { id: "resources", label: "Resources" },
];

function Summary({ job }: { job: JobOut }) {
  const items: [string, string][] = [
    ["Created", formatDateTime(job.created_at)],
    ["Started", formatDateTime(job.started_at)],
    ["Finished", formatDateTime(job.finished_at)],
    ["Execution time", formatDuration(executionMs(job.started_at, job.finished_at))],
    ["Attempt", String(job.attempt)],
    ["Worker", job.worker_id ? shortId(job.worker_id) : "—"],
  ];
  if (job.exit_code !== null) items.push(["Exit code", String(job.exit_code)]);
  return (
    <>
      <DefinitionList items={items} />
      {job.error_message && (
        <p className="alert alert-warn">
          <strong>Error:</strong> {job.error_message}
        </p>
      )}
    </>
  );
}

function LogLinks({ job }: { job: JobOut }) {
  return (
    <div className="link-row">
      <Link className="button button-primary" to={`/jobs/${encodeURIComponent(job.id)}/logs`}>
        Open full log viewer
      </Link>
      <a className="button" href={logDownloadUrl(job.id)} download>
        Download log
      </a>
    </div>
  );
}

function ResourcesPanel({ resources, span, live }: { resources: Polled<JobResources>; span: string; live: boolean }) {
  if (resources.data === undefined) {
    return (
      <>
        {resources.error !== undefined && <LoadError what="resource use" error={resources.error} />}
        {resources.loading && <Loading what="resource use" />}
      </>
    );
  }
  const samples = live ? resources.data.samples.slice(-LIVE_SAMPLES) : resources.data.samples;
  return (
    <>
      {resources.error !== undefined && <LoadError what="resource use" error={resources.error} />}
      <ResourceCharts samples={samples} span={span} height={live ? 160 : 240} />
    </>
  );
}

/** One job: its state, timeline, resources, config and latest log lines, live while it runs. */
export function JobPage() {
  const { jobId = "" } = useParams();
  const [params, setParams] = useSearchParams();
  const tab = TABS.some((t) => t.id === params.get("tab")) ? params.get("tab")! : "overview";
  const [confirming, setConfirming] = useState(false);
  const [cancelling, setCancelling] = useState(false);
  const [cancelError, setCancelError] = useState<unknown>(undefined);
  const mayCancel = useCan("cancel-jobs");

  // Poll while the job lives; once it has ended, one more load catches its last events.
  const [ended, setEnded] = useState(false);
  const interval = ended ? null : POLL_MS;
  const job = usePolled((signal) => getJob(jobId, signal), jobId, interval);
  const final = job.data ? isFinal(job.data.state) : false;
  useEffect(() => setEnded(final), [final]);
  const events = usePolled((signal) => getJobEvents(jobId, signal), jobId, interval);
  const resources = usePolled((signal) => getJobResources(jobId, signal), jobId, interval);
  useTitle(job.data?.definition.name ?? "Job");

  const { reload: reloadEvents } = events;
  const { reload: reloadResources } = resources;
  useEffect(() => {
    if (final) {
      reloadEvents();
      reloadResources();
    }
  }, [final, reloadEvents, reloadResources]);

  if (!job.data) {
    return (
      <div className="page">
        <h1>Job {jobId}</h1>
        {job.error !== undefined && <LoadError what="the job" error={job.error} />}
        {job.loading && <Loading what="the job" />}
      </div>
    );
  }

  const data = job.data;
  const active = !isFinal(data.state);
  const onCancel = async () => {
    setCancelling(true);
    setCancelError(undefined);
    try {
      await cancelJob(data.id);
    } catch (error) {
      setCancelError(error);
    } finally {
      setCancelling(false);
      setConfirming(false);
      job.reload();
      events.reload();
    }
  };

  return (
    <div className="page">
      <div className="page-head">
        <div>
          <h1>{data.definition.name || data.id}</h1>
          <p className="muted mono small">{data.id}</p>
        </div>
        <div className="head-actions">
          <StateBadge state={data.state} testId="job-state" />
          {active && mayCancel && (
            <button type="button" className="button button-danger" onClick={() => setConfirming(true)}>
              Cancel Job
            </button>
          )}
        </div>
      </div>
      {job.error !== undefined && <LoadError what="the job's latest state" error={job.error} />}
      {cancelError !== undefined && <ActionError action="cancel the job" error={cancelError} />}
      {data.notice && (
        <p className="alert alert-warn" data-testid="job-notice">
          <strong>Note:</strong> {data.notice}
        </p>
      )}
      <Summary job={data} />

      <Tabs
        label="Job details"
        tabs={TABS}
        active={tab}
        onSelect={(id) => setParams(id === "overview" ? {} : { tab: id }, { replace: true })}
      >
        {tab === "overview" && (
          <>
            <section className="card" aria-labelledby="timeline-heading">
              <h2 id="timeline-heading">Timeline</h2>
              {events.error !== undefined && <LoadError what="the job's events" error={events.error} />}
              {events.data ? (
                <Timeline steps={buildTimeline(data, events.data)} events={events.data} />
              ) : (
                events.loading && <Loading what="the timeline" />
              )}
            </section>
            <section className="card" aria-labelledby="live-heading">
              <h2 id="live-heading">Live Resources</h2>
              <ResourcesPanel resources={resources} span={active ? "the last minute" : "the last minute of the run"} live />
            </section>
            <section className="card" aria-labelledby="latest-heading">
              <h2 id="latest-heading">Latest Logs</h2>
              <LogPreview jobId={data.id} />
              <LogLinks job={data} />
            </section>
          </>
        )}
        {tab === "config" && <JobConfig job={data} />}
        {tab === "logs" && (
          <section className="card" aria-labelledby="logs-heading">
            <h2 id="logs-heading">Logs</h2>
            <p>
              The full log streams live in the log viewer, with search, level filters and pause. The download is the
              whole log as a text file.
            </p>
            {data.log_truncated && (
              <p className="alert alert-warn">The log reached its size cap: later output was not kept.</p>
            )}
            <LogLinks job={data} />
          </section>
        )}
        {tab === "resources" && (
          <section className="card" aria-labelledby="resources-heading">
            <h2 id="resources-heading">Resources</h2>
            <ResourcesPanel resources={resources} span="the whole run" live={false} />
            {resources.data && (
              <p className="muted small">
                {resources.data.samples.length === 1 ? "1 sample" : `${resources.data.samples.length} samples`}, one a second{resources.data.job_finished ? "; the job has finished" : ""}.
              </p>
            )}
          </section>
        )}
      </Tabs>

      {confirming && (
        <ConfirmDialog
          title="Cancel this job?"
          confirmLabel="Cancel job"
          dismissLabel="Keep running"
          busy={cancelling}
          onConfirm={onCancel}
          onDismiss={() => setConfirming(false)}
        >
          <p>
            “{data.definition.name}” will be stopped. Its output so far is kept.
          </p>
        </ConfirmDialog>
      )}
    </div>
  );
}
