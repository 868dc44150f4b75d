"""``hodei up`` itself: Ctrl-C stops everything it started, a restart keeps the data, and the
embedded PostgreSQL falls back to the ``pgserver`` wheel when the system has none."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

if TYPE_CHECKING:
    from conftest import HodeiLauncher, HodeiUp

pytestmark = pytest.mark.e2e

SYSTEM_POSTGRES = Path("/usr/lib/postgresql")
HIDE_SYSTEM_POSTGRES = f"mount -t tmpfs tmpfs {SYSTEM_POSTGRES}"


def run_one_job(instance: HodeiUp, name: str) -> str:
    """Run ``echo NAME`` to its end through the CLI; the job's id."""
    result = instance.cli("job", "run", f"echo {name}", "--name", name)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{name}\n"
    queued = re.search(r"job (\S+) queued", result.stderr)
    assert queued, result.stderr
    return queued.group(1)


@pytest.mark.timeout(120)
def test_ctrl_c_stops_everything_and_a_restart_keeps_the_data(
    launch_hodei: HodeiLauncher,
) -> None:
    first = launch_hodei(workers=2)
    name = f"first-{uuid.uuid4().hex[:6]}"
    job_id = run_one_job(first, name)
    postgres_port = first.postgres_port()
    url = first.db_url()

    stopped = first.stop()

    assert stopped.exit_code == 0
    assert len(stopped.worker_pids) == 2
    assert stopped.postmaster_pid is not None
    assert first.leftovers() == []
    assert "Traceback" not in first.log_tail(lines=10_000)

    second = launch_hodei(first.data_dir, workers=2)

    assert second.postgres_port() == postgres_port
    assert second.db_url() == url
    listed = second.cli("job", "list")
    assert listed.returncode == 0, listed.stderr
    assert name in listed.stdout
    assert job_id[:8] in listed.stdout
    job = second.get_job(job_id)
    assert (job["state"], job["exit_code"]) == ("SUCCEEDED", 0)
    assert [line["line"] for line in second.log_lines(job_id)] == [name]

    restarted = second.stop()
    assert restarted.exit_code == 0
    assert restarted.postmaster_pid != stopped.postmaster_pid


def pgserver_bin_dir() -> Path:
    spec = importlib.util.find_spec("pgserver")
    assert spec is not None, "pgserver is not installed"
    assert spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def can_hide_system_postgres() -> bool:
    """Whether a private mount namespace can cover the system's PostgreSQL here."""
    if not SYSTEM_POSTGRES.is_dir():
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", HIDE_SYSTEM_POSTGRES],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.timeout(180)
def test_embedded_postgres_comes_from_pgserver_without_a_system_postgres(
    launch_hodei: HodeiLauncher, record_property: Callable[[str, object], None]
) -> None:
    bundled = pgserver_bin_dir()
    # The virtualenv's programs and the base system, without /usr/local/bin and its postgres.
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    if can_hide_system_postgres():
        record_property("system_postgres_hidden_by", "unshare --mount")

        def hidden(argv: list[str]) -> list[str]:
            command = shlex.join(["exec", "env", f"PATH={path}", *argv])
            command = f"{HIDE_SYSTEM_POSTGRES} && {command}"
            return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", command]

        instance = launch_hodei(workers=1, wrap=hidden)
    else:
        record_property("system_postgres_hidden_by", "HODEI_POSTGRES_BIN_DIR")
        env = {"PATH": path, "HODEI_POSTGRES_BIN_DIR": str(bundled)}
        instance = launch_hodei(workers=1, env=env)

    pid = instance.postmaster_pid()
    assert pid is not None
    assert Path(psutil.Process(pid).exe()) == (bundled / "postgres").resolve()
    [[version]] = instance.psql("show server_version")
    assert version.startswith("16"), version
    run_one_job(instance, f"pgserver-{uuid.uuid4().hex[:6]}")

    assert instance.stop().exit_code == 0
