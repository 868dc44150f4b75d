"""How ``hodei job run`` ends when things go wrong: no server, a failing job, a time limit."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import HodeiUp

pytestmark = pytest.mark.e2e

HodeiCli = Callable[..., subprocess.CompletedProcess[str]]


def queued_job_id(stderr: str) -> str:
    """The id in the "job ID queued" line of ``hodei job run``."""
    found = re.search(r"job (\S+) queued", stderr)
    assert found, stderr
    return found.group(1)


@pytest.fixture(scope="module")
def unreachable(hodei_cli: HodeiCli) -> tuple[str, subprocess.CompletedProcess[str]]:
    """``hodei job run`` against a port nothing listens on: the address and what it did."""
    # A socket bound but never listening keeps the port refused for the whole call.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{holder.getsockname()[1]}"
        return address, hodei_cli("job", "run", "echo hi", "--server", address)


def test_no_server_is_a_clear_error(
    unreachable: tuple[str, subprocess.CompletedProcess[str]],
) -> None:
    address, result = unreachable

    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert message.startswith(f"error: cannot reach the Hodei server at {address}")
    assert "hodei up" in message


def test_no_server_error_is_one_line(
    unreachable: tuple[str, subprocess.CompletedProcess[str]],
) -> None:
    _, result = unreachable

    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_exit_status_is_the_jobs_exit_code(hodei: HodeiUp) -> None:
    result = hodei.cli("job", "run", "echo before; exit 3")

    assert result.returncode == 3, result.stderr
    assert result.stdout == "before\n"
    assert "FAILED" in result.stderr
    assert "Traceback" not in result.stderr
    job_id = queued_job_id(result.stderr)
    job = hodei.get_job(job_id)
    assert (job["state"], job["exit_code"]) == ("FAILED", 3)


def test_time_limit_ends_the_job_as_timeout(hodei: HodeiUp) -> None:
    started = time.monotonic()
    result = hodei.cli("job", "run", "sleep 5", "--timeout", "500")
    elapsed = time.monotonic() - started

    assert result.returncode == 124, result.stderr
    assert "TIMEOUT" in result.stderr
    # Stopped at its limit, not when sleep would have ended.
    assert elapsed < 5
    job_id = queued_job_id(result.stderr)
    job = hodei.get_job(job_id)
    assert job["state"] == "TIMEOUT"
    assert job["definition"]["resources"]["timeout_ms"] == "500"


@pytest.mark.parametrize("job_id", ["[/x]", "[bold]x"])
def test_server_errors_are_printed_verbatim(hodei: HodeiUp, job_id: str) -> None:
    result = hodei.cli("job", "get", job_id)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"'{job_id}'" in result.stderr
