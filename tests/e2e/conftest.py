"""End-to-end fixtures: a real ``hodei up`` (PostgreSQL, server, local workers) as a subprocess.

The tests drive the product from the outside, the way a person does: the ``hodei`` CLI,
``grpcurl`` and ``psql``. Nothing is mocked. Every process a ``hodei up`` starts is recorded so
that stopping it can prove nothing is left behind, and so that a failing test still kills what
it started (by process id, never by name).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright


def _program(name: str) -> str:
    """A console script of this virtualenv, else the one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name) or name


HODEI = _program("hodei")
GRPCURL = _program("grpcurl")
FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "TIMEOUT"})
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
# Settings of the product that the environment of whoever runs the tests must not change.
_PRODUCT_VARIABLES = ("GRPC_PORT", "RUST_LOG", "COLUMNS", "LINES")
_POLL = 0.1
# Where no Docker engine answers.
NO_DOCKER = "unix:///nonexistent/docker.sock"

Wrap = Callable[[list[str]], list[str]]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def product_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that configures Hodei or libpq, and with no
    Docker engine (``hodei up`` would enable its docker provider): tests that want one say so."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("HODEI_", "PG")) and name not in _PRODUCT_VARIABLES
    }
    env["DOCKER_HOST"] = NO_DOCKER
    return env | extra


def run(
    argv: Sequence[str], *, timeout: float = 60, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a program to its end and capture its output."""
    return subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env) if env is not None else product_env(),
        check=False,
    )


def psql(url: str, query: str) -> list[list[str]]:
    """Rows of ``psql URL -c QUERY``, each a list of column texts (NULL is "")."""
    result = run(
        [
            "psql",
            *("-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-align", "--tuples-only"),
            "--field-separator=\x1f",
            url,
            *("-c", query),
        ]
    )
    assert result.returncode == 0, f"psql failed ({result.returncode}):\n{result.stderr}"
    return [line.split("\x1f") for line in result.stdout.splitlines()]


def _alive(process: psutil.Process) -> bool:
    """Running and not a zombie; a reused PID does not count (psutil checks the start time)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _describe(processes: Sequence[psutil.Process]) -> str:
    lines = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            lines.append(f"  pid {process.pid}: {shlex.join(process.cmdline())}")
    return "\n".join(lines)


@dataclass(frozen=True)
class StopReport:
    """What stopping a ``hodei up`` showed."""

    exit_code: int
    worker_pids: tuple[int, ...]
    postmaster_pid: int | None


@dataclass
class HodeiUp:
    """One ``hodei up`` process, what it started, and ways to talk to it."""

    data_dir: Path
    workers: int = 2
    # Workers other providers keep (a docker provider's warm worker), ready before it is.
    other_workers: int = 0
    wrap: Wrap | None = None
    env: dict[str, str] = field(default_factory=product_env)
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    watched: dict[int, psutil.Process] = field(default_factory=dict)
    _db_url: str | None = None

    @property
    def address(self) -> str:
        """The gRPC address for ``--server`` and grpcurl."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def log_path(self) -> Path:
        """Where the output of ``hodei up`` goes (appended to by every start)."""
        return self.data_dir / "hodei-up.log"

    @property
    def cluster_dir(self) -> Path:
        """The embedded PostgreSQL's data directory."""
        return self.data_dir / "postgres"

    def start(self) -> None:
        """Start ``hodei up`` in a process group of its own and wait until it is ready."""
        argv = [
            HODEI,
            "up",
            *("--data-dir", str(self.data_dir)),
            *("--grpc-port", str(self.grpc_port)),
            *("--http-port", str(self.http_port)),
            *("--workers", str(self.workers)),
        ]
        if self.wrap is not None:
            argv = self.wrap(argv)
        self._db_url = None
        with self.log_path.open("ab") as log:
            log.write(f"\n$ {shlex.join(argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        self.wait_ready()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until /readyz answers and ``workers`` (+ ``other_workers``) workers are READY."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        wanted = self.workers + self.other_workers
        while not (self._http_ready() and self.ready_workers() == wanted):
            if self.process.poll() is not None:
                raise AssertionError(
                    f"hodei up exited with {self.process.returncode} before it was ready\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"hodei up not ready within {timeout} s\n{self.log_tail()}")
            time.sleep(_POLL)
        self._watch()

    def _http_ready(self) -> bool:
        url = f"http://127.0.0.1:{self.http_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def ready_workers(self) -> int:
        """How many workers ListWorkers shows READY (0 while the server does not answer)."""
        result = self.grpc_raw("hodei.v1.SchedulerService/ListWorkers")
        if result.returncode != 0:
            return 0
        workers = json.loads(result.stdout).get("workers", [])
        return sum(1 for worker in workers if worker.get("state") == "WORKER_READY")

    def postmaster_pid(self) -> int | None:
        """The PID in the cluster's postmaster.pid, if the file is there."""
        try:
            first = (self.cluster_dir / "postmaster.pid").read_text().splitlines()[0]
        except (FileNotFoundError, IndexError):
            return None
        return int(first) if first.strip().isdigit() else None

    def postgres_port(self) -> int:
        """The port the running PostgreSQL listens on (line 4 of postmaster.pid)."""
        return int((self.cluster_dir / "postmaster.pid").read_text().splitlines()[3])

    def _watch(self) -> None:
        """Record every process this instance runs, so that stopping it can check them."""
        assert self.process is not None
        found: list[psutil.Process] = []
        with contextlib.suppress(psutil.NoSuchProcess):
            found += psutil.Process(self.process.pid).children(recursive=True)
        pid = self.postmaster_pid()
        if pid is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                postmaster = psutil.Process(pid)
                found += [postmaster, *postmaster.children(recursive=True)]
        for process in found:
            self.watched.setdefault(process.pid, process)

    def _worker_pids(self) -> tuple[int, ...]:
        assert self.process is not None
        pids = []
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(self.process.pid).children():
                with contextlib.suppress(psutil.Error):
                    if "worker" in child.cmdline():
                        pids.append(child.pid)
        return tuple(pids)

    def stop(self, timeout: float = STOP_TIMEOUT) -> StopReport:
        """Ctrl-C (SIGINT) it, wait, and check that none of its processes is left.

        Raises:
            AssertionError: it did not stop in time, or a process it started is still running.
        """
        assert self.process is not None
        self._watch()
        workers = self._worker_pids()
        postmaster = self.postmaster_pid()
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"hodei up did not stop within {timeout} s of SIGINT\n{self.log_tail()}"
            ) from None
        leftovers = self.leftovers()
        assert not leftovers, (
            f"processes of hodei up still run after it exited:\n{_describe(leftovers)}\n"
            f"{self.log_tail()}"
        )
        return StopReport(code, workers, postmaster)

    def leftovers(self) -> list[psutil.Process]:
        """Live processes of this instance: recorded ones, and any in its cluster directory."""
        left = {p.pid: p for p in self.watched.values() if _alive(p)}
        for process in self._cluster_processes():
            left.setdefault(process.pid, process)
        return list(left.values())

    def _cluster_processes(self) -> list[psutil.Process]:
        # PostgreSQL's server processes all work in the cluster directory, a path of our own.
        cluster = self.cluster_dir.resolve()
        found = []
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if _alive(process) and Path(process.cwd()) == cluster:
                    found.append(process)
        return found

    def kill(self) -> None:
        """Safety net: SIGKILL whatever of this instance still runs, then reap ``hodei up``."""
        if self.process is None:
            return
        if self.process.returncode is None:
            # Not reaped yet, so the group id cannot belong to anyone else.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        postmaster = self.watched.get(self.postmaster_pid() or -1)
        if postmaster is not None and _alive(postmaster):
            # An immediate shutdown first: a SIGKILLed postmaster leaves its shared memory.
            with contextlib.suppress(psutil.Error):
                postmaster.send_signal(signal.SIGQUIT)
                postmaster.wait(5)
        for process in self.leftovers():
            with contextlib.suppress(psutil.Error):
                process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)

    def log_tail(self, lines: int = 80) -> str:
        """The last lines of the ``hodei up`` log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no log at {self.log_path})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last lines of {self.log_path} ---\n{tail}"

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``hodei ARGS --server ADDRESS``."""
        return run([HODEI, *args, "--server", self.address], timeout=timeout)

    def spawn_cli(self, *args: str) -> subprocess.Popen[bytes]:
        """Start ``hodei ARGS --server ADDRESS`` with its output in pipes."""
        return subprocess.Popen(
            [HODEI, *args, "--server", self.address],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=product_env(),
        )

    def grpc_raw(
        self, method: str, body: Mapping[str, Any] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``grpcurl -plaintext [-d BODY] ADDRESS METHOD`` as it ran."""
        data = ["-d", json.dumps(body)] if body is not None else []
        return run([GRPCURL, "-plaintext", *data, self.address, method], timeout=30)

    def grpc(self, method: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The JSON answer of a grpcurl call that must succeed."""
        result = self.grpc_raw(method, body)
        assert result.returncode == 0, f"grpcurl {method} failed:\n{result.stderr}"
        answer: dict[str, Any] = json.loads(result.stdout)
        return answer

    def get_job(self, job_id: str) -> dict[str, Any]:
        """GetJob through grpcurl."""
        return self.grpc("hodei.v1.JobExecutionService/GetJob", {"job_id": job_id})

    def wait_job(self, job_id: str, timeout: float = 30) -> dict[str, Any]:
        """Poll GetJob until the job is in a final state."""
        deadline = time.monotonic() + timeout
        job = self.get_job(job_id)
        while job["state"] not in FINAL_STATES:
            assert time.monotonic() < deadline, (
                f"job {job_id} still {job['state']} after {timeout} s"
            )
            time.sleep(_POLL)
            job = self.get_job(job_id)
        return job

    def log_lines(self, job_id: str) -> list[dict[str, Any]]:
        """GetLogs through grpcurl: the job's log lines from the start."""
        answer = self.grpc("hodei.v1.LogStreamService/GetLogs", {"job_id": job_id})
        lines: list[dict[str, Any]] = answer.get("lines", [])
        return lines

    def job_count(self) -> int:
        """How many jobs exist, in any state (GetQueueStatus)."""
        status = self.grpc("hodei.v1.SchedulerService/GetQueueStatus")
        return sum(int(count) for count in status["jobs_by_state"].values())

    def db_url(self) -> str:
        """What ``hodei db url --data-dir D`` prints (asked once per start)."""
        if self._db_url is None:
            result = run([HODEI, "db", "url", "--data-dir", str(self.data_dir)])
            assert result.returncode == 0, result.stderr
            self._db_url = result.stdout.strip()
        return self._db_url

    def psql(self, query: str) -> list[list[str]]:
        """``psql "$(hodei db url)" -c QUERY``."""
        return psql(self.db_url(), query)


def new_data_dir() -> Path:
    """A fresh data directory the ``postgres`` user can traverse (tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="hodei-e2e-"))
    os.chmod(path, 0o755)
    return path


class HodeiLauncher:
    """Starts ``hodei up`` instances and cleans up after all of them."""

    def __init__(self) -> None:
        self.instances: list[HodeiUp] = []
        self._data_dirs: list[Path] = []

    def __call__(
        self,
        data_dir: Path | None = None,
        *,
        workers: int = 2,
        wrap: Wrap | None = None,
        env: Mapping[str, str] | None = None,
    ) -> HodeiUp:
        """Start one instance and wait until it is ready.

        Args:
            data_dir: Its data directory; a new one when None.
            workers: How many local workers it keeps.
            wrap: Turns the ``hodei up`` command line into the one to run.
            env: Variables set on top of the cleaned environment.
        """
        if data_dir is None:
            data_dir = new_data_dir()
            self._data_dirs.append(data_dir)
        instance = HodeiUp(data_dir, workers=workers, wrap=wrap, env=product_env(**(env or {})))
        self.instances.append(instance)
        instance.start()
        return instance

    def cleanup(self) -> None:
        """Kill what is left of every instance and remove the data directories."""
        for instance in reversed(self.instances):
            instance.kill()
        for path in self._data_dirs:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def hodei() -> Iterator[HodeiUp]:
    """One ``hodei up`` with 2 local workers shared by the tests that only submit jobs.

    Its teardown is itself a check: Ctrl-C must stop it and leave no process behind.
    """
    launcher = HodeiLauncher()
    try:
        instance = launcher()
        yield instance
        report = instance.stop()
        assert report.exit_code == 0, f"hodei up exited with {report.exit_code} on Ctrl-C"
    finally:
        launcher.cleanup()


@pytest.fixture
def launch_hodei() -> Iterator[HodeiLauncher]:
    """Start private ``hodei up`` instances (for tests that stop or restart one)."""
    launcher = HodeiLauncher()
    try:
        yield launcher
    finally:
        launcher.cleanup()


@pytest.fixture(scope="session")
def hodei_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the ``hodei`` command with the given arguments (no ``--server`` added)."""

    def call(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run([HODEI, *args], timeout=timeout)

    return call


def _instances_of(item: pytest.Item) -> list[HodeiUp]:
    found: list[HodeiUp] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, HodeiUp):
            found.append(value)
        elif isinstance(value, HodeiLauncher):
            found += value.instances
    return found


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, attach the log of every ``hodei up`` the test used."""
    report: pytest.TestReport = yield
    if report.failed:
        for instance in _instances_of(item):
            report.sections.append((f"hodei up log ({instance.address})", instance.log_tail()))
    return report


# The browser tests' Chromium (test_web_ui.py, test_web_login.py).
CHROMIUM = os.environ.get("HODEI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
SCREENSHOTS = Path(
    os.environ.get("HODEI_SCREENSHOT_DIR") or Path(__file__).parents[2] / "docs" / "screenshots"
)
UI_TIMEOUT_MS = 20_000
expect.set_options(timeout=UI_TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make test` installs it (apt-get chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
