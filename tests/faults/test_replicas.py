"""Two `hodei server` replicas on one database: both serve the API, workers know both, and when
one is SIGKILLed the other carries on within seconds with the pending and the new jobs."""

from __future__ import annotations

import signal
import time

import pytest

from hodei.v1 import jobs_pb2

from .harness import Platform, check_invariants, numbered, wait_for

pytestmark = pytest.mark.faults


@pytest.mark.timeout(120)
def test_one_replica_dies_and_the_other_carries_on(platform: Platform) -> None:
    first, second = platform.server(), platform.server()
    # One slot each, so that a queue builds up; each dials a different replica first.
    [w1] = platform.workers([first, second], 1, cpus=1)
    [w2] = platform.workers([second, first], 1, cpus=1)

    # Submitted through one replica, read through the other.
    crossed = platform.submit(first, "echo crossed", name="crossed")
    wait_for(
        lambda: platform.get_job(second, crossed).state == jobs_pb2.SUCCEEDED,
        20,
        "the job submitted through the first replica succeeds, as read through the second",
    )
    assert platform.get_job(second, crossed).exit_code == 0

    queued = [
        platform.submit(first, numbered(f"queued-{i}", 8, 0.15), name=f"queued-{i}")
        for i in range(6)
    ]
    wait_for(
        lambda: sum(platform.state(job) == "RUNNING" for job in queued) == 2,
        10,
        "both workers run a job, the rest wait",
    )
    first.send(signal.SIGKILL)
    killed_at = time.monotonic()
    first.wait(10)
    pending = sum(platform.state(job) == "PENDING" for job in queued)
    assert pending >= 2, "jobs were waiting when the replica died"
    fresh = platform.submit(second, "echo fresh", name="fresh")

    platform.wait_state(fresh, timeout=30)
    carried_on = time.monotonic() - killed_at
    for job in queued:
        platform.wait_state(job, timeout=30)
    assert carried_on < 15, f"the surviving replica took {carried_on:.1f} s"
    for i, job in enumerate(queued):
        assert platform.lines(job) == [f"queued-{i} {n}" for n in range(1, 9)]
        assert len(platform.attempts(job)) == 1
    # The worker that dialled the dead replica moved to the other one and kept working.
    workers_used = {platform.attempts(job)[0]["worker_id"] for job in [*queued, fresh]}
    assert workers_used == {w1.worker_id, w2.worker_id}
    assert platform.worker_state(w1.worker_id) == "READY"
    assert platform.get_job(second, fresh).state == jobs_pb2.SUCCEEDED
    check_invariants(platform, dict.fromkeys([crossed, *queued, fresh], "SUCCEEDED"))
