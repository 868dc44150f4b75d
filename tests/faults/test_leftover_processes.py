"""A job's shell exits and leaves a background process behind: the job ends with its shell, and
what it left in its process group goes with it."""

from __future__ import annotations

import pytest

from .harness import MARK_PIDS, Platform, check_invariants, gone, printed_processes, wait_for

pytestmark = pytest.mark.faults


def test_a_job_ends_with_its_shell_and_its_leftovers_are_killed(platform: Platform) -> None:
    server = platform.server()
    platform.worker([server])
    # The shell outlives the worker's call to wait(), then exits; `sleep 60` stays.
    job = platform.submit(server, MARK_PIDS + "sleep 0.5; echo done", name="leaves a child")
    wait_for(lambda: len(printed_processes(platform, job)) == 2, 10, "the job prints its pids")
    [shell, leftover] = printed_processes(platform, job)

    wait_for(lambda: gone([shell]), 10, "the job's shell exits")
    ended = platform.wait_state(job, timeout=5)

    assert ended["state"] == "SUCCEEDED"
    assert gone([leftover])
    check_invariants(platform, {job: "SUCCEEDED"})
