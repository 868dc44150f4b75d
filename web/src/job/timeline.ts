// The job's timeline (Queued → Image Pulled → Running → Cleanup) from its recorded events.

import { FINAL_STATES, type JobEvent, type JobOut } from "../api/types";
import { formatDuration } from "../lib/format";

/** "warning": the step happened, but not as asked (an image that was not applied). */
export type StepStatus = "done" | "current" | "pending" | "skipped" | "warning";

export interface TimelineStep {
  key: string;
  label: string;
  status: StepStatus;
  /** ISO time the step happened, when it did. */
  at?: string;
  note?: string;
}

export interface Retry {
  at: string;
  attempt: number;
  outcome: string;
  runAfter: string;
}

const text = (value: unknown): string => (value === undefined || value === null ? "" : String(value));

function lastOf(events: JobEvent[], test: (e: JobEvent) => boolean): JobEvent | undefined {
  for (let i = events.length - 1; i >= 0; i--) if (test(events[i]!)) return events[i];
  return undefined;
}

const isFinalState = (value: unknown) => (FINAL_STATES as readonly unknown[]).includes(value);


const attemptOf = (event: JobEvent | undefined): number | undefined => {
  const attempt = event?.payload.attempt;
  return attempt === undefined || attempt === null ? undefined : Number(attempt);
};

/** "alpine:3 pulled in 2.40 s", or just the image when the pull's duration is not known. */
function pullNote(image: string, durationMs: unknown): string {
  return typeof durationMs === "number" ? `${image} pulled in ${formatDuration(durationMs)}` : image;
}

/**
 * What became of the job's image. The worker records a pull (JobImagePulled) just before the run
 * starts, or, when it ran the job on its host instead, says why in the RUNNING change
 * (payload.image_not_applied); an image that was already on the worker leaves no trace, so a run
 * without either means the image was there.
 */
function imageStep(job: JobOut, events: JobEvent[], running: JobEvent | undefined, final: boolean): TimelineStep {
  const step = { key: "image", label: "Image Pulled" };
  const wanted = job.definition.image;
  let found = lastOf(events, (e) => e.event_type === "JobImagePulled");
  // An event of an earlier attempt says nothing about the image of the latest run.
  const foundAttempt = attemptOf(found);
  const runAttempt = attemptOf(running);
  if (foundAttempt !== undefined && runAttempt !== undefined && foundAttempt < runAttempt) found = undefined;
  const image = text(found?.payload.image) || wanted;

  if (running && text(running.payload.image_not_applied)) {
    return { ...step, status: "warning", at: running.occurred_at, note: `${wanted} not applied: ran on the host` };
  }
  if (found) return { ...step, status: "done", at: found.occurred_at, note: pullNote(image, found.payload.duration_ms) };
  if (!wanted) return { ...step, status: "skipped", note: "no image to pull" };
  const ran = running !== undefined && (job.state === "RUNNING" || final);
  if (ran) return { ...step, status: "done", note: `image present on the worker (${wanted})` };
  if (final) return { ...step, status: "skipped", note: "not pulled" };
  return { ...step, status: "pending", note: `waiting to pull ${wanted}` };
}

/** The four steps with their times; events come oldest first. */
export function buildTimeline(job: JobOut, events: JobEvent[]): TimelineStep[] {
  const final = isFinalState(job.state);
  const created = events.find((e) => e.event_type === "JobCreated");
  const assigned = lastOf(events, (e) => e.event_type === "JobAssigned");
  const running = lastOf(events, (e) => e.event_type === "JobStatusChanged" && e.payload.to === "RUNNING");
  const ended =
    lastOf(events, (e) => e.event_type === "JobStatusChanged" && isFinalState(e.payload.to)) ??
    (job.state === "CANCELLED" ? lastOf(events, (e) => e.event_type === "JobCancelled") : undefined);

  const queued: TimelineStep = {
    key: "queued",
    label: "Queued",
    status: created ? "done" : "pending",
    at: created?.occurred_at,
    note: assigned ? `assigned to worker ${text(assigned.payload.worker_id).slice(0, 8)}` : undefined,
  };
  if (!running && !final && created) queued.status = "current";

  const image = imageStep(job, events, running, final);

  let run: TimelineStep;
  if (running) {
    const attempt = running.payload.attempt;
    run = {
      key: "running",
      label: "Running",
      status: job.state === "RUNNING" ? "current" : "done",
      at: running.occurred_at,
      note: attempt !== undefined && Number(attempt) > 1 ? `attempt ${text(attempt)}` : undefined,
    };
  } else {
    run = { key: "running", label: "Running", status: final ? "skipped" : "pending", note: final ? "did not run" : undefined };
  }

  let cleanup: TimelineStep;
  if (ended) {
    const exit = ended.payload.exit_code;
    const error = text(ended.payload.error);
    const state = text(ended.payload.to) || job.state;
    const details = [state, exit !== undefined && exit !== null ? `exit code ${text(exit)}` : "", error].filter(Boolean);
    cleanup = { key: "cleanup", label: "Cleanup", status: "done", at: ended.occurred_at, note: details.join(" · ") };
  } else {
    cleanup = { key: "cleanup", label: "Cleanup", status: "pending", note: final ? job.state : undefined };
  }
  return [queued, image, run, cleanup];
}

export function retriesOf(events: JobEvent[]): Retry[] {
  return events
    .filter((e) => e.event_type === "JobRetried")
    .map((e) => ({
      at: e.occurred_at,
      attempt: Number(e.payload.attempt ?? 0),
      outcome: text(e.payload.outcome),
      runAfter: text(e.payload.run_after),
    }));
}

/** A one-line summary of an event's payload for the event list. */
export function describePayload(event: JobEvent): string {
  const p = event.payload;
  switch (event.event_type) {
    case "JobStatusChanged":
      return [
        `${text(p.from)} → ${text(p.to)}`,
        p.exit_code !== undefined && p.exit_code !== null ? `exit ${text(p.exit_code)}` : "",
        text(p.error),
        p.image_not_applied ? `image not applied: ${text(p.image_not_applied)}` : "",
      ]
        .filter(Boolean)
        .join(" · ");
    case "JobAssigned":
      return `worker ${text(p.worker_id)}, attempt ${text(p.attempt)}`;
    case "JobRetried":
      return `attempt ${text(p.attempt)} ${text(p.outcome)}; next after ${text(p.run_after)}`;
    case "JobImagePulled":
      return pullNote(text(p.image), p.duration_ms);
    default:
      return Object.entries(p)
        .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : text(v)}`)
        .join(", ");
  }
}
