"""Timeouts on both sides: the worker kills a job at its timeout_ms, and the server ends an
attempt whose deadline (plus its grace) passed with no word from the worker."""

from __future__ import annotations

import signal
from datetime import UTC, datetime

import pytest

from .harness import MARK_PIDS, Platform, check_invariants, gone, wait_for

pytestmark = pytest.mark.faults

TIMEOUT_MS = 1500


def test_the_worker_kills_a_job_at_its_timeout(platform: Platform) -> None:
    server = platform.server()
    platform.worker([server])
    job = platform.submit(server, MARK_PIDS + "wait", name="slow", timeout_ms=TIMEOUT_MS)
    processes = platform.wait_running(job)

    ended = platform.wait_state(job, timeout=10)

    assert ended["state"] == "TIMEOUT"
    assert ended["error_message"] == f"timed out after {TIMEOUT_MS} ms"
    ran = (ended["finished_at"] - ended["started_at"]).total_seconds()
    assert TIMEOUT_MS / 1000 <= ran < TIMEOUT_MS / 1000 + 1.5, f"ran {ran:.2f} s"
    assert gone(processes)
    [attempt] = platform.attempts(job)
    assert attempt["state"] == "TIMEOUT"
    check_invariants(platform, {job: "TIMEOUT"})


@pytest.mark.timeout(90)
def test_the_server_times_out_a_job_whose_worker_says_nothing(platform: Platform) -> None:
    # The lease is longer than timeout + grace, so that the silence reads as a timeout, not as
    # a lost worker; the grace must exceed the worker's own SIGTERM-to-SIGKILL grace.
    grace_s, timeout_ms = 1.0, 3000
    server = platform.server(
        env={
            "HODEI_TIMEOUT_GRACE_S": str(grace_s),
            "HODEI_CANCEL_GRACE_S": "0.5",
            "HODEI_LEASE_TTL_S": "8",
        }
    )
    worker = platform.worker([server])
    job = platform.submit(server, MARK_PIDS + "wait", name="silent", timeout_ms=timeout_ms)
    processes = platform.wait_running(job)
    worker.send(signal.SIGSTOP)  # before its own timer fires: it will say nothing
    assert (datetime.now(UTC) - platform.job(job)["started_at"]).total_seconds() < 2
    try:
        ended = platform.wait_state(job, timeout=10)
        assert ended["state"] == "TIMEOUT"
        assert "no result from the worker by the deadline" in ended["error_message"]
        overdue = (ended["finished_at"] - ended["started_at"]).total_seconds()
        # The reaper looks once a second.
        assert timeout_ms / 1000 + grace_s <= overdue < timeout_ms / 1000 + grace_s + 3
        assert not gone(processes), "the job itself runs on while its worker is frozen"
    finally:
        worker.send(signal.SIGCONT)

    # Back, the worker is told to stop the attempt; what it reports then changes nothing.
    wait_for(lambda: gone(processes), 10, "the thawed worker kills the job")
    [attempt] = platform.attempts(job)
    assert attempt["state"] == "TIMEOUT"
    assert platform.job(job)["error_message"] == ended["error_message"]
    check_invariants(platform, {job: "TIMEOUT"})
