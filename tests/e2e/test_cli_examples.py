"""The user guide's practical examples 1-4, run with the ``hodei`` CLI against ``hodei up``.

No Docker engine answers here, so ``hodei up`` runs the guide's jobs as processes on this host:
their images (alpine, python, curl) are recorded with the job, not applied, and the CLI says so.
"""

from __future__ import annotations

import os
import re
import select
import time
from typing import IO, TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import HodeiUp

pytestmark = pytest.mark.e2e

HELLO_SCRIPT = 'echo "Hello from Hodei!" && date'
PYTHON_SCRIPT = """\
import sys
print("Processing data...")
for i in range(5):
    print(f"Step {i+1}/5 completed")
print("Done!")
"""
PYTHON_OUTPUT = [
    "Processing data...",
    *(f"Step {i}/5 completed" for i in range(1, 6)),
    "Done!",
]
# The guide curls $API_URL with the token; the tests never leave loopback, so the script only
# shows what it would send.
API_SCRIPT = 'echo "Authorization: Bearer $API_TOKEN" && echo "url=$API_URL"'
API_TOKEN = "tu-token-secreto"
API_URL = "https://api.example.com/data"
BATCH_SCRIPT = """\
for i in $(seq 1 60); do
  echo "[$(date)] Processing batch $i/60..."
  sleep 1
done
echo "All batches completed!"
"""
BATCH_LINE = re.compile(r"^\[[^\]]+\] Processing batch (\d+)/60\.\.\.$")
DATE_LINE = re.compile(r"\b\d{2}:\d{2}:\d{2}\b")


def test_example_1_simple_echo(hodei: HodeiUp) -> None:
    result = hodei.cli(
        "job",
        "run",
        HELLO_SCRIPT,
        *("--name", "Hello World", "--image", "alpine:latest", "--cpu", "1", "--memory", "512"),
    )

    assert result.returncode == 0, result.stderr
    hello, date = result.stdout.splitlines()
    assert hello == "Hello from Hodei!"
    assert DATE_LINE.search(date), date
    assert re.search(r"job \S+ SUCCEEDED", result.stderr)
    assert "Traceback" not in result.stderr
    # No Docker engine here: the job ran on the host, and the CLI says the image was not used.
    assert (
        "note: image alpine:latest was not applied: it ran as a process on the worker's host"
        in " ".join(result.stderr.split())
    )


def test_example_2_python_script(hodei: HodeiUp) -> None:
    result = hodei.cli(
        "job",
        "run",
        PYTHON_SCRIPT,
        *("--type", "python", "--name", "Python Data Processing"),
        *("--image", "python:3.11-slim", "--memory", "1024"),
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == PYTHON_OUTPUT


def test_example_3_env_vars_and_a_masked_secret(hodei: HodeiUp) -> None:
    result = hodei.cli(
        "job",
        "run",
        API_SCRIPT,
        *("--name", "API Data Fetch", "--image", "curlimages/curl:latest"),
        *("--secret-env", f"API_TOKEN={API_TOKEN}", "--env", f"API_URL={API_URL}"),
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Authorization: Bearer ***", f"url={API_URL}"]
    assert API_TOKEN not in result.stdout + result.stderr

    job_id = re.search(r"job (\S+) queued", result.stderr)
    assert job_id
    shown = hodei.cli("job", "get", job_id.group(1))
    assert shown.returncode == 0, shown.stderr
    assert "SUCCEEDED" in shown.stdout
    assert API_TOKEN not in shown.stdout


class LineReader:
    """Reads a child's output line by line, each line within a deadline."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._fd = stream.fileno()
        self._buffer = b""
        self._eof = False

    def readline(self, timeout: float) -> str | None:
        """The next line without its newline; None at the end of the output."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer and not self._eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no output line within {timeout} s")
            readable, _, _ = select.select([self._fd], [], [], remaining)
            if readable:
                chunk = os.read(self._fd, 65536)
                self._eof = not chunk
                self._buffer += chunk
        if not self._buffer:
            return None
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()


def job_get_state(hodei: HodeiUp, job_id: str) -> str:
    """The state row of ``hodei job get``."""
    shown = hodei.cli("job", "get", job_id)
    assert shown.returncode == 0, shown.stderr
    found = re.search(r"^\s*state\s+(\w+)", shown.stdout, re.MULTILINE)
    assert found, shown.stdout
    return found.group(1)


@pytest.mark.timeout(180)
def test_example_4_long_running_job_streams_its_log_live(hodei: HodeiUp) -> None:
    submitted = hodei.cli(
        "job",
        "submit",
        BATCH_SCRIPT,
        *("--name", "Long Running Task", "--image", "alpine:latest", "--timeout", "120000"),
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()

    follower = hodei.spawn_cli("logs", job_id, "--follow")
    try:
        assert follower.stdout is not None
        reader = LineReader(follower.stdout)
        first = reader.readline(timeout=30)
        assert first is not None, "the log ended before its first line"
        first_at = time.monotonic()
        # The first line is there while the job still has about a minute to go.
        assert hodei.get_job(job_id)["state"] == "RUNNING"
        assert job_get_state(hodei, job_id) == "RUNNING"
        listed = hodei.cli("job", "list", "--state", "running")
        assert listed.returncode == 0, listed.stderr
        assert job_id[:8] in listed.stdout
        # It holds one worker; other jobs do not queue up behind it.
        meanwhile = hodei.cli("job", "run", "echo meanwhile")
        assert meanwhile.returncode == 0, meanwhile.stderr
        assert meanwhile.stdout == "meanwhile\n"
        assert hodei.get_job(job_id)["state"] == "RUNNING"

        lines = [first]
        while (line := reader.readline(timeout=30)) is not None:
            lines.append(line)
        last_at = time.monotonic()
        _, stderr = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()

    assert follower.returncode == 0, stderr.decode()
    assert len(lines) == 61, lines
    batches = []
    for line in lines[:60]:
        match = BATCH_LINE.match(line)
        assert match, line
        batches.append(int(match.group(1)))
    assert batches == list(range(1, 61))
    assert lines[60] == "All batches completed!"
    # Streamed as they came, not in one burst at the end.
    assert last_at - first_at > 45

    job = hodei.wait_job(job_id, timeout=30)
    assert (job["state"], job["exit_code"]) == ("SUCCEEDED", 0)
    assert job["definition"]["resources"]["timeout_ms"] == "120000"
    stored = hodei.log_lines(job_id)
    assert [entry["line"] for entry in stored] == lines


def test_cli_submit_returns_a_job_id_that_get_knows(hodei: HodeiUp) -> None:
    submitted = hodei.cli("job", "submit", "echo submitted", "--name", "submit-only")
    assert submitted.returncode == 0, submitted.stderr
    job = hodei.wait_job(submitted.stdout.strip())
    assert job["definition"]["name"] == "submit-only"
    assert job["state"] == "SUCCEEDED"
    logs = hodei.cli("logs", job["id"])
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "submitted\n"


def test_job_list_shows_whole_job_ids(hodei: HodeiUp) -> None:
    submitted = hodei.cli("job", "submit", "echo listed")
    assert submitted.returncode == 0, submitted.stderr
    hodei.wait_job(submitted.stdout.strip())

    listed = hodei.cli("job", "list", "--limit", "5")

    assert listed.returncode == 0, listed.stderr
    assert submitted.stdout.strip() in listed.stdout
