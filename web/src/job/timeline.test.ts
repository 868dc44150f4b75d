import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { JobEvent, JobOut } from "../api/types";
import { INITIAL_FORM, checkJobForm } from "../forms/jobForm";
import { buildTimeline, retriesOf } from "./timeline";

const definition = checkJobForm({ ...INITIAL_FORM, name: "j", script: "true" }).definition;

function job(state: JobOut["state"], image = ""): JobOut {
  return {
    id: "j1",
    definition: { ...definition, image },
    state,
    attempt: 1,
    worker_id: null,
    created_at: "2025-01-01T00:00:00Z",
    assigned_at: null,
    started_at: null,
    finished_at: null,
    exit_code: null,
    error_message: "",
    log_truncated: false,
  };
}

let id = 0;
const event = (event_type: string, second: number, payload: Record<string, unknown> = {}): JobEvent => ({
  id: ++id,
  occurred_at: `2025-01-01T00:00:${String(second).padStart(2, "0")}Z`,
  event_type,
  actor: "system",
  payload,
});

describe("buildTimeline", () => {
  it("marks a queued job with no image", () => {
    const steps = buildTimeline(job("PENDING"), [event("JobCreated", 0)]);
    assert.deepEqual(steps.map((s) => s.status), ["current", "skipped", "pending", "pending"]);
    assert.equal(steps[1]!.note, "no image to pull");
    assert.equal(steps[0]!.at, "2025-01-01T00:00:00Z");
  });

  it("waits for an image that has not been pulled yet", () => {
    const steps = buildTimeline(job("ASSIGNED", "alpine:3"), [event("JobCreated", 0)]);
    assert.equal(steps[1]!.status, "pending");
  });

  it("takes times from the pull, the last start and the final status change", () => {
    const events = [
      event("JobCreated", 0),
      event("JobAssigned", 1, { worker_id: "w1", attempt: 1 }),
      event("JobImagePulled", 2, { image: "alpine:3" }),
      event("JobStatusChanged", 3, { from: "ASSIGNED", to: "RUNNING", attempt: 1 }),
      event("JobStatusChanged", 4, { from: "RUNNING", to: "PENDING", attempt: 1 }),
      event("JobRetried", 4, { attempt: 1, outcome: "FAILED", run_after: "2025-01-01T00:00:05Z" }),
      event("JobStatusChanged", 6, { from: "ASSIGNED", to: "RUNNING", attempt: 2 }),
      event("JobStatusChanged", 9, { from: "RUNNING", to: "SUCCEEDED", attempt: 2, exit_code: 0 }),
    ];
    const steps = buildTimeline(job("SUCCEEDED", "alpine:3"), events);
    assert.deepEqual(steps.map((s) => s.status), ["done", "done", "done", "done"]);
    assert.deepEqual(steps.map((s) => s.at?.slice(-3)), ["00Z", "02Z", "06Z", "09Z"]);
    assert.match(steps[3]!.note ?? "", /SUCCEEDED · exit code 0/);
    assert.deepEqual(retriesOf(events).map((r) => r.attempt), [1]);
  });

  it("says a job cancelled while queued never ran", () => {
    const events = [
      event("JobCreated", 0),
      event("JobCancelled", 1),
      event("JobStatusChanged", 1, { from: "PENDING", to: "CANCELLED" }),
    ];
    const steps = buildTimeline(job("CANCELLED", "alpine:3"), events);
    assert.deepEqual(steps.map((s) => s.status), ["done", "skipped", "skipped", "done"]);
  });
});
