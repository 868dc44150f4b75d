"""The worker ledger kills what a dead worker's jobs left running, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
