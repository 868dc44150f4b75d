"""Fencing: a worker that comes back from the dead cannot overwrite a newer attempt.

Worker A is frozen (SIGSTOP) while it runs attempt 1 of a job that allows retries; the job's
process prints on into A's pipe. A's lease runs out, the job runs again on worker B, and A is
thawed while attempt 2 still runs: what A then says about attempt 1 (the lines printed while it
was frozen, its result) is refused, and the job ends as attempt 2 says.
"""

from __future__ import annotations

import signal
import time

import psutil
import pytest

from hodei.v1 import jobs_pb2

from .harness import (
    LEASE_TTL_S,
    Platform,
    Server,
    check_invariants,
    gate,
    gone,
    printed_processes,
    wait_for,
)

pytestmark = pytest.mark.faults


@pytest.mark.timeout(90)
def test_a_worker_back_from_the_dead_cannot_overwrite_a_newer_attempt(
    platform: Platform,
) -> None:
    blocker_gate, second_gate = platform.root / "release-b", platform.root / "finish-second"
    server = platform.server(env={"HODEI_LOG_LEVEL": "debug"})  # refusals log at debug
    # B is there all along but busy, so that the retry can go nowhere until the test says.
    b = platform.worker([server], cpus=1)
    blocker = platform.submit(server, gate(blocker_gate) + "echo unblocked", name="blocker")
    platform.wait_state(blocker, "RUNNING")
    a = platform.worker([server], cpus=1)
    job = platform.submit(
        server,
        'if [ "$HODEI_JOB_ATTEMPT" = 1 ]; then echo "pid $$"; i=0; '
        'while :; do i=$((i + 1)); echo "first $i"; sleep 0.1; done; fi; '
        'echo "second starts"; ' + gate(second_gate) + 'echo "second ends"',
        name="fenced",
        retry=3,
    )
    [first_shell] = wait_for(
        lambda: printed_processes(platform, job), 20, "attempt 1 prints its pid"
    )
    # Without the claim's heartbeat check the dispatcher would hand the retry back to frozen A:
    # HIGH job waits, and takes the slot on A that the lost attempt frees (the retry waits out
    # its backoff), so that the retry can only go to B.
    decoy = platform.submit(server, "echo decoy", name="decoy", priority=jobs_pb2.HIGH)
    assert platform.state(decoy) == "PENDING"

    a.send(signal.SIGSTOP)
    frozen_at = time.monotonic()
    wait_for(
        lambda: platform.attempts(job)[0]["state"] == "LOST",
        LEASE_TTL_S + 5,
        "attempt 1 is declared lost",
    )
    assert time.monotonic() - frozen_at < LEASE_TTL_S + 3
    first_lines = platform.lines(job, attempt=1)
    assert first_lines[0] == f"pid {first_shell.pid}"

    blocker_gate.touch()
    platform.wait_state(blocker, "SUCCEEDED")
    wait_for(lambda: "second starts" in platform.lines(job), 20, "attempt 2 runs")
    [_, second] = platform.attempts(job)
    assert (second["worker_id"], second["state"]) == (b.worker_id, "RUNNING")

    assert not gone([first_shell]), "attempt 1 runs on, unseen"
    a.send(signal.SIGCONT)
    # A sends what its job printed meanwhile, and is told that attempt 1 is no longer current.
    refused = f"refused logs from worker {a.worker_id}: attempt 1 of job {job}"
    wait_for(lambda: refused in server.log_text(), 15, "A's late log batch is refused")
    rejected = f"the server refused news of job {job} attempt 1"
    wait_for(lambda: rejected in a.log_text(), 15, "A hears that its attempt is stale")
    wait_for(lambda: gone([first_shell]), 10, "A stops attempt 1")

    current = platform.job(job)
    assert (current["state"], current["attempt"]) == ("RUNNING", 2)
    assert platform.attempts(job)[0]["state"] == "LOST"
    assert platform.lines(job, attempt=1) == first_lines  # no late line was stored

    second_gate.touch()
    platform.wait_state(job)
    assert platform.lines(job, attempt=2) == ["second starts", "second ends"]
    ended = platform.job(job)
    assert (ended["exit_code"], str(ended["worker_id"])) == (0, b.worker_id)
    [retried] = platform.events(job, "JobRetried")
    assert retried["payload"]["outcome"] == "LOST"
    platform.wait_state(decoy)
    check_invariants(
        platform, {job: "SUCCEEDED", blocker: "SUCCEEDED", decoy: platform.state(decoy)}
    )


def submit_silent_first_attempt(
    platform: Platform, server: Server, name: str
) -> tuple[str, psutil.Process]:
    """A job whose attempt 1 holds a lock for as long as any of its processes lives and prints
    nothing that could be refused (only heartbeats can tell its worker that it is no longer
    its own); a later attempt prints "alone", or "overlap" if attempt 1 still runs. Returns
    the job and attempt 1's shell once it runs."""
    lock = platform.root / f"{name}.lock"
    job = platform.submit(
        server,
        f'exec 9>>"{lock}"; if [ "$HODEI_JOB_ATTEMPT" = 1 ]; then flock 9; echo "pid $$"; '
        "sleep 60; fi; flock -n 9 && echo alone || echo overlap",
        name=name,
        retry=3,
    )
    [shell] = wait_for(lambda: printed_processes(platform, job), 20, "attempt 1 prints its pid")
    return job, shell


@pytest.mark.timeout(60)
def test_a_worker_whose_lease_ran_out_is_handed_no_new_attempt_and_stops_the_old_one(
    platform: Platform,
) -> None:
    server = platform.server()
    a = platform.worker([server])
    job, first_shell = submit_silent_first_attempt(platform, server, "lost")
    a.send(signal.SIGSTOP)
    try:
        wait_for(
            lambda: platform.attempts(job)[0]["state"] == "LOST",
            LEASE_TTL_S + 5,
            "attempt 1 is lost",
        )
        # The retry may start after its backoff (0.2 s) at the dispatcher's next round (1 s
        # poll). The frozen worker, silent for a whole lease, must not be given it: watch.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            attempts = platform.attempts(job)
            assert len(attempts) == 1, f"attempt 2 went to the silent worker: {attempts[1]}"
            time.sleep(0.1)
    finally:
        a.send(signal.SIGCONT)
    # Thawed, A hears (from its next heartbeat, or from being handed attempt 2) that attempt 1
    # is over: it stops it before it starts attempt 2, never both at once.
    wait_for(lambda: gone([first_shell]), 10, "A stops the attempt it lost")
    platform.wait_state(job)
    first, second = platform.attempts(job)
    assert (first["state"], second["state"]) == ("LOST", "SUCCEEDED")
    assert platform.lines(job, attempt=2) == ["alone"]
    check_invariants(platform, {job: "SUCCEEDED"})


@pytest.mark.timeout(90)
def test_a_worker_that_missed_the_end_of_its_attempt_stops_it_when_it_comes_back(
    platform: Platform,
) -> None:
    """Nobody could tell A that its attempt was lost (its server died meanwhile, and the new one
    reaped it with no stream to A); A learns it from the answer to its first heartbeat."""
    server = platform.server()
    a = platform.worker([server])
    job, first_shell = submit_silent_first_attempt(platform, server, "missed")
    a.send(signal.SIGSTOP)
    try:
        server.kill()
        server = platform.restart(server)
        wait_for(
            lambda: platform.attempts(job)[0]["state"] == "LOST",
            LEASE_TTL_S + 10,
            "the new server finds attempt 1 lost",
        )
        assert "cancelling job" not in a.log_text()
        assert not gone([first_shell])
    finally:
        a.send(signal.SIGCONT)
    wait_for(lambda: gone([first_shell]), 15, "A stops the attempt it lost")
    platform.wait_state(job, timeout=30)
    first, second = platform.attempts(job)
    assert (first["state"], second["state"]) == ("LOST", "SUCCEEDED")
    assert platform.lines(job, attempt=2) == ["alone"]
    check_invariants(platform, {job: "SUCCEEDED"})
