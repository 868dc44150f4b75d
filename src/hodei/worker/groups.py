"""A ledger of the process groups a worker's jobs run in, so that none outlives its worker.

Each running job's process group id is a file under ``WORK_DIR/hodei-worker-ID/groups`` holding
the job's id, next to the worker's own pid. A worker that starts sweeps the ledgers of dead
predecessors in the same work dir: whatever their jobs left running is killed. A worker killed
with SIGKILL cannot clean up: its keeper (``hodei.worker.keeper``) does, the moment it dies; the
next worker on its work dir, or its provider, sweeps again in case the keeper died with it.

A process group id outlives its group and may be reused, so nothing is killed by group id
alone: only processes in that group whose environment says they belong to the recorded job
(``HODEI_JOB_ID``, which every job gets).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
from pathlib import Path

import psutil

from hodei.worker.keeper import Keeper

log = logging.getLogger(__name__)

_PREFIX = "hodei-worker-"


class GroupLedger:
    """This worker's ledger."""

    def __init__(self, work_dir: Path, worker_id: str) -> None:
        self._work_dir = work_dir
        self._dir = work_dir / f"{_PREFIX}{worker_id}"
        # Built under a hidden name and renamed into place, so a sweeping neighbour never sees
        # a ledger without its pid (and takes it for a dead worker's).
        staging = work_dir / f".{_PREFIX}{worker_id}.{os.getpid()}"
        (staging / "groups").mkdir(parents=True, exist_ok=True)
        (staging / "pid").write_text(str(os.getpid()))
        staging.rename(self._dir)
        self._keeper = Keeper(self._dir)

    def record(self, pgid: int, job_id: str) -> None:
        groups = self._dir / "groups"
        groups.mkdir(parents=True, exist_ok=True)
        (groups / str(pgid)).write_text(job_id)

    def forget(self, pgid: int) -> None:
        (self._dir / "groups" / str(pgid)).unlink(missing_ok=True)

    def close(self) -> None:
        """Once every job of the worker has ended: drop the ledger and let the keeper go."""
        shutil.rmtree(self._dir, ignore_errors=True)
        self._keeper.close()

    def sweep_dead_predecessors(self) -> int:
        """Kill the job process groups of workers on this work dir that died; returns how many."""
        return sweep_dead_ledgers(self._work_dir, keep=self._dir)


def sweep_dead_ledgers(work_dir: Path, keep: Path | None = None) -> int:
    """Kill what the jobs of dead workers on ``work_dir`` left running; returns how many
    processes. A provider calls it as soon as one of its workers dies."""
    killed = 0
    for ledger in work_dir.glob(f"{_PREFIX}*"):
        if ledger != keep and not _alive(ledger / "pid"):
            killed += sweep_ledger(ledger)
    if killed:
        log.warning("killed %d job process(es) left by a dead worker", killed)
    return killed


def sweep_ledger(ledger: Path) -> int:
    """Kill the job processes one ledger lists, then remove it; returns how many processes."""
    killed = 0
    for group in (ledger / "groups").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            killed += _kill_job_group(int(group.name), group.read_text().strip())
    shutil.rmtree(ledger, ignore_errors=True)
    return killed


def _alive(pid_file: Path) -> bool:
    """Whether the worker that wrote ``pid_file`` still runs (a reused pid started later)."""
    try:
        process = psutil.Process(int(pid_file.read_text()))
        return (
            process.status() != psutil.STATUS_ZOMBIE
            and process.create_time() <= pid_file.stat().st_mtime + 1
        )
    except (OSError, ValueError, psutil.Error):
        return False


def _kill_job_group(pgid: int, job_id: str) -> int:
    """SIGKILL the processes of group ``pgid`` that carry ``HODEI_JOB_ID=job_id``."""
    killed = 0
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(process.pid) != pgid:
                continue
            if process.environ().get("HODEI_JOB_ID") != job_id:
                continue
            process.send_signal(signal.SIGKILL)
            killed += 1
    return killed
