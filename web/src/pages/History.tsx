import { useState, type FormEvent } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { listJobs } from "../api/endpoints";
import { JOB_STATES, type JobState } from "../api/types";
import { StateBadge } from "../components/StateBadge";
import { LoadError, Loading } from "../components/Status";
import { executionMs, formatDateTime, formatDuration, shortId } from "../lib/format";
import { usePolled } from "../lib/usePolled";
import { useTitle } from "../lib/useTitle";

const PAGE_SIZE = 50;
const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** Local midnight of a YYYY-MM-DD day, `plusDays` later, as an ISO time. */
function dayStart(day: string, plusDays = 0): string | undefined {
  if (!DAY.test(day)) return undefined;
  const [y, m, d] = day.split("-").map(Number) as [number, number, number];
  return new Date(y, m - 1, d + plusDays).toISOString();
}

interface Filters {
  state: string;
  name: string;
  from: string;
  to: string;
}

function filtersFrom(params: URLSearchParams): Filters {
  const state = params.get("state") ?? "";
  return {
    state: (JOB_STATES as readonly string[]).includes(state) ? state : "",
    name: params.get("name") ?? "",
    from: params.get("from") ?? "",
    to: params.get("to") ?? "",
  };
}

/** Every job, newest first, filtered by state, creation day and name, 50 to a page. */
export function History() {
  useTitle("Jobs");
  const [params, setParams] = useSearchParams();
  const applied = filtersFrom(params);
  const appliedKey = JSON.stringify(applied);
  const [draft, setDraft] = useState<Filters>(applied);
  const [draftKey, setDraftKey] = useState(appliedKey);
  const [rangeError, setRangeError] = useState("");
  // Keyset pagination: the token of the page shown and those of the pages before it.
  const [pages, setPages] = useState<{ key: string; tokens: string[] }>({ key: appliedKey, tokens: [""] });

  // The URL changed (Apply, back/forward): show its filters and start from the first page.
  if (draftKey !== appliedKey) {
    setDraftKey(appliedKey);
    setDraft(applied);
  }
  const tokens = pages.key === appliedKey ? pages.tokens : [""];
  const token = tokens[tokens.length - 1] ?? "";

  const jobs = usePolled(
    (signal) =>
      listJobs(
        {
          states: applied.state ? [applied.state as JobState] : [],
          name: applied.name.trim(),
          createdAfter: dayStart(applied.from),
          createdBefore: dayStart(applied.to, 1),
          pageSize: PAGE_SIZE,
          pageToken: token,
        },
        signal,
      ),
    `${appliedKey}|${token}`,
  );

  const apply = (event: FormEvent) => {
    event.preventDefault();
    if (draft.from && draft.to && draft.from > draft.to) {
      setRangeError("To must not be before From");
      return;
    }
    setRangeError("");
    const next = new URLSearchParams();
    for (const [key, value] of Object.entries(draft)) if (value.trim()) next.set(key, value.trim());
    setParams(next);
    setPages({ key: JSON.stringify(filtersFrom(next)), tokens: [""] });
    if (next.toString() === params.toString()) jobs.reload();
  };

  const nextToken = jobs.data?.next_page_token ?? "";
  const goNext = () => setPages({ key: appliedKey, tokens: [...tokens, nextToken] });
  const goPrevious = () => setPages({ key: appliedKey, tokens: tokens.slice(0, -1) });
  const pageNumber = tokens.length;

  return (
    <div className="page">
      <h1>Jobs</h1>
      <form className="filters" onSubmit={apply} aria-label="Filter jobs">
        <div className="field">
          <label htmlFor="filter-state">State</label>
          <select id="filter-state" value={draft.state} onChange={(e) => setDraft({ ...draft, state: e.target.value })}>
            <option value="">All states</option>
            {JOB_STATES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="filter-name">Name</label>
          <input
            id="filter-name"
            type="search"
            value={draft.name}
            placeholder="part of the name"
            onChange={(e) => setDraft({ ...draft, name: e.target.value })}
          />
        </div>
        <div className="field">
          <label htmlFor="filter-from">From</label>
          <input id="filter-from" type="date" value={draft.from} onChange={(e) => setDraft({ ...draft, from: e.target.value })} />
        </div>
        <div className="field">
          <label htmlFor="filter-to">To</label>
          <input
            id="filter-to"
            type="date"
            value={draft.to}
            aria-invalid={rangeError ? true : undefined}
            aria-describedby={rangeError ? "error-to" : undefined}
            onChange={(e) => setDraft({ ...draft, to: e.target.value })}
          />
          {rangeError && (
            <p className="field-error" role="alert" id="error-to">
              {rangeError}
            </p>
          )}
        </div>
        <div className="filter-actions">
          <button type="submit" className="button button-primary">
            Apply
          </button>
        </div>
      </form>

      {jobs.error !== undefined && <LoadError what="the jobs" error={jobs.error} />}
      {jobs.loading && !jobs.data && <Loading what="jobs" />}
      {jobs.data && (
        <>
          {jobs.data.jobs.length === 0 ? (
            <p className="muted">No jobs match.</p>
          ) : (
            <div className="table-wrap">
              <table className="table jobs-table" aria-busy={jobs.loading}>
                <caption className="sr-only">Jobs, newest first, page {pageNumber}</caption>
                <thead>
                  <tr>
                    <th scope="col">ID</th>
                    <th scope="col">Name</th>
                    <th scope="col">State</th>
                    <th scope="col">Execution time</th>
                    <th scope="col">Created</th>
                  </tr>
                </thead>
                <tbody>
                  {jobs.data.jobs.map((job) => (
                    <tr key={job.id} data-testid="job-row" data-job-id={job.id}>
                      <td data-label="ID" className="mono" title={job.id}>
                        {shortId(job.id)}
                      </td>
                      <td data-label="Name">
                        <Link to={`/jobs/${encodeURIComponent(job.id)}`}>{job.definition.name || job.id}</Link>
                      </td>
                      <td data-label="State">
                        <StateBadge state={job.state} />
                      </td>
                      <td data-label="Execution time">{formatDuration(executionMs(job.started_at, job.finished_at))}</td>
                      <td data-label="Created">
                        <time dateTime={job.created_at}>{formatDateTime(job.created_at)}</time>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </>
      )}
      <nav className="pager" aria-label="Pages">
        <button type="button" className="button" onClick={goPrevious} disabled={tokens.length <= 1}>
          Previous page
        </button>
        <span className="muted">Page {pageNumber}</span>
        <button type="button" className="button" onClick={goNext} disabled={!nextToken || jobs.loading}>
          Next page
        </button>
      </nav>
    </div>
  );
}
