import { useEffect, useRef, useState } from "react";
import { isAbort } from "../api/client";
import { getJobLogs } from "../api/endpoints";
import type { LogLineOut } from "../api/types";
import { LoadError } from "../components/Status";
import { formatTime } from "../lib/format";
import { fetchTail } from "../logs/tail";
import { describeStatus, useLogStream } from "../logs/useLogStream";

const KEEP = 20;

/** The last lines of a job's log, following it live from where it stands. */
export function LogPreview({ jobId }: { jobId: string }) {
  const [lines, setLines] = useState<LogLineOut[]>([]);
  const [located, setLocated] = useState(false);
  const [tailError, setTailError] = useState<unknown>(undefined);
  const lastSequence = useRef(-1);

  // Find the end of the log first, so a long log is not streamed whole for twenty lines.
  useEffect(() => {
    const controller = new AbortController();
    fetchTail((after, limit) => getJobLogs(jobId, after, limit, controller.signal), KEEP)
      .then((tail) => {
        lastSequence.current = tail.lastSequence;
        setLines(tail.lines);
        setLocated(true);
      })
      .catch((error: unknown) => {
        if (isAbort(error)) return;
        setTailError(error);
        setLocated(true);
      });
    return () => controller.abort();
  }, [jobId]);

  const status = useLogStream(
    jobId,
    (batch) => {
      const fresh = batch.filter((l) => l.sequence > lastSequence.current);
      if (fresh.length === 0) return;
      lastSequence.current = fresh[fresh.length - 1]!.sequence;
      setLines((previous) => [...previous, ...fresh.slice(-KEEP)].slice(-KEEP));
    },
    () => lastSequence.current + 1,
    located,
  );

  return (
    <div>
      {tailError !== undefined && <LoadError what="the end of the log" error={tailError} />}
      {status.kind === "reconnecting" && status.failures >= 3 && (
        <div role="alert" className="alert alert-error">
          Could not load the latest log lines: {status.reason}; retrying.
        </div>
      )}
      <p className="muted small">
        Stream: <span data-testid="preview-status">{located ? describeStatus(status) : "finding the end of the log…"}</span>
      </p>
      <div className="terminal terminal-preview" aria-label="Latest log lines">
        {lines.length === 0 ? (
          <div className="terminal-empty">{status.kind === "ended" ? "The job wrote no output." : "No output yet."}</div>
        ) : (
          lines.map((l) => (
            <div key={l.sequence} className={`term-line level-${l.level.toLowerCase()}`} data-level={l.level}>
              <span className="term-time">{formatTime(Date.parse(l.timestamp))}</span>
              <span className="term-level">{l.level}</span>
              <span className="term-text">{l.line}</span>
            </div>
          ))
        )}
      </div>
    </div>
  );
}
