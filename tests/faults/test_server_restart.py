"""The server SIGKILLed while jobs run: the workers keep running them, and once the server is
back on the same ports they reconnect and deliver everything, exactly once."""

from __future__ import annotations

import signal

import pytest

from .harness import Platform, check_invariants, job_processes, numbered, wait_for

pytestmark = pytest.mark.faults


@pytest.mark.timeout(90)
def test_jobs_survive_a_killed_server(platform: Platform) -> None:
    server = platform.server()
    workers = [platform.worker([server]) for _ in range(2)]
    # Short jobs end while the server is away; long ones end after it is back.
    lines = {"short": 10, "long": 40}
    jobs = {
        platform.submit(server, numbered(kind, count, 0.1), name=f"{kind}-{i}"): kind
        for i in range(2)
        for kind, count in lines.items()
    }
    for job in jobs:
        platform.wait_state(job, "RUNNING")
    wait_for(lambda: all(platform.lines(job) for job in jobs), 10, "every job has logged")

    server.send(signal.SIGKILL)
    server.wait(10)
    short = [job for job, kind in jobs.items() if kind == "short"]
    wait_for(lambda: not job_processes(short), 20, "the short jobs end while the server is away")
    assert len(job_processes(jobs)) >= 2, "the long jobs still run"
    assert all(worker.running for worker in workers)

    server = platform.restart(server)
    for job in jobs:
        platform.wait_state(job, timeout=30)

    for job, kind in jobs.items():
        expected = [f"{kind} {i}" for i in range(1, lines[kind] + 1)]
        assert platform.lines(job) == expected, f"job {job}: lines lost or repeated"
        assert len(platform.attempts(job)) == 1
    check_invariants(platform, dict.fromkeys(jobs, "SUCCEEDED"))
