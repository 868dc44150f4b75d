"""What the benchmarks share: errors, ports, notes, py-spy; and the processes of dispatch.py
(its PostgreSQL, ``hodei up``, CPU accounting)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg

from hodei.store.embedded import EmbeddedPostgres

LOOPBACK = "127.0.0.1"
# A second database in the same cluster for the floor measurements.
FLOOR_DATABASE = "bench"
STOP_TIMEOUT_S = 40.0
PROFILE_STOP_TIMEOUT_S = 60.0


class BenchError(Exception):
    """The benchmark could not run (as opposed to: it ran and missed a target)."""


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
    return port


def hodei_command() -> list[str]:
    script = Path(sys.executable).with_name("hodei")
    return [str(script)] if script.exists() else [sys.executable, "-m", "hodei"]


class HodeiUp:
    """The real ``hodei up`` CLI as a subprocess leading its own process group."""

    def __init__(self, data_dir: Path, database_url: str, workers: int, log_level: str) -> None:
        self.data_dir = data_dir
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.log_file = data_dir / "hodei-up.log"
        self._database_url = database_url
        self._workers = workers
        self._log_level = log_level
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise BenchError("hodei up is not running")
        return self._process.pid

    def start(self) -> None:
        argv = [
            *hodei_command(),
            "up",
            *("--data-dir", str(self.data_dir / "hodei")),
            *("--bind", LOOPBACK),
            *("--grpc-port", str(self.grpc_port)),
            *("--http-port", str(self.http_port)),
            *("--workers", str(self._workers)),
            *("--log-level", self._log_level),
        ]
        env = os.environ | {"HODEI_DATABASE_URL": self._database_url}
        with self.log_file.open("ab") as log:
            # A session of its own: a Ctrl-C at the terminal reaches only this script, which
            # then stops hodei up in order; its workers share its process group.
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def worker_pids(self) -> list[int]:
        with contextlib.suppress(psutil.NoSuchProcess):
            return [child.pid for child in psutil.Process(self.pid).children()]
        return []

    def stop(self) -> None:
        """SIGINT (the CLI stops its workers, then itself); SIGKILL to the group as fallback."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_TIMEOUT_S)
        # The group outlives its leader when a worker is left behind: kill what remains.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        self._process = None


def process_cpu(pid: int, *, children: bool = False) -> float:
    """CPU seconds of a process, or of the children it has reaped."""
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        times = psutil.Process(pid).cpu_times()
        if children:
            return times.children_user + times.children_system
        return times.user + times.system
    return 0.0


@dataclass
class CpuMeter:
    """CPU seconds spent by each part of the system between two snapshots."""

    server_pid: int
    worker_pids: list[int]
    postmaster_pid: int
    start: dict[str, float] = field(default_factory=dict)

    def snapshot(self) -> dict[str, float]:
        postgres = [self.postmaster_pid]
        with contextlib.suppress(psutil.NoSuchProcess):
            postgres += [c.pid for c in psutil.Process(self.postmaster_pid).children()]
        return {
            "server": process_cpu(self.server_pid),
            "workers": sum(process_cpu(pid) for pid in self.worker_pids),
            "job processes": sum(process_cpu(pid, children=True) for pid in self.worker_pids),
            "postgres": sum(process_cpu(pid) for pid in postgres),
            "bench client": process_cpu(os.getpid()),
        }

    def begin(self) -> None:
        self.start = self.snapshot()

    def spent(self) -> dict[str, float]:
        end = self.snapshot()
        return {name: end[name] - self.start.get(name, 0.0) for name in end}


class Profiler:
    """``py-spy record`` on some processes for the span of a ``with`` block. ``started`` and
    ``stopped`` hear of each py-spy process (for a benchmark that tracks what it started)."""

    def __init__(
        self,
        out_dir: Path,
        targets: dict[str, int],
        *,
        gil: bool = True,
        started: Callable[[int], None] = lambda _pid: None,
        stopped: Callable[[int], None] = lambda _pid: None,
    ) -> None:
        self.out_dir = out_dir
        self.targets = targets
        self._gil = gil
        self._started = started
        self._stopped = stopped
        self._processes: list[subprocess.Popen[bytes]] = []

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy"
        )
        if py_spy is None:
            raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        try:
            for name, pid in self.targets.items():
                argv = [
                    py_spy,
                    "record",
                    *("--pid", str(pid), "--rate", "100", "--format", "raw"),
                    *("--nonblocking", "--function"),
                    # Only the thread holding the GIL: an asyncio process's Python work.
                    *(["--gil"] if self._gil else []),
                    *("--output", str(self.out_dir / f"{name}.txt")),
                ]
                with (self.out_dir / f"{name}.py-spy.log").open("wb") as log:
                    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
                self._started(process.pid)
                self._processes.append(process)
            time.sleep(1.0)  # py-spy needs a moment to attach
            yield
        finally:
            for process in self._processes:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGINT)
            for process in self._processes:
                try:
                    process.wait(timeout=PROFILE_STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
                self._stopped(process.pid)

    def top_frames(self, limit: int = 15) -> dict[str, list[tuple[str, float]]]:
        """Per target, the Hodei and logging frames holding most GIL samples (inclusive)."""
        result = {}
        for name in self.targets:
            path = self.out_dir / f"{name}.txt"
            if path.exists():
                result[name] = _inclusive_shares(path, limit)
        return result


# Frames worth naming in the summary: Hodei's own code (below the CLI entry points) and the
# logging calls, whose handler may cost more than the work they describe.
_ENTRY_FRAMES = ("hodei/cli.py", "hodei/__main__.py", "(hodei:")


def _interesting(frame: str) -> bool:
    if frame.startswith("Logger."):
        return True
    return "(hodei/" in frame and not any(entry in frame for entry in _ENTRY_FRAMES)


def _inclusive_shares(path: Path, limit: int) -> list[tuple[str, float]]:
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        for frame in {f for f in stack.split(";") if _interesting(f)}:
            inclusive[frame] += count
    if total == 0:
        return []
    return [(frame, count / total) for frame, count in inclusive.most_common(limit)]


async def start_postgres(pg: EmbeddedPostgres, statement_stats: bool) -> str:
    """Start the cluster, with pg_stat_statements loaded when asked (and installed)."""
    url = await pg.start()
    if statement_stats:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements'"
            )
            if await cursor.fetchone() is None:
                raise BenchError("pg_stat_statements is not installed: use --no-statement-stats")
            await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        # shared_preload_libraries takes effect at a start.
        await pg.stop()
        url = await pg.start()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    await pg.create_database(FLOOR_DATABASE)
    return url


def save_logs(work_dir: Path, results_dir: Path) -> Path:
    """Copy the logs of a failed run (hodei up, its workers, PostgreSQL) out of ``work_dir``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = results_dir / f"logs-{stamp}"
    target.mkdir(parents=True, exist_ok=True)
    for log in (*work_dir.glob("*.log"), *work_dir.glob("*/*.log"), *work_dir.glob("*/*/*.log")):
        shutil.copy(log, target / log.name)
    return target
