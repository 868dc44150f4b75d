import { useCallback, useEffect, useLayoutEffect, useRef, useState, type CSSProperties, type ReactNode } from "react";
import { Link, useParams } from "react-router-dom";
import { getJob, logDownloadUrl } from "../api/endpoints";
import { isFinal, type LogLevel } from "../api/types";
import { StateBadge } from "../components/StateBadge";
import { LoadError } from "../components/Status";
import { VirtualList, type VirtualListHandle } from "../components/VirtualList";
import { useFrameTick } from "../lib/useFrameTick";
import { usePolled } from "../lib/usePolled";
import { useTitle } from "../lib/useTitle";
import { FLAG_INVALID_UTF8, FLAG_STDERR, FilteredView, LEVELS, LogStore, searchPattern } from "../logs/logStore";
import { describeStatus, useLogStream } from "../logs/useLogStream";

const ROW_HEIGHT = 20;
/** Characters of a line drawn in its row; the whole line is in the row's title. */
const DRAWN_CHARS = 1000;
const SEARCH_DELAY_MS = 150;

const pad = (n: number, width = 2) => String(n).padStart(width, "0");
function clock(ms: number): string {
  if (!ms) return "--:--:--.---";
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** The text with each match of the search marked. */
function highlighted(text: string, pattern: RegExp | null): ReactNode {
  if (!pattern) return text;
  const global = new RegExp(pattern.source, "gi");
  const parts: ReactNode[] = [];
  let last = 0;
  for (const match of text.matchAll(global)) {
    const at = match.index ?? 0;
    if (match[0].length === 0) break;
    parts.push(text.slice(last, at), <mark key={at}>{match[0]}</mark>);
    last = at + match[0].length;
  }
  parts.push(text.slice(last));
  return parts;
}

function useDebounced<T>(value: T, ms: number): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = window.setTimeout(() => setSettled(value), ms);
    return () => window.clearTimeout(timer);
  }, [value, ms]);
  return settled;
}

/** The terminal-style live log of one job; a new job id gets a new, empty viewer. */
export function LogsViewer() {
  const { jobId = "" } = useParams();
  return <LogsViewerFor key={jobId} jobId={jobId} />;
}

function LogsViewerFor({ jobId }: { jobId: string }) {
  const store = useRef(new LogStore()).current;
  const view = useRef(new FilteredView()).current;
  const listRef = useRef<VirtualListHandle>(null);
  const [, bump] = useFrameTick();
  const [paused, setPaused] = useState(false);
  const [pausedAt, setPausedAt] = useState(0);
  const [search, setSearch] = useState("");
  const [level, setLevel] = useState<"" | LogLevel>("");
  const [autoScroll, setAutoScroll] = useState(true);
  const scrolledAway = useRef(false);
  const text = useDebounced(search, SEARCH_DELAY_MS);

  const [jobEnded, setJobEnded] = useState(false);
  const job = usePolled((signal) => getJob(jobId, signal), jobId, jobEnded ? null : 2000);
  const jobFinal = job.data ? isFinal(job.data.state) : false;
  useEffect(() => setJobEnded(jobFinal), [jobFinal]);
  useTitle(job.data ? `Logs · ${job.data.definition.name}` : "Logs");

  const status = useLogStream(
    jobId,
    (lines) => {
      if (store.append(lines) > 0) bump();
    },
    () => store.lastSequence + 1,
  );

  const limit = paused ? Math.min(pausedAt, store.length) : store.length;
  const matches = view.update(store, { level, text }, limit);
  const shown = matches ? matches.length : limit;
  const buffered = store.length - limit;
  const pattern = searchPattern(text);

  useLayoutEffect(() => {
    if (autoScroll) listRef.current?.scrollToBottom();
  }, [shown, autoScroll]);

  const onScrolled = useCallback(
    (atBottom: boolean) => {
      if (!atBottom && autoScroll) {
        scrolledAway.current = true;
        setAutoScroll(false);
      } else if (atBottom && !autoScroll && scrolledAway.current) {
        // Back at the end after scrolling away: follow again.
        scrolledAway.current = false;
        setAutoScroll(true);
      }
    },
    [autoScroll],
  );

  const togglePause = () => {
    if (paused) {
      setPaused(false);
    } else {
      setPausedAt(store.length);
      setPaused(true);
    }
  };

  const clear = () => {
    store.clear();
    setPausedAt(0);
    bump();
  };

  const renderRow = (row: number, style: CSSProperties) => {
    const i = matches ? matches[row]! : row;
    const line = store.lines[i] ?? "";
    const lineLevel = store.level(i);
    const flags = store.flags[i] ?? 0;
    return (
      <div
        key={store.sequences[i]}
        style={style}
        className={`term-line level-${lineLevel.toLowerCase()}`}
        data-testid="log-line"
        data-level={lineLevel}
        data-sequence={store.sequences[i]}
        title={line}
      >
        <span className="term-time">{clock(store.times[i] ?? 0)}</span>
        <span className="term-level">{lineLevel}</span>
        {(flags & FLAG_STDERR) !== 0 && <span className="term-stream">err</span>}
        {(flags & FLAG_INVALID_UTF8) !== 0 && (
          <span className="term-stream" title="This line had bytes that are not valid UTF-8">
            bin
          </span>
        )}
        <span className="term-text">{highlighted(line.length > DRAWN_CHARS ? line.slice(0, DRAWN_CHARS) : line, pattern)}</span>
      </div>
    );
  };

  const statusText = describeStatus(status);
  const name = job.data?.definition.name ?? jobId;

  return (
    <div className="page logs-page">
      <div className="page-head">
        <div>
          <h1>Logs: {name}</h1>
          <p className="small">
            <Link to={`/jobs/${encodeURIComponent(jobId)}`}>Back to the job</Link>
            {" · "}
            <a href={logDownloadUrl(jobId)} download>
              Download log
            </a>
          </p>
        </div>
        <div className="head-actions">
          {job.data && <StateBadge state={job.data.state} />}
          <span className={`stream-status stream-${status.kind}`} data-testid="log-status" role="status">
            {statusText}
          </span>
        </div>
      </div>
      {job.error !== undefined && <LoadError what="the job" error={job.error} />}
      {status.kind === "reconnecting" && status.failures >= 3 && (
        <div role="alert" className="alert alert-error">
          Could not load the live log: {status.reason}; retrying in {Math.round(status.delayMs / 1000)} s.
        </div>
      )}
      {job.data?.log_truncated && (
        <p className="alert alert-warn">The log reached its size cap: later output was not kept.</p>
      )}

      <div className="log-toolbar" role="toolbar" aria-label="Log controls">
        <div className="field inline">
          <label htmlFor="log-search">Search logs</label>
          <input
            id="log-search"
            type="search"
            value={search}
            placeholder="text to find"
            autoComplete="off"
            spellCheck={false}
            onChange={(e) => setSearch(e.target.value)}
          />
        </div>
        <div className="field inline">
          <label htmlFor="log-level">Level</label>
          <select id="log-level" value={level} onChange={(e) => setLevel(e.target.value as "" | LogLevel)}>
            <option value="">All</option>
            {LEVELS.map((l) => (
              <option key={l} value={l}>
                {l}
              </option>
            ))}
          </select>
        </div>
        <div className="toolbar-buttons">
          <button type="button" className="button" onClick={togglePause} aria-pressed={paused}>
            {paused ? "Resume" : "Pause"}
          </button>
          <button type="button" className="button" onClick={clear}>
            Clear
          </button>
          <button
            type="button"
            className="button"
            onClick={() => {
              listRef.current?.scrollToBottom();
            }}
          >
            Scroll to bottom
          </button>
          <div className="check">
            <input
              id="log-autoscroll"
              type="checkbox"
              checked={autoScroll}
              onChange={(e) => {
                scrolledAway.current = false;
                setAutoScroll(e.target.checked);
              }}
            />
            <label htmlFor="log-autoscroll">Auto-scroll</label>
          </div>
        </div>
      </div>

      <p className="log-meta small">
        <span data-testid="log-count">
          {shown} of {limit} lines
        </span>
        {paused && (
          <span className="paused-note">
            {" "}
            · paused{buffered > 0 ? `, ${buffered} new lines waiting` : ""}
          </span>
        )}
      </p>

      <VirtualList
        ref={listRef}
        className="terminal terminal-full"
        count={shown}
        rowHeight={ROW_HEIGHT}
        renderRow={renderRow}
        onScrolled={onScrolled}
        label="Job log"
        testId="log-view"
      />
      {shown === 0 && (
        <p className="muted small">
          {store.length === 0 && status.kind === "ended" ? "The job wrote no output." : limit > 0 ? "No line matches the filter." : "Waiting for output…"}
        </p>
      )}
    </div>
  );
}
