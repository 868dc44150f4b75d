"""Cancelling a RUNNING job through each door (CLI, gRPC, REST): it ends CANCELLED and no
process of it survives; one that ignores SIGTERM is killed once the grace period is over."""

from __future__ import annotations

import urllib.request

import grpc
import pytest

from hodei.v1 import jobs_pb2, jobs_pb2_grpc

from .harness import (
    CANCEL_GRACE_S,
    HODEI,
    MARK_PIDS,
    Platform,
    Server,
    check_invariants,
    gone,
    run,
    wait_for,
)

pytestmark = pytest.mark.faults


def cancel_with_cli(server: Server, job_id: str) -> None:
    result = run([HODEI, "job", "cancel", job_id, "--server", server.address])
    assert result.returncode == 0, result.stderr
    assert "cancel requested" in result.stderr


def cancel_with_grpc(server: Server, job_id: str) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = jobs_pb2_grpc.JobExecutionServiceStub(channel)
        job = stub.CancelJob(jobs_pb2.CancelJobRequest(job_id=job_id), timeout=10)
    assert job.state in (jobs_pb2.RUNNING, jobs_pb2.CANCELLED)


def cancel_with_rest(server: Server, job_id: str) -> None:
    request = urllib.request.Request(f"{server.http}/api/v1/jobs/{job_id}/cancel", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


@pytest.mark.parametrize(
    "cancel",
    [cancel_with_cli, cancel_with_grpc, cancel_with_rest],
    ids=["cli", "grpc", "rest"],
)
def test_cancel_a_running_job(platform: Platform, cancel: object) -> None:
    server = platform.server()
    platform.worker([server])
    job = platform.submit(server, MARK_PIDS + "wait", name="to cancel")
    processes = platform.wait_running(job)

    cancel(server, job)  # type: ignore[operator]
    ended = platform.wait_state(job, timeout=10)

    assert ended["state"] == "CANCELLED"
    [request] = platform.events(job, "JobCancelled")
    assert request["payload"]["state"] == "RUNNING"
    took = (ended["finished_at"] - request["occurred_at"]).total_seconds()
    assert took < CANCEL_GRACE_S, f"a job that obeys SIGTERM took {took:.1f} s to cancel"
    assert gone(processes)
    check_invariants(platform, {job: "CANCELLED"})


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace(platform: Platform) -> None:
    server = platform.server()
    platform.worker([server])
    script = (
        "trap 'echo TERM ignored' TERM; "
        # The grandchild ignores SIGTERM as well (an ignored signal stays ignored across exec).
        'echo "pid $$"; (trap "" TERM; exec sleep 60) & echo "child $!"; '
        "while :; do sleep 0.1; done"
    )
    job = platform.submit(server, script, name="stubborn")
    processes = platform.wait_running(job)

    cancel_with_grpc(server, job)
    wait_for(lambda: "TERM ignored" in platform.lines(job), CANCEL_GRACE_S, "SIGTERM arrives")
    assert not gone(processes), "SIGTERM alone must not have stopped it"
    ended = platform.wait_state(job, timeout=CANCEL_GRACE_S + 10)

    assert ended["state"] == "CANCELLED"
    [request] = platform.events(job, "JobCancelled")
    took = (ended["finished_at"] - request["occurred_at"]).total_seconds()
    assert CANCEL_GRACE_S <= took < CANCEL_GRACE_S + 3, f"cancelled after {took:.1f} s"
    assert gone(processes)
    [attempt] = platform.attempts(job)
    assert attempt["exit_code"] == 128 + 9  # SIGKILL
    check_invariants(platform, {job: "CANCELLED"})
