"""A worker SIGKILLed while its jobs run: the attempts are LOST within the lease, a job with
retries left runs again elsewhere, one without fails with "worker lost", and the jobs' processes
do not outlive their worker: its keeper kills them as soon as it dies."""

from __future__ import annotations

import signal
import time

import pytest

from .harness import LEASE_TTL_S, MARK_PIDS, Platform, check_invariants, gone, wait_for

pytestmark = pytest.mark.faults

# The first attempt blocks (and keeps printing, so its shell dies of SIGPIPE once its worker is
# gone, leaving only the grandchild `sleep`); any later attempt succeeds at once.
FIRST_ATTEMPT_HANGS = (
    'if [ "$HODEI_JOB_ATTEMPT" = 1 ]; then '
    + MARK_PIDS
    + "while :; do echo tick; sleep 0.2; done; fi; echo recovered"
)


@pytest.mark.timeout(90)
def test_killed_worker_loses_its_attempts_and_leaves_no_process(platform: Platform) -> None:
    server = platform.server()
    doomed = platform.worker([server])
    retried = platform.submit(server, FIRST_ATTEMPT_HANGS, name="retried", retry=2)
    not_retried = platform.submit(server, FIRST_ATTEMPT_HANGS, name="not retried")
    processes = platform.wait_running(retried) + platform.wait_running(not_retried)
    assert len(processes) == 4

    doomed.send(signal.SIGKILL)
    killed_at = time.monotonic()
    doomed.wait(10)
    # Nobody replaces the worker yet: its keeper alone ends what its jobs left running.
    wait_for(lambda: gone(processes), 10, f"the dead worker's job processes end: {processes}")

    def lost() -> bool:
        return all(platform.attempts(job)[0]["state"] == "LOST" for job in (retried, not_retried))

    wait_for(lost, LEASE_TTL_S + 5, "both attempts are LOST")
    # The lease plus one reaper pass (1 s) and some slack for a loaded machine.
    assert time.monotonic() - killed_at < LEASE_TTL_S + 3
    failed = platform.wait_state(not_retried)
    assert failed["state"] == "FAILED"
    assert "worker lost" in failed["error_message"]
    assert platform.state(retried) == "PENDING"  # nobody is left to run it
    [retry] = platform.events(retried, "JobRetried")
    assert retry["payload"]["outcome"] == "LOST"

    replacement = platform.worker([server], work_dir=doomed.work_dir)

    platform.wait_state(retried)
    [first, second] = platform.attempts(retried)
    assert (first["worker_id"], first["state"]) == (doomed.worker_id, "LOST")
    assert (second["worker_id"], second["state"]) == (replacement.worker_id, "SUCCEEDED")
    assert platform.lines(retried, attempt=2) == ["recovered"]
    check_invariants(platform, {retried: "SUCCEEDED", not_retried: "FAILED"})
