import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { JobEvent, JobOut } from "../api/types";
import { INITIAL_FORM, checkJobForm } from "../forms/jobForm";
import { buildTimeline, describePayload, retriesOf } from "./timeline";

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
    notice: "",
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
    assert.equal(steps[1]!.note, "waiting to pull alpine:3");
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

  it("says how long the pull of the image took", () => {
    const events = [
      event("JobCreated", 0),
      event("JobAssigned", 1, { worker_id: "w1", attempt: 1 }),
      event("JobImagePulled", 2, { image: "alpine:3", attempt: 1, duration_ms: 2400 }),
      event("JobStatusChanged", 5, { from: "ASSIGNED", to: "RUNNING", attempt: 1 }),
    ];
    const image = buildTimeline(job("RUNNING", "alpine:3"), events)[1]!;
    assert.equal(image.status, "done");
    assert.equal(image.at, "2025-01-01T00:00:02Z");
    assert.equal(image.note, "alpine:3 pulled in 2.40 s");
    assert.equal(describePayload(events[2]!), "alpine:3 pulled in 2.40 s");
  });

  it("warns that an image was not applied when the job ran on the host", () => {
    const events = [
      event("JobCreated", 0),
      event("JobAssigned", 1, { worker_id: "w1", attempt: 1 }),
      event("JobStatusChanged", 2, { from: "ASSIGNED", to: "RUNNING", attempt: 1, image_not_applied: "it ran as a process on the worker's host" }),
      event("JobStatusChanged", 3, { from: "RUNNING", to: "SUCCEEDED", attempt: 1, exit_code: 0 }),
    ];
    const steps = buildTimeline(job("SUCCEEDED", "alpine:latest"), events);
    assert.deepEqual(steps.map((s) => s.status), ["done", "warning", "done", "done"]);
    assert.equal(steps[1]!.note, "alpine:latest not applied: ran on the host");
    assert.equal(steps[1]!.at, "2025-01-01T00:00:02Z");
    assert.match(describePayload(events[2]!), /image not applied: it ran as a process/);
  });

  it("says the image was present when the job ran without a pull", () => {
    const events = [
      event("JobCreated", 0),
      event("JobAssigned", 1, { worker_id: "w1", attempt: 1 }),
      event("JobStatusChanged", 2, { from: "ASSIGNED", to: "RUNNING", attempt: 1 }),
    ];
    for (const state of ["RUNNING", "SUCCEEDED"] as const) {
      const image = buildTimeline(job(state, "alpine:3"), events)[1]!;
      assert.equal(image.status, "done", state);
      assert.equal(image.note, "image present on the worker (alpine:3)", state);
    }
  });

  it("keeps an earlier attempt's pull out of the latest run", () => {
    const events = [
      event("JobCreated", 0),
      event("JobImagePulled", 1, { image: "alpine:3", attempt: 1, duration_ms: 900 }),
      event("JobStatusChanged", 2, { from: "ASSIGNED", to: "RUNNING", attempt: 1 }),
      event("JobStatusChanged", 3, { from: "RUNNING", to: "PENDING", attempt: 1 }),
      event("JobStatusChanged", 4, { from: "ASSIGNED", to: "RUNNING", attempt: 2 }),
    ];
    const image = buildTimeline(job("RUNNING", "alpine:3"), events)[1]!;
    assert.equal(image.note, "image present on the worker (alpine:3)");
    assert.equal(image.at, undefined);
  });

  it("says a job cancelled while queued never ran", () => {
    const events = [
      event("JobCreated", 0),
      event("JobCancelled", 1),
      event("JobStatusChanged", 1, { from: "PENDING", to: "CANCELLED" }),
    ];
    const steps = buildTimeline(job("CANCELLED", "alpine:3"), events);
    assert.deepEqual(steps.map((s) => s.status), ["done", "skipped", "skipped", "done"]);
    assert.equal(steps[1]!.note, "not pulled");
  });
});
