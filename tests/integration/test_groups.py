"""The worker ledger kills what a dead worker's jobs left running, and nothing else."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from hodei.worker.groups import GroupLedger

pytestmark = pytest.mark.integration


def test_a_dead_workers_job_processes_are_killed_and_only_they(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    job = subprocess.Popen(
        ["sleep", "60"], start_new_session=True, env=os.environ | {"HODEI_JOB_ID": "job-1"}
    )
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        ledger = tmp_path / "hodei-worker-dead"
        (ledger / "groups").mkdir(parents=True)
        (ledger / "pid").write_text(str(dead.pid))
        (ledger / "groups" / str(job.pid)).write_text("job-1")
        # A group id reused by an unrelated process must not make it a target.
        (ledger / "groups" / str(stranger.pid)).write_text("job-2")
        survivor = GroupLedger(tmp_path, "alive")
        assert survivor.sweep_dead_predecessors() == 1
        job.wait(10)
        assert job.returncode == -9
        assert stranger.poll() is None
        assert not ledger.exists()
        assert (tmp_path / "hodei-worker-alive").exists()  # its own ledger is kept
        survivor.close()
    finally:
        for process in (job, stranger):
            process.kill()
            process.wait(10)


# A worker in miniature: a ledger, one job group recorded in it, then it waits to be killed.
_WORKER = """
import os, subprocess, sys, time
from pathlib import Path
from hodei.worker.groups import GroupLedger
ledger = GroupLedger(Path(sys.argv[1]), "doomed")
job = subprocess.Popen(
    ["sh", "-c", "sleep 60 & echo $!; wait"], start_new_session=True, stdout=subprocess.PIPE,
    env=os.environ | {"HODEI_JOB_ID": "job-1"}, text=True,
)
ledger.record(job.pid, "job-1")
print(job.pid, job.stdout.readline().strip(), flush=True)
time.sleep(60)
"""


@pytest.mark.timeout(30)
def test_the_keeper_kills_the_jobs_of_a_worker_killed_with_sigkill(tmp_path: Path) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    pids: list[int] = []
    try:
        assert worker.stdout is not None
        pids += [int(pid) for pid in worker.stdout.readline().split()]
        assert len(pids) == 2  # the job's shell and its grandchild `sleep`
        processes = [psutil.Process(pid) for pid in pids]
        worker.kill()
        worker.wait(10)
        _, alive = psutil.wait_procs(processes, timeout=10)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
        # The keeper removes the ledger once it has killed what it lists.
        deadline = time.monotonic() + 10
        while (tmp_path / "hodei-worker-doomed").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not (tmp_path / "hodei-worker-doomed").exists()
    finally:
        worker.kill()
        worker.wait(10)
        assert worker.stdout is not None
        worker.stdout.close()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_worker_that_leaves_in_order_lets_its_keeper_go(tmp_path: Path) -> None:
    ledger = GroupLedger(tmp_path, "orderly")
    keeper = psutil.Process(ledger._keeper.pid)
    assert keeper.is_running()
    ledger.close()
    assert not keeper.is_running()  # reaped, not a zombie
    assert not (tmp_path / "hodei-worker-orderly").exists()
