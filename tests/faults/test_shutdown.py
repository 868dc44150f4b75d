"""Graceful shutdown. SIGTERM to a worker drains it: no new job, a running job that ends within
the drain timeout succeeds, one that does not is handed back and runs again elsewhere, and the
worker ends TERMINATED. SIGINT to `hodei up` stops everything it started, in order."""

from __future__ import annotations

import asyncio
import importlib.util
import signal
import sys
from pathlib import Path
from types import ModuleType

import psutil
import psycopg
import pytest

from hodei.store.embedded import EmbeddedPostgres

from .harness import (
    MARK_PIDS,
    Platform,
    check_invariants,
    gate,
    gone,
    job_processes,
    pids_in,
    reap_adopted,
    sleeps_with_pids,
    wait_for,
)

pytestmark = pytest.mark.faults

DRAIN_TIMEOUT_S = 3.0


E2E_CONFTEST = Path(__file__).parents[1] / "e2e" / "conftest.py"


def e2e_helpers() -> ModuleType:
    """tests/e2e/conftest.py as a module of its own (its `hodei up` helpers), not as a plugin."""
    name = "hodei_faults_e2e_helpers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, E2E_CONFTEST)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.mark.timeout(90)
def test_sigterm_drains_a_worker(platform: Platform) -> None:
    release = platform.root / "release"
    server = platform.server()
    leaving = platform.worker([server], args=["--drain-timeout", "20"])
    quick = platform.submit(
        server, MARK_PIDS + gate(release) + 'kill "$!"; echo finished', name="quick"
    )
    processes = platform.wait_running(quick)
    staying = platform.worker([server])

    leaving.send(signal.SIGTERM)
    wait_for(
        lambda: platform.worker_state(leaving.worker_id) == "DRAINING",
        5,
        "the worker reports DRAINING",
    )
    later = platform.submit(server, "echo later", name="later")
    platform.wait_state(later)
    assert str(platform.job(later)["worker_id"]) == staying.worker_id
    assert leaving.running, "the drain waits for the running job"
    release.touch()  # the job ends well within the drain timeout

    assert leaving.wait(15) == 0
    assert gone(processes)
    [attempt] = platform.attempts(quick)
    assert (attempt["worker_id"], attempt["state"]) == (leaving.worker_id, "SUCCEEDED")
    assert platform.lines(quick)[-1] == "finished"
    check_invariants(platform, {quick: "SUCCEEDED", later: "SUCCEEDED"})


@pytest.mark.timeout(60)
def test_drained_workers_end_terminated(platform: Platform) -> None:
    server = platform.server()
    workers = platform.workers([server], 4)
    for worker in workers:
        worker.send(signal.SIGTERM)
    assert [worker.wait(15) for worker in workers] == [0] * 4
    states = {w.worker_id: platform.worker_state(w.worker_id) for w in workers}
    assert set(states.values()) == {"TERMINATED"}, states
    assert terminations(platform.database_url) == ["drained"] * 4


@pytest.mark.timeout(90)
def test_sigterm_hands_back_a_job_that_outlives_the_drain(platform: Platform) -> None:
    server = platform.server()
    leaving = platform.worker([server], args=["--drain-timeout", str(DRAIN_TIMEOUT_S)])
    slow = platform.submit(
        server,
        'if [ "$HODEI_JOB_ATTEMPT" = 1 ]; then ' + MARK_PIDS + "wait; fi; echo finished",
        name="slow",
    )
    processes = platform.wait_running(slow)
    staying = platform.worker([server])

    leaving.send(signal.SIGTERM)
    # The drain timeout, then SIGTERM to the job and the worker's hand-back grace (2 s).
    wait_for(
        lambda: platform.attempts(slow)[0]["state"] == "RELEASED",
        DRAIN_TIMEOUT_S + 8,
        "the worker hands the job back",
    )
    assert gone(processes)
    [handed_back] = platform.events(slow, "JobRetried")
    assert handed_back["payload"]["outcome"] == "RELEASED"
    assert leaving.wait(10) == 0
    assert terminations(platform.database_url, [leaving.worker_id]) == ["drained"]

    platform.wait_state(slow)
    [first, second] = platform.attempts(slow)
    assert first["worker_id"] == leaving.worker_id
    assert (second["worker_id"], second["state"]) == (staying.worker_id, "SUCCEEDED")
    assert platform.lines(slow, attempt=2) == ["finished"]
    check_invariants(platform, {slow: "SUCCEEDED"})


def terminations(database_url: str, worker_ids: list[str] | None = None) -> list[str]:
    """The reason of each WorkerTerminated event (of these workers, or of all)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT correlation_id, payload->>'reason' FROM audit_logs"
            " WHERE event_type = 'WorkerTerminated' ORDER BY id"
        ).fetchall()
    return [reason for worker, reason in rows if worker_ids is None or worker in worker_ids]


@pytest.mark.timeout(120)
def test_sigint_stops_hodei_up_in_order_and_leaves_no_orphan() -> None:
    e2e = e2e_helpers()
    launcher = e2e.HodeiLauncher()
    try:
        up = launcher(workers=2, env={"HODEI_DRAIN_TIMEOUT_S": "10"})
        # Still running at Ctrl-C (a shell and its grandchild), it ends within the drain timeout.
        script = sleeps_with_pids(3) + "echo finished"
        result = up.cli("job", "submit", script, "--name", "interrupted")
        assert result.returncode == 0, result.stderr
        job = result.stdout.strip()
        processes = wait_for(lambda: up_job_processes(up, job), 30, f"job {job} prints its pids")

        report = up.stop()  # SIGINT; it fails if any process it started is left
        assert report.exit_code == 0
        assert len(report.worker_pids) == 2
        assert gone(processes)
        assert not job_processes([job])
        assert "Traceback" not in up.log_tail(lines=10_000)

        # In order: the workers drained while the server still listened (the job's result is
        # stored, each worker is TERMINATED) before the server and then PostgreSQL stopped.
        postgres = EmbeddedPostgres(up.data_dir)
        url = asyncio.run(postgres.start())
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                [(state,)] = conn.execute("SELECT state FROM jobs WHERE id = %s", (job,))
                workers = conn.execute("SELECT state FROM workers").fetchall()
            reasons = terminations(url)
        finally:
            asyncio.run(postgres.stop())
            reap_adopted()
        assert state == "SUCCEEDED"
        assert workers == [("TERMINATED",), ("TERMINATED",)]
        # "drained" when the worker's goodbye got through, else its provider's word (see
        # test_drained_workers_end_terminated).
        assert len(reasons) == 2
        assert set(reasons) <= {"drained", "stopped by its provider"}, reasons
    finally:
        launcher.cleanup()
        reap_adopted()


def up_job_processes(up: object, job: str) -> list[psutil.Process]:
    """The processes behind the two PIDs a job of a `hodei up` printed, once it printed both."""
    pids = pids_in(line["line"] for line in up.log_lines(job))  # type: ignore[attr-defined]
    return [psutil.Process(pid) for pid in pids] if len(pids) == 2 else []
