import type { JobEvent } from "../api/types";
import { formatDateTime, formatTime } from "../lib/format";
import { describePayload, retriesOf, type TimelineStep } from "./timeline";

const STATUS_TEXT: Record<TimelineStep["status"], string> = {
  done: "done",
  current: "in progress",
  pending: "pending",
  skipped: "skipped",
  warning: "warning",
};

/** The job's progress as four steps, its retries, and every event behind them. */
export function Timeline({ steps, events }: { steps: TimelineStep[]; events: JobEvent[] }) {
  const retries = retriesOf(events);
  return (
    <div data-testid="timeline">
      <ol className="timeline">
        {steps.map((step) => (
          <li key={step.key} className={`step step-${step.status}`} data-step={step.key} data-status={step.status}>
            <span className="step-dot" aria-hidden="true" />
            <span className="step-label">{step.label}</span>
            <span className="step-time">
              {step.at ? <time dateTime={step.at}>{formatTime(Date.parse(step.at))}</time> : STATUS_TEXT[step.status]}
            </span>
            {step.note && <span className="step-note">{step.note}</span>}
          </li>
        ))}
      </ol>
      {retries.length > 0 && (
        <div className="retries">
          <h3>Retries</h3>
          <ul>
            {retries.map((r) => (
              <li key={`${r.attempt}-${r.at}`}>
                <time dateTime={r.at}>{formatTime(Date.parse(r.at))}</time>: attempt {r.attempt} {r.outcome}
                {r.runAfter && <> — next attempt after {formatDateTime(r.runAfter)}</>}
              </li>
            ))}
          </ul>
        </div>
      )}
      {events.length > 0 && (
        <details className="events">
          <summary>All events ({events.length})</summary>
          <ul>
            {events.map((e) => (
              <li key={e.id}>
                <time dateTime={e.occurred_at}>{formatDateTime(e.occurred_at)}</time> <strong>{e.event_type}</strong>{" "}
                <span className="muted">{describePayload(e)}</span>
              </li>
            ))}
          </ul>
        </details>
      )}
    </div>
  );
}
