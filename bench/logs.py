"""Log throughput and live-delivery latency of a real ``hodei server`` with real workers.

Everything runs as separate processes on this machine, all on 127.0.0.1: a PostgreSQL cluster
of its own (``EmbeddedPostgres``, fsync on, ``pg_stat_statements`` when installed), the real
``hodei server``, real ``hodei worker`` agents (registered with ``hodei worker-token``), and
subscriber processes (this script with ``--role subscriber``) that hold gRPC ``SubscribeLogs``
streams with ``follow=true``.

1. Throughput: one job prints ``--lines`` numbered lines of ``--line-bytes`` bytes as fast as
   Python can. It prints line 1 and waits until its subscriber has that line live, then the
   benchmark lets it go (a file appears) and measures, from that instant, lines per second into
   PostgreSQL (the ``hodei_logs`` notification of the batch holding the last line) and to the
   subscriber (arrival of the last line), the peak RSS of the server and of the worker agent
   (psutil, every 100 ms), CPU seconds per process and per line, and checks that every line
   reached the subscriber and PostgreSQL in order and without a gap.
2. Fan-out latency: ``--fanout-jobs`` jobs each print ``--burst`` lines every ``--interval-ms``
   for ``--fanout-seconds``, every line carrying ``time.time_ns()`` from when it was written;
   ``--subscribers-per-job`` live subscribers per job (spread over ``--subscriber-processes``
   processes) note when each line arrives: p50/p99 of line written -> line received, and, from
   PostgreSQL, line written -> worker read it (the line's stored timestamp).
3. Stage costs: the product's own per-line functions, timed in this process on the same lines
   (worker split/number/classify/proto, wire encode/decode, the server's JSON document, the
   per-subscriber response, the client's decode), to tell where the time of (1) goes.

Targets: >= 100,000 lines/s into PostgreSQL and to a subscriber on 2 cores; server peak RSS
<= 200 MB; no line lost; fan-out p99 < 1 s.

Exit codes: 0 ran and nothing was lost; 1 a line was lost or a phase timed out; 2 the benchmark
could not run; 3 a target was missed (only with ``--check-targets``); 130 interrupted.

Run (from the repository, with the package importable)::

    .venv/bin/python bench/logs.py                       # full size, ~2 minutes
    .venv/bin/python bench/logs.py --lines 200000 --fanout-seconds 10
    .venv/bin/python bench/logs.py --scenario throughput --profile bench/results/logs-profile
"""

from __future__ import annotations

import os

# Before grpc is imported: this process forks (pg_ctl run as another user), and gRPC's fork
# handlers, on while other threads use gRPC, crashed the child (hodei itself sets this too).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
# The servers it starts listen on loopback only: dev mode, no tokens.
os.environ.setdefault("HODEI_DEV_MODE", "1")

import argparse
import asyncio
import contextlib
import json
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
import psutil
import psycopg
from benchlib import LOOPBACK, BenchError, Profiler, free_port, note
from psycopg.rows import dict_row

import hodei
from hodei.api.grpc import convert
from hodei.domain.logs import LogChunk, LogStream, classify_level
from hodei.services.loghub import LogHub
from hodei.store.database import Database
from hodei.store.embedded import EmbeddedPostgres
from hodei.store.logs import LogRepository
from hodei.v1 import (
    jobs_pb2,
    jobs_pb2_grpc,
    logs_pb2,
    logs_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
    worker_pb2,
)
from hodei.worker.capture import READ_CHUNK, LogBatcher, SecretMasker, pump_lines

GRPC_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
RSS_INTERVAL_S = 0.1
STOP_TIMEOUT_S = 20.0
READY_TIMEOUT_S = 60.0
FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED", "TIMEOUT")
MB = 1024 * 1024
THIS_SCRIPT = str(Path(__file__).resolve())

TARGET_LINES_PER_S = 100_000
TARGET_SERVER_RSS_MB = 200
TARGET_P99_MS = 1000

# The job of scenario 1: line 1, then wait for the go file, then the rest as fast as it can
# (its own 64 KiB buffer: the job is not the bottleneck), then the time it finished writing.
FLOOD_SCRIPT = """\
import os, sys, time
n = int(os.environ["BENCH_LINES"])
width = int(os.environ["BENCH_WIDTH"])
out = open(1, "w", buffering=1 << 16, closefd=False, encoding="ascii")
out.write("%09d ready\\n" % 0)
out.flush()
deadline = time.monotonic() + float(os.environ["BENCH_WAIT_S"])
while not os.path.exists(os.environ["BENCH_GO"]):
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.001)
pad = "x" * (width - 11)
w = out.write
for i in range(1, n):
    w("%09d %s\\n" % (i, pad))
out.flush()
with open(os.environ["BENCH_DONE"], "w") as f:
    f.write(str(time.time_ns()))
"""

# The jobs of scenario 2: line 1, wait for the go file, then BENCH_BURST lines every
# BENCH_INTERVAL_S, each starting with time.time_ns() taken as it is written.
TICKER_SCRIPT = """\
import os, sys, time
burst = int(os.environ["BENCH_BURST"])
interval = float(os.environ["BENCH_INTERVAL_S"])
ticks = int(os.environ["BENCH_TICKS"])
index = int(os.environ["BENCH_INDEX"])
width = int(os.environ["BENCH_WIDTH"])
out = open(1, "w", buffering=1 << 16, closefd=False, encoding="ascii")
out.write("ready\\n")
out.flush()
deadline = time.monotonic() + float(os.environ["BENCH_WAIT_S"])
while not os.path.exists(os.environ["BENCH_GO"]):
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.001)
pad = "x" * max(width - 32, 1)
w, now = out.write, time.time_ns
start = time.monotonic()
k = 0
for tick in range(ticks):
    delay = start + tick * interval - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    for _ in range(burst):
        w("%019d %02d %07d %s\\n" % (now(), index, k, pad))
        k += 1
    out.flush()
"""


def touch(path: Path) -> None:
    path.touch()


def hodei_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "hodei", *args]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of sorted ``values`` by nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    rank = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[rank]


# --- processes ------------------------------------------------------------------------------

# Every process this script starts, by PID, so that the last clean-up can reach it.
STARTED: dict[int, psutil.Process] = {}


def remember(pid: int) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        STARTED[pid] = psutil.Process(pid)


def forget(pid: int) -> None:
    STARTED.pop(pid, None)


def kill_leftovers() -> None:
    """SIGKILL whatever this script started that still runs (create time checked by psutil)."""
    for pid, process in list(STARTED.items()):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                note(f"killing leftover process {pid} ({process.name()})")
                process.kill()
        STARTED.pop(pid, None)


class Child:
    """A subprocess leading its own process group, its output in a log file."""

    def __init__(self, name: str, argv: list[str], log_file: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_file = log_file
        with log_file.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        remember(self.process.pid)
        self.ps = psutil.Process(self.process.pid)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_file.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def descendants(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.NoSuchProcess):
            return self.ps.children(recursive=True)
        return []

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, then SIGKILL to its process group; waits for it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        STARTED.pop(self.process.pid, None)


class Cluster:
    """PostgreSQL, one ``hodei server`` and some ``hodei worker`` processes."""

    def __init__(self, work_dir: Path, log_level: str) -> None:
        self.work_dir = work_dir
        self.log_level = log_level
        self.pg = EmbeddedPostgres(work_dir / "pg", fsync=True)
        self.url = ""
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.server: Child | None = None
        self.workers: list[Child] = []
        self.statement_stats = False

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"

    async def start_postgres(self) -> None:
        self.url = await self.pg.start()
        if self.pg.pid:
            remember(self.pg.pid)
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements'"
            )
            if await cursor.fetchone() is None:
                note("pg_stat_statements is not installed: no per-statement figures")
                return
            await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        await self.pg.stop()  # shared_preload_libraries takes effect at a start
        self.url = await self.pg.start()
        if self.pg.pid:
            remember(self.pg.pid)
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        self.statement_stats = True

    def start_server(self) -> None:
        argv = hodei_argv(
            "server",
            *("--database-url", self.url),
            *("--bind", LOOPBACK),
            *("--grpc-port", str(self.grpc_port)),
            *("--http-port", str(self.http_port)),
            *("--data-dir", str(self.work_dir / "hodei")),
            *("--log-level", self.log_level),
        )
        self.server = Child("server", argv, self.work_dir / "server.log")

    def start_worker(self, cpus: float, memory_mb: int) -> None:
        token = subprocess.run(
            hodei_argv("worker-token", "--database-url", self.url),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if token.returncode != 0 or not token.stdout.strip():
            raise BenchError(f"hodei worker-token failed: {token.stderr.strip()}")
        index = len(self.workers)
        work = self.work_dir / f"worker-{index}"
        work.mkdir()
        argv = hodei_argv(
            "worker",
            *("--server", self.address),
            *("--otp", token.stdout.strip().splitlines()[-1]),
            *("--work-dir", str(work)),
            *("--cpus", str(cpus)),
            *("--memory-mb", str(memory_mb)),
            *("--drain-timeout", "2"),
            *("--log-level", self.log_level),
        )
        self.workers.append(Child(f"worker-{index}", argv, self.work_dir / f"worker-{index}.log"))

    def postgres_processes(self) -> list[psutil.Process]:
        if not self.pg.pid:
            return []
        with contextlib.suppress(psutil.NoSuchProcess):
            main = psutil.Process(self.pg.pid)
            return [main, *main.children()]
        return []

    def stop(self) -> None:
        """Workers (they drain), the server, whatever they left, then PostgreSQL."""
        left = [p for w in self.workers for p in w.descendants()]
        for worker in self.workers:
            note(f"stopping {worker.name} (pid {worker.pid})…")
            worker.stop()
        if self.server is not None:
            note(f"stopping the server (pid {self.server.pid})…")
            left += self.server.descendants()
            self.server.stop()
        for process in left:  # job processes lead their own sessions: by PID
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                if process.is_running():
                    process.kill()
        note("stopping PostgreSQL…")
        postmaster = self.pg.pid
        asyncio.run(self.pg.stop())
        if postmaster:
            STARTED.pop(postmaster, None)


async def wait_for_workers(cluster: Cluster, count: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    ready = 0
    async with grpc.aio.insecure_channel(cluster.address) as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        while time.monotonic() < deadline:
            if cluster.server is None or not cluster.server.alive():
                tail = cluster.server.log_tail() if cluster.server else ""
                raise BenchError(f"the server exited while starting:\n{tail}")
            dead = [w for w in cluster.workers if not w.alive()]
            if dead:
                raise BenchError(f"{dead[0].name} exited while starting:\n{dead[0].log_tail()}")
            with contextlib.suppress(grpc.aio.AioRpcError):
                response = await stub.ListWorkers(scheduler_pb2.ListWorkersRequest(), timeout=2)
                ready = sum(1 for w in response.workers if w.state == scheduler_pb2.WORKER_READY)
                if ready >= count:
                    return
            await asyncio.sleep(0.2)
    raise BenchError(f"only {ready} of {count} workers READY after {READY_TIMEOUT_S:g} s")


async def wait_for_server(cluster: Cluster) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with grpc.aio.insecure_channel(cluster.address) as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        while time.monotonic() < deadline:
            if cluster.server is None or not cluster.server.alive():
                tail = cluster.server.log_tail() if cluster.server else ""
                raise BenchError(f"the server exited while starting:\n{tail}")
            with contextlib.suppress(grpc.aio.AioRpcError):
                await stub.GetQueueStatus(scheduler_pb2.GetQueueStatusRequest(), timeout=2)
                return
            await asyncio.sleep(0.2)
    raise BenchError("the server did not answer within a minute")


# --- measuring processes --------------------------------------------------------------------


def rss(process: psutil.Process) -> int:
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        return int(process.memory_info().rss)
    return 0


def own_cpu(process: psutil.Process) -> float:
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        times = process.cpu_times()
        return float(times.user + times.system)
    return 0.0


def reaped_cpu(process: psutil.Process) -> float:
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        times = process.cpu_times()
        return float(times.children_user + times.children_system)
    return 0.0


class RssSampler:
    """Peak RSS per label, sampled every 100 ms in a thread, per window.

    Finding processes (children of a process) scans all of /proc, which costs real CPU on a
    busy machine: the lists are found again only every ``REFRESH_TICKS`` samples."""

    REFRESH_TICKS = 10

    def __init__(self, targets: dict[str, Callable[[], list[psutil.Process]]]) -> None:
        self._targets = targets
        self._found: dict[str, list[psutil.Process]] = {}
        self._peaks: dict[str, int] = {}
        self._samples = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        tick = 0
        while not self._stop.wait(RSS_INTERVAL_S):
            if tick % self.REFRESH_TICKS == 0:
                self._found = {label: find() for label, find in self._targets.items()}
            tick += 1
            sample = {label: sum(rss(p) for p in found) for label, found in self._found.items()}
            with self._lock:
                self._samples += 1
                for label, value in sample.items():
                    self._peaks[label] = max(self._peaks.get(label, 0), value)

    def reset(self) -> None:
        found = {label: find() for label, find in self._targets.items()}
        with self._lock:
            self._found = found
            self._peaks = {}
            self._samples = 0

    def peaks_mb(self) -> dict[str, float]:
        with self._lock:
            peaks = {label: value / MB for label, value in self._peaks.items()}
            peaks["(samples)"] = float(self._samples)
            return peaks


class CpuMeter:
    """CPU seconds per part of the system between ``begin`` and ``spent``."""

    def __init__(self, cluster: Cluster, workers: list[Child]) -> None:
        self._cluster = cluster
        self._workers = workers
        self._start: dict[str, float] = {}

    def snapshot(self) -> dict[str, float]:
        jobs = sum(reaped_cpu(w.ps) for w in self._workers) + sum(
            own_cpu(p) for w in self._workers for p in w.descendants()
        )
        server = self._cluster.server
        return {
            "server": own_cpu(server.ps) if server else 0.0,
            "worker agent(s)": sum(own_cpu(w.ps) for w in self._workers),
            "job process(es)": jobs,
            "postgres": sum(own_cpu(p) for p in self._cluster.postgres_processes()),
            "bench process": own_cpu(psutil.Process()),
        }

    def begin(self) -> None:
        self._start = self.snapshot()

    def spent(self) -> dict[str, float]:
        end = self.snapshot()
        return {name: end[name] - self._start.get(name, 0.0) for name in end}


def profile_top(
    profiler: Profiler, limit: int = 25
) -> dict[str, dict[str, list[tuple[str, float]]]]:
    """Per target: the functions with most samples on top of the stack (self) and the Hodei
    functions with most samples anywhere in the stack (inclusive)."""
    result = {}
    for name in profiler.targets:
        path = profiler.out_dir / f"{name}.txt"
        if path.exists():
            result[name] = _stack_shares(path, limit)
    return result


def _stack_shares(path: Path, limit: int) -> dict[str, list[tuple[str, float]]]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in {f for f in frames if "hodei/" in f and "hodei/cli.py" not in f}:
            inclusive[frame] += count
    if not total:
        return {}
    return {
        "self": [(f, c / total) for f, c in own.most_common(limit)],
        "inclusive (hodei)": [(f, c / total) for f, c in inclusive.most_common(limit)],
    }


# --- the subscriber processes ---------------------------------------------------------------


@dataclass
class StreamState:
    """What one SubscribeLogs stream received."""

    job_id: str
    expected: int = 1
    responses: int = 0
    error: str = ""
    end: str = ""
    last_ns: int = 0
    live: bool = False


def received_lines(response: logs_pb2.SubscribeLogsResponse) -> Iterator[tuple[int, str]]:
    """(sequence, text) of every line of a response, chunked (what is asked for) or not."""
    for chunk in response.chunks:
        yield from enumerate(chunk.body.split("\n"), chunk.first_sequence)
    for line in response.lines:
        yield line.sequence, line.line


def check_numbered(state: StreamState, response: logs_pb2.SubscribeLogsResponse) -> None:
    """Scenario 1: sequence N carries the number N - 1, in order, without a gap."""
    expected = state.expected
    for sequence, text in received_lines(response):
        if sequence != expected or not text.startswith(f"{expected - 1:09d}"):
            state.error = f"expected line {expected}, got {sequence}: {text[:24]!r}"
            return
        expected += 1
    state.expected = expected


def take_delays(
    state: StreamState, response: logs_pb2.SubscribeLogsResponse, now_ns: int, run: SubscriberRun
) -> None:
    """Scenario 2: in order without a gap; for every line after the first, when it was written
    (ms) and its delay (µs)."""
    expected = state.expected
    delays, written = run.delays, run.written_ms
    for sequence, text in received_lines(response):
        if sequence != expected:
            state.error = f"expected line {expected}, got {sequence}"
            return
        if expected > 1:
            at = int(text[:19])
            delays.append((now_ns - at) // 1000)
            written.append(at // 1_000_000)
        expected += 1
    state.expected = expected


@dataclass
class SubscriberRun:
    address: str
    mode: str
    deadline: float
    states: list[StreamState] = field(default_factory=list)
    delays: array[int] = field(default_factory=lambda: array("q"))
    written_ms: array[int] = field(default_factory=lambda: array("q"))
    timeline: list[tuple[int, int]] = field(default_factory=list)
    live_sent: bool = False


async def follow_one(run: SubscriberRun, state: StreamState) -> None:
    # Chunked, as `hodei logs` asks: a reader of a busy log has no use for a message per line.
    request = logs_pb2.SubscribeLogsRequest(
        job_id=state.job_id, from_sequence=1, follow=True, chunked=True
    )
    async with grpc.aio.insecure_channel(run.address, options=GRPC_OPTIONS) as channel:
        stub = logs_pb2_grpc.LogStreamServiceStub(channel)
        call = stub.SubscribeLogs(request, timeout=max(run.deadline - time.monotonic(), 1))
        try:
            async for response in call:
                now = time.time_ns()
                state.responses += 1
                if state.error:
                    continue
                if run.mode == "check":
                    check_numbered(state, response)
                    run.timeline.append((now, state.expected - 1))
                else:
                    take_delays(state, response, now, run)
                state.last_ns = now
                if not state.live and state.expected > 1:
                    state.live = True
                    announce_live(run)
            state.end = "the job ended"
        except grpc.aio.AioRpcError as error:
            state.end = f"{error.code().name}: {error.details()}"


def announce_live(run: SubscriberRun) -> None:
    if not run.live_sent and all(s.live for s in run.states):
        run.live_sent = True
        print("live", flush=True)


async def subscriber_main(run: SubscriberRun) -> None:
    await asyncio.gather(*(follow_one(run, state) for state in run.states))


def subscriber_role(args: argparse.Namespace) -> None:
    """A subscriber process: job ids (JSON) on stdin, "ready"/"live"/"done" on stdout."""
    print("ready", flush=True)
    spec = json.loads(sys.stdin.readline() or "{}")
    run = SubscriberRun(
        address=args.address,
        mode=args.mode,
        deadline=time.monotonic() + float(spec.get("timeout_s", 600)),
    )
    run.states = [
        StreamState(job_id) for job_id in spec.get("jobs", []) for _ in range(spec["per_job"])
    ]
    started = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_SELF)  # not the imports and start-up
    asyncio.run(subscriber_main(run))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = Path(args.out)
    with out.with_suffix(".bin").open("wb") as samples:
        run.delays.tofile(samples)
        run.written_ms.tofile(samples)
    cpu = usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime
    result = {
        "streams": [asdict(s) for s in run.states],
        "timeline": run.timeline[:: max(1, len(run.timeline) // 400)],
        "cpu_s": cpu,
        "max_rss_mb": usage.ru_maxrss / 1024,
        "elapsed_s": time.monotonic() - started,
    }
    out.write_text(json.dumps(result))
    print("done", flush=True)


class Subscriber:
    """The bench's side of one subscriber process."""

    def __init__(self, process: asyncio.subprocess.Process, out: Path) -> None:
        self.process = process
        self.out = out

    @classmethod
    async def start(cls, address: str, mode: str, out: Path) -> Subscriber:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            THIS_SCRIPT,
            *("--role", "subscriber", "--address", address, "--mode", mode),
            *("--out", str(out)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        remember(process.pid)
        subscriber = cls(process, out)
        await subscriber.expect("ready", READY_TIMEOUT_S)
        return subscriber

    async def send(self, jobs: list[str], per_job: int, timeout_s: float) -> None:
        assert self.process.stdin is not None
        spec = {"jobs": jobs, "per_job": per_job, "timeout_s": timeout_s}
        self.process.stdin.write((json.dumps(spec) + "\n").encode())
        await self.process.stdin.drain()

    async def expect(self, word: str, timeout_s: float) -> None:
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout_s)
        except TimeoutError:
            raise BenchError(f"a subscriber did not say {word!r} within {timeout_s:g} s") from None
        if line.decode().strip() != word:
            raise BenchError(f"a subscriber said {line!r} instead of {word!r}")

    def result(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.out.read_text())
        return data

    def samples(self) -> tuple[array[int], array[int]]:
        """(delay µs, written ms) of every line received after the first."""
        both = array("q")
        both.frombytes(self.out.with_suffix(".bin").read_bytes())
        half = len(both) // 2
        return both[:half], both[half:]

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 10)
        STARTED.pop(self.process.pid, None)


# --- PostgreSQL side ------------------------------------------------------------------------


class StoredProgress:
    """LISTENs to ``hodei_logs`` (``job_id:last_sequence`` per stored batch)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self.watched = ""
        self.target = 0
        self.reached_ns = 0
        self.timeline: list[tuple[int, int]] = []
        # Other jobs whose notifications are kept: (received ns, job id, last sequence).
        self.recorded: set[str] = set()
        self.stored: list[tuple[int, str, int]] = []
        self._reached = asyncio.Event()

    async def __aenter__(self) -> StoredProgress:
        self._conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        await self._conn.execute("LISTEN hodei_logs")
        self._task = asyncio.create_task(self._listen(self._conn))
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
                await self._task
        if self._conn is not None:
            await self._conn.close()

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async for notification in conn.notifies():
            now = time.time_ns()
            # "job_id:last_sequence:origin"
            job, _, detail = notification.payload.partition(":")
            sequence = int(detail.partition(":")[0] or 0)
            if job in self.recorded:
                self.stored.append((now, job, sequence))
            if job != self.watched:
                continue
            self.timeline.append((now, sequence))
            if sequence >= self.target and not self._reached.is_set():
                self.reached_ns = now
                self._reached.set()

    async def wait(self, timeout_s: float) -> bool:
        """Until the watched job's line ``target`` is stored (polled too, once a second)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reached.wait(), 1.0)
                return True
            if await max_sequence(self._url, self.watched) >= self.target:
                self.reached_ns = self.reached_ns or time.time_ns()
                note("  (the last line was seen stored by polling, not by its notification)")
                return True
        return False


async def max_sequence(url: str, job_id: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT coalesce(max(last_sequence), 0) FROM job_log_chunks WHERE job_id = %s",
            (job_id,),
        )
        row = await cursor.fetchone()
        return int(row[0]) if row else 0


VERIFY_NUMBERED = """
SELECT count(*) AS lines, coalesce(min(sequence), 0) AS first, coalesce(max(sequence), 0) AS last,
       count(*) FILTER (WHERE left(line, 9) <> lpad((sequence - 1)::text, 9, '0')) AS misplaced
FROM job_logs WHERE job_id = %s
"""

WRITE_TO_READ = """
SELECT count(*) AS lines,
       percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (
           ORDER BY (extract(epoch FROM ts) * 1e6 - left(line, 19)::bigint / 1000.0)::float8
       ) AS delays_us,
       max(extract(epoch FROM ts) * 1e6 - left(line, 19)::bigint / 1000.0)::float8 AS max_us
FROM job_logs WHERE job_id = ANY (%s::uuid[]) AND sequence > 1
"""

# When the last line of each stored batch was written, for "written -> stored".
WRITTEN_AT = """
SELECT n.received_ns - left(l.line, 19)::bigint AS delay_ns
FROM unnest(%s::uuid[], %s::bigint[], %s::bigint[]) AS n (job_id, sequence, received_ns)
JOIN job_logs l USING (job_id, sequence)
WHERE l.sequence > 1
"""

JOB_STATES = "SELECT id::text AS id, state FROM jobs WHERE id = ANY (%s::uuid[])"
JOBS_PER_WORKER = """
SELECT count(*) AS jobs FROM jobs WHERE id = ANY (%s::uuid[]) GROUP BY worker_id ORDER BY 1 DESC
"""
JOB_ERRORS = """
SELECT state || coalesce(': ' || nullif(error_message, ''), '') AS outcome, count(*) AS jobs
FROM jobs WHERE id = ANY (%s::uuid[]) GROUP BY 1
"""

STATEMENTS = """
SELECT calls, total_exec_time AS total_ms, rows, query
FROM pg_stat_statements
WHERE query LIKE '%job_log%' AND query NOT LIKE '%pg_stat_statements%'
ORDER BY total_exec_time DESC LIMIT 5
"""


async def wait_jobs_final(url: str, job_ids: list[str], timeout_s: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        while True:
            cursor = await conn.execute(JOB_STATES, (job_ids,))
            states = {row["id"]: row["state"] for row in await cursor.fetchall()}
            if all(s in FINAL_STATES for s in states.values()) or time.monotonic() > deadline:
                return states
            await asyncio.sleep(0.2)


async def query_one(url: str, sql: str, params: Sequence[Any]) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        cursor = await conn.execute(sql, params)
        return dict(await cursor.fetchone() or {})


async def reset_statements(cluster: Cluster) -> None:
    if cluster.statement_stats:
        await query_one(cluster.url, "SELECT 1 AS reset FROM pg_stat_statements_reset()", ())


async def read_statements(cluster: Cluster) -> list[dict[str, Any]]:
    if not cluster.statement_stats:
        return []
    async with await psycopg.AsyncConnection.connect(
        cluster.url, autocommit=True, row_factory=dict_row
    ) as conn:
        cursor = await conn.execute(STATEMENTS)
        rows = await cursor.fetchall()
    return [
        {
            "statement": " ".join(str(row["query"]).split())[:60],
            "calls": int(row["calls"]),
            "rows": int(row["rows"]),
            "total_ms": round(float(row["total_ms"]), 1),
            "ms_per_call": round(float(row["total_ms"]) / max(int(row["calls"]), 1), 3),
        }
        for row in rows
    ]


# --- the scenarios --------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    scenario: str
    lines: int
    line_bytes: int
    fanout_jobs: int
    subscribers_per_job: int
    subscriber_processes: int
    burst: int
    interval_ms: float
    fanout_seconds: float
    workers: int
    worker_cpus: float
    job_cpus: float
    stage_lines: int
    server_log_level: str
    timeout_s: float
    profile: Path | None
    profile_all_threads: bool
    check_targets: bool
    json_dir: Path | None
    keep: bool


async def queue_job(
    address: str, name: str, script: str, env: dict[str, str], cpu_cores: float
) -> str:
    definition = jobs_pb2.JobDefinition(
        name=name,
        command_type=jobs_pb2.PYTHON,
        script=script,
        env=env,
        resources=jobs_pb2.ResourceRequirements(cpu_cores=cpu_cores, memory_mb=64),
    )
    async with grpc.aio.insecure_channel(address) as channel:
        stub = jobs_pb2_grpc.JobExecutionServiceStub(channel)
        response = await stub.QueueJob(jobs_pb2.QueueJobRequest(job=definition), timeout=30)
    return str(response.job_id)


def worker_running(workers: list[Child]) -> Child:
    for worker in workers:
        if worker.descendants():
            return worker
    raise BenchError("no worker runs the job")


@dataclass
class Throughput:
    lines: int = 0
    go_to_stored_s: float = 0.0
    go_to_subscriber_s: float = 0.0
    go_to_producer_done_s: float = 0.0
    stored_per_s: float = 0.0
    subscriber_per_s: float = 0.0
    producer_per_s: float = 0.0
    peak_stored_per_s: float = 0.0
    subscriber_ok: bool = False
    subscriber_lines: int = 0
    subscriber_error: str = ""
    subscriber_end: str = ""
    subscriber_responses: int = 0
    subscriber_cpu_s: float = 0.0
    postgres_ok: bool = False
    postgres_check: dict[str, int] = field(default_factory=dict)
    job_state: str = ""
    rss_mb: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    statements: list[dict[str, Any]] = field(default_factory=list)
    profile: dict[str, dict[str, list[tuple[str, float]]]] = field(default_factory=dict)
    timed_out: bool = False


def peak_rate(timeline: Sequence[tuple[int, int]], window_ns: int = 1_000_000_000) -> float:
    """The highest lines/s over any ``window_ns`` of a (time, last sequence) timeline."""
    best, start = 0.0, 0
    for end in range(len(timeline)):
        while timeline[end][0] - timeline[start][0] > window_ns:
            start += 1
        span = timeline[end][0] - timeline[start][0]
        if span >= window_ns // 2:
            best = max(best, (timeline[end][1] - timeline[start][1]) * 1e9 / span)
    return best


async def throughput(
    options: Options, cluster: Cluster, sampler: RssSampler, work_dir: Path
) -> Throughput:
    n = options.lines
    note(f"throughput: one job, {n:,} lines of {options.line_bytes} bytes…")
    result = Throughput(lines=n)
    go, done = work_dir / "go-flood", work_dir / "done-flood"
    env = {
        "BENCH_LINES": str(n),
        "BENCH_WIDTH": str(options.line_bytes),
        "BENCH_GO": str(go),
        "BENCH_DONE": str(done),
        "BENCH_WAIT_S": "120",
    }
    subscriber = await Subscriber.start(cluster.address, "check", work_dir / "sub-flood.json")
    try:
        async with StoredProgress(cluster.url) as stored:
            job_id = await queue_job(cluster.address, "bench-logs-flood", FLOOD_SCRIPT, env, 1.0)
            stored.watched, stored.target = job_id, n
            await subscriber.send([job_id], 1, options.timeout_s)
            await subscriber.expect("live", 60)
            worker = worker_running(cluster.workers)
            await reset_statements(cluster)
            meter = CpuMeter(cluster, [worker])
            go_ns = await flood_measured(
                options, cluster, worker, go, stored, meter, sampler, result
            )
            result.go_to_stored_s = (stored.reached_ns - go_ns) / 1e9 if stored.reached_ns else 0
            result.peak_stored_per_s = peak_rate(stored.timeline)
            states = await wait_jobs_final(cluster.url, [job_id], options.timeout_s)
            result.job_state = states.get(job_id, "?")
            await subscriber.expect("done", options.timeout_s)
        result.statements = await read_statements(cluster)
        flood_figures(result, subscriber.result(), go_ns, done)
        check = await query_one(cluster.url, VERIFY_NUMBERED, (job_id,))
        result.postgres_check = {k: int(v) for k, v in check.items()}
        result.postgres_ok = check == {"lines": n, "first": 1, "last": n, "misplaced": 0}
    finally:
        await subscriber.stop()
    return result


async def flood_measured(
    options: Options,
    cluster: Cluster,
    worker: Child,
    go: Path,
    stored: StoredProgress,
    meter: CpuMeter,
    sampler: RssSampler,
    result: Throughput,
) -> int:
    """Let the job go and wait until its last line is stored; RSS, CPU and py-spy meanwhile.
    Returns the wall-clock instant of the go, in ns."""
    profiler = None
    if options.profile is not None and cluster.server is not None:
        targets = {"server": cluster.server.pid, "worker": worker.pid}
        profiler = Profiler(
            options.profile,
            targets,
            gil=not options.profile_all_threads,
            started=remember,
            stopped=forget,
        )
    with profiler.recording() if profiler else contextlib.nullcontext():
        sampler.reset()
        meter.begin()
        go_ns = time.time_ns()
        touch(go)
        result.timed_out = not await stored.wait(options.timeout_s)
        result.cpu_s = meter.spent()
        result.rss_mb = sampler.peaks_mb()
    if profiler is not None:
        result.profile = profile_top(profiler)
    return go_ns


def flood_figures(result: Throughput, sub: dict[str, Any], go_ns: int, done: Path) -> None:
    n = result.lines
    stream = sub["streams"][0]
    result.subscriber_lines = int(stream["expected"]) - 1
    result.subscriber_error = str(stream["error"])
    result.subscriber_end = str(stream["end"])
    result.subscriber_responses = int(stream["responses"])
    result.subscriber_cpu_s = float(sub["cpu_s"])
    result.subscriber_ok = result.subscriber_lines == n and not result.subscriber_error
    if stream["last_ns"]:
        result.go_to_subscriber_s = (int(stream["last_ns"]) - go_ns) / 1e9
    if done.exists():
        result.go_to_producer_done_s = (int(done.read_text()) - go_ns) / 1e9
    # Line 1 was written before the go: the rest (n - 1 lines) is what the clock measured.
    for rate, seconds in (
        ("stored_per_s", result.go_to_stored_s),
        ("subscriber_per_s", result.go_to_subscriber_s),
        ("producer_per_s", result.go_to_producer_done_s),
    ):
        setattr(result, rate, (n - 1) / seconds if seconds > 0 else 0.0)


@dataclass
class Fanout:
    jobs: int = 0
    subscribers: int = 0
    lines_per_job: int = 0
    delays_ms: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    expected_samples: int = 0
    write_to_worker_ms: dict[str, float] = field(default_factory=dict)
    write_to_stored_ms: dict[str, float] = field(default_factory=dict)
    stored_batches: int = 0
    # (second after the go the line was written in, p50 ms, p99 ms)
    delays_by_second: list[tuple[int, float, float]] = field(default_factory=list)
    profile: dict[str, dict[str, list[tuple[str, float]]]] = field(default_factory=dict)
    streams_ok: int = 0
    stream_errors: list[str] = field(default_factory=list)
    job_states: dict[str, int] = field(default_factory=dict)
    jobs_per_worker: list[int] = field(default_factory=list)
    rss_mb: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    subscriber_cpu_s: float = 0.0
    statements: list[dict[str, Any]] = field(default_factory=list)
    window_s: float = 0.0


async def fanout(options: Options, cluster: Cluster, sampler: RssSampler, work_dir: Path) -> Fanout:
    ticks = max(1, round(options.fanout_seconds * 1000 / options.interval_ms))
    result = Fanout(
        jobs=options.fanout_jobs,
        subscribers=options.fanout_jobs * options.subscribers_per_job,
        lines_per_job=ticks * options.burst,
    )
    note(
        f"fan-out: {result.jobs} jobs x {options.burst} lines every {options.interval_ms:g} ms "
        f"for {ticks * options.interval_ms / 1000:g} s, {result.subscribers} subscribers…"
    )
    go = work_dir / "go-fanout"
    subscribers: list[Subscriber] = []
    try:
        for p in range(options.subscriber_processes):
            out = work_dir / f"sub-fanout-{p}.json"
            subscribers.append(await Subscriber.start(cluster.address, "latency", out))
        job_ids = []
        for index in range(options.fanout_jobs):
            env = {
                "BENCH_BURST": str(options.burst),
                "BENCH_INTERVAL_S": str(options.interval_ms / 1000),
                "BENCH_TICKS": str(ticks),
                "BENCH_INDEX": str(index),
                "BENCH_WIDTH": str(options.line_bytes),
                "BENCH_GO": str(go),
                "BENCH_WAIT_S": "120",
            }
            job_ids.append(
                await queue_job(
                    cluster.address, "bench-logs-fanout", TICKER_SCRIPT, env, options.job_cpus
                )
            )
        await fanout_measured(options, cluster, sampler, subscribers, job_ids, go, result)
    finally:
        for subscriber in subscribers:
            await subscriber.stop()
    return result


async def fanout_measured(
    options: Options,
    cluster: Cluster,
    sampler: RssSampler,
    subscribers: list[Subscriber],
    job_ids: list[str],
    go: Path,
    result: Fanout,
) -> None:
    count = len(subscribers)
    for p, subscriber in enumerate(subscribers):
        await subscriber.send(job_ids[p::count], options.subscribers_per_job, options.timeout_s)
    for subscriber in subscribers:
        await subscriber.expect("live", 120)
    await reset_statements(cluster)
    meter = CpuMeter(cluster, cluster.workers)
    profiler = None
    if options.profile is not None and cluster.server is not None:
        targets = {"fanout-server": cluster.server.pid}
        profiler = Profiler(
            options.profile,
            targets,
            gil=not options.profile_all_threads,
            started=remember,
            stopped=forget,
        )
    async with StoredProgress(cluster.url) as stored:
        stored.recorded = set(job_ids)
        with profiler.recording() if profiler else contextlib.nullcontext():
            sampler.reset()
            meter.begin()
            started = time.monotonic()
            go_ns = time.time_ns()
            touch(go)
            limit = options.fanout_seconds + options.timeout_s
            states = await wait_jobs_final(cluster.url, job_ids, limit)
            for subscriber in subscribers:
                await subscriber.expect("done", 60)
            result.window_s = time.monotonic() - started
            result.cpu_s = meter.spent()
            result.rss_mb = sampler.peaks_mb()
    if profiler is not None:
        result.profile = profile_top(profiler)
    result.statements = await read_statements(cluster)
    async with await psycopg.AsyncConnection.connect(cluster.url, autocommit=True) as conn:
        cursor = await conn.execute(JOB_ERRORS, (job_ids,))
        result.job_states = {str(row[0]): int(row[1]) for row in await cursor.fetchall()}
        cursor = await conn.execute(JOBS_PER_WORKER, (job_ids,))
        result.jobs_per_worker = [int(row[0]) for row in await cursor.fetchall()]
    if len(states) != len(job_ids):
        result.job_states["(missing)"] = len(job_ids) - len(states)
    fanout_figures(result, subscribers, go_ns)
    await fanout_stages(cluster.url, job_ids, stored.stored, result)


async def fanout_stages(
    url: str, job_ids: list[str], stored: list[tuple[int, str, int]], result: Fanout
) -> None:
    """written -> the worker read it (the stored timestamp) and -> stored (its notification)."""
    row = await query_one(url, WRITE_TO_READ, (job_ids,))
    p50, p99 = row.get("delays_us") or (float("nan"), float("nan"))
    result.write_to_worker_ms = {
        "p50": p50 / 1000,
        "p99": p99 / 1000,
        "max": float(row.get("max_us") or "nan") / 1000,
    }
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            WRITTEN_AT,
            (
                [job for _, job, _ in stored],
                [seq for _, _, seq in stored],
                [t for t, _, _ in stored],
            ),
        )
        delays = sorted(int(r[0]) / 1e6 for r in await cursor.fetchall())
    result.write_to_stored_ms = summary(delays)
    result.stored_batches = len(stored)


def summary(sorted_values: Sequence[float]) -> dict[str, float]:
    figures = {
        name: percentile(sorted_values, q)
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999))
    }
    figures["max"] = sorted_values[-1] if sorted_values else float("nan")
    return figures


def fanout_figures(result: Fanout, subscribers: list[Subscriber], go_ns: int) -> None:
    delays: list[int] = []
    by_second: dict[int, list[int]] = {}
    go_ms = go_ns // 1_000_000
    for subscriber in subscribers:
        sub = subscriber.result()
        result.subscriber_cpu_s += float(sub["cpu_s"])
        for stream in sub["streams"]:
            received = int(stream["expected"]) - 1
            if stream["error"] or received != result.lines_per_job + 1:
                result.stream_errors.append(
                    f"{stream['job_id']}: {received} lines, {stream['error'] or stream['end']}"
                )
            else:
                result.streams_ok += 1
        taken, written = subscriber.samples()
        delays.extend(taken)
        for delay, at in zip(taken, written, strict=True):
            by_second.setdefault((at - go_ms) // 1000, []).append(delay)
    delays.sort()
    result.samples = len(delays)
    result.expected_samples = result.subscribers * result.lines_per_job
    result.delays_ms = summary([d / 1000 for d in delays])
    for second in sorted(by_second):
        values = sorted(by_second[second])
        result.delays_by_second.append(
            (second, percentile(values, 0.5) / 1000, percentile(values, 0.99) / 1000)
        )


# --- stage costs ----------------------------------------------------------------------------


def flood_bytes(count: int, width: int) -> bytes:
    pad = "x" * (width - 11)
    return "".join(f"{i:09d} {pad}\n" for i in range(count)).encode()


def best_of(repeats: int, work: Callable[[], object]) -> float:
    """The least CPU time (of this process: other load on the machine counts less) of
    ``repeats`` runs, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        began = time.process_time()
        work()
        best = min(best, time.process_time() - began)
    return best


def stage_costs(count: int, width: int) -> dict[str, float]:
    """CPU µs per line of each step a line takes, the product's own functions, best of 3."""
    data = flood_bytes(count, width)
    # What pump_lines hands on: the complete lines of one 256 KiB pipe read at a time.
    per_read = max(1, READ_CHUNK // width)
    raw_lines = data.split(b"\n")[:-1]
    blocks = [b"\n".join(raw_lines[i : i + per_read]) for i in range(0, count, per_read)]
    chunks: list[LogChunk] = []
    costs: dict[str, float] = {}

    def timed(name: str, work: Callable[[], object]) -> None:
        costs[name] = best_of(3, work) / count * 1e6

    timed("worker: read + cut into blocks (pump_lines)", lambda: asyncio.run(_pump(data)))
    timed("worker: classify_level, line by line (reference)", lambda: _classify_all(raw_lines))
    timed(
        "worker: number/decode/classify/chunk (add_block)",
        lambda: asyncio.run(_batch(blocks, chunks)),
    )
    ref = worker_pb2.AttemptRef(job_id="00000000-0000-0000-0000-000000000000", attempt=1)
    messages: list[worker_pb2.WorkerMessage] = []

    def build() -> None:
        messages.clear()
        for chunk in chunks:
            batch = worker_pb2.LogBatch(ref=ref, chunk=convert.chunk_to_proto(chunk))
            messages.append(worker_pb2.WorkerMessage(logs=batch))

    timed("worker: LogChunk -> LogBatch + WorkerMessage", build)
    wire: list[bytes] = []
    timed(
        "gRPC: serialize WorkerMessage",
        lambda: wire.extend(m.SerializeToString() for m in messages),
    )
    del wire[len(messages) :]
    parsed: list[worker_pb2.WorkerMessage] = []
    timed("gRPC: parse WorkerMessage (server)", lambda: _parse(wire, parsed))
    del parsed[len(wire) :]
    received: list[LogChunk] = []
    timed("server: chunk_from_proto + check", lambda: _from_proto(parsed, received))
    timed("server: parameters of append_log_chunk", lambda: asyncio.run(_append(received)))
    timed("server: hub publish to 1 subscriber", lambda: _publish(received))
    responses: list[bytes] = []
    timed(
        "server: chunked SubscribeLogsResponse per subscriber (+ encode)",
        lambda: _respond(received, responses),
    )
    del responses[len(received) :]
    timed(
        "server: line-by-line SubscribeLogsResponse (+ encode; filtered readers)",
        lambda: _respond_lines(received),
    )
    timed("subscriber: parse chunked response + read sequence/line", lambda: _consume(responses))
    return costs


def _classify_all(raw_lines: list[bytes]) -> None:
    for raw in raw_lines:
        classify_level(raw)


async def _pump(data: bytes) -> None:
    reader = asyncio.StreamReader(limit=2**20)
    reader.feed_data(data)
    reader.feed_eof()

    async def sink(_stream: LogStream, _block: bytes) -> None:
        return None

    await pump_lines(reader, LogStream.STDOUT, sink)


async def _batch(blocks: list[bytes], chunks: list[LogChunk]) -> None:
    chunks.clear()

    async def send(chunk: LogChunk) -> None:
        chunks.append(chunk)

    batcher = LogBatcher(send, first_sequence=1, attempt=1, masker=SecretMasker([]))
    for block in blocks:
        await batcher.add_block(LogStream.STDOUT, block)
    await batcher.close()


def _parse(wire: list[bytes], parsed: list[worker_pb2.WorkerMessage]) -> None:
    parsed.clear()
    parsed.extend(worker_pb2.WorkerMessage.FromString(b) for b in wire)


def _from_proto(parsed: list[worker_pb2.WorkerMessage], out: list[LogChunk]) -> None:
    out.clear()
    out.extend(convert.chunk_from_proto(message.logs.chunk, 1) for message in parsed)


class _FakeDatabase:
    """Stands in for Database: LogRepository.append_chunk builds its parameters, nothing is
    sent."""

    async def fetch_one(self, _query: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"fenced_ok": 1, "stored": 1, "stored_through": None}


async def _append(chunks: list[LogChunk]) -> None:
    repository = LogRepository(cast(Database, _FakeDatabase()))
    for chunk in chunks:
        await repository.append_chunk(worker_id="w", job_id="j", attempt=1, chunk=chunk)


def _publish(chunks: list[LogChunk]) -> None:
    hub = LogHub(capacity=len(chunks) + 1)
    with hub.subscribe("j"):
        for chunk in chunks:
            hub.publish("j", chunk)


def _respond(chunks: list[LogChunk], out: list[bytes]) -> None:
    out.clear()
    for chunk in chunks:
        response = logs_pb2.SubscribeLogsResponse(chunks=[convert.chunk_to_proto(chunk)])
        out.append(response.SerializeToString())


def _respond_lines(chunks: list[LogChunk]) -> None:
    for chunk in chunks:
        response = logs_pb2.SubscribeLogsResponse(
            lines=[convert.log_line_to_proto(line) for line in chunk.records()]
        )
        response.SerializeToString()


def _consume(responses: list[bytes]) -> None:
    expected = 1
    for data in responses:
        for sequence, text in received_lines(logs_pb2.SubscribeLogsResponse.FromString(data)):
            if sequence != expected or not text.startswith(f"{expected - 1:09d}"):
                raise BenchError("stage check: out of order")
            expected += 1


# --- the report -----------------------------------------------------------------------------


@dataclass
class Report:
    command: str
    hodei_package: str
    started_utc: str
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cpus: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    stages_us_per_line: dict[str, float] = field(default_factory=dict)
    throughput: Throughput | None = None
    fanout: Fanout | None = None

    @property
    def lost(self) -> bool:
        t, f = self.throughput, self.fanout
        lost = t is not None and not (t.subscriber_ok and t.postgres_ok and not t.timed_out)
        return lost or (f is not None and (bool(f.stream_errors) or f.samples < f.expected_samples))

    @property
    def missed(self) -> list[str]:
        missed = []
        t, f = self.throughput, self.fanout
        if t is not None:
            if t.stored_per_s < TARGET_LINES_PER_S:
                missed.append(f"into PostgreSQL {t.stored_per_s:,.0f} lines/s")
            if t.subscriber_per_s < TARGET_LINES_PER_S:
                missed.append(f"to the subscriber {t.subscriber_per_s:,.0f} lines/s")
            if t.rss_mb.get("server", 0) > TARGET_SERVER_RSS_MB:
                missed.append(f"server peak RSS {t.rss_mb['server']:.0f} MB")
        if f is not None and not f.delays_ms.get("p99", 0) < TARGET_P99_MS:
            missed.append(f"fan-out p99 {f.delays_ms.get('p99', float('nan')):.0f} ms")
        return missed


def table(rows: Sequence[tuple[str, str]], title: str) -> str:
    width = max((len(a) for a, _ in rows), default=0)
    lines = [f"\n{title}", "-" * len(title)]
    lines += [f"  {a.ljust(width)}  {b}" for a, b in rows]
    return "\n".join(lines)


def check(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def render_throughput(t: Throughput) -> str:
    n = t.lines
    rows = [
        ("lines (job state)", f"{n:,} ({t.job_state})"),
        (
            "into PostgreSQL",
            f"{t.stored_per_s:>10,.0f} lines/s  ({t.go_to_stored_s:.2f} s; peak 1 s window "
            f"{t.peak_stored_per_s:,.0f})  target >= {TARGET_LINES_PER_S:,}: "
            f"{check(t.stored_per_s >= TARGET_LINES_PER_S)}",
        ),
        (
            "to the live subscriber",
            f"{t.subscriber_per_s:>10,.0f} lines/s  ({t.go_to_subscriber_s:.2f} s, "
            f"{t.subscriber_responses:,} responses)  "
            f"{check(t.subscriber_per_s >= TARGET_LINES_PER_S)}",
        ),
        (
            "job finished writing",
            f"{t.producer_per_s:>10,.0f} lines/s  ({t.go_to_producer_done_s:.2f} s; the job "
            "blocks on a full pipe)",
        ),
        (
            "subscriber: all, in order, gapless",
            f"{'yes' if t.subscriber_ok else 'NO'} ({t.subscriber_lines:,} lines"
            f"{'; ' + t.subscriber_error if t.subscriber_error else ''}; {t.subscriber_end})",
        ),
        (
            "PostgreSQL: all, in order, gapless",
            f"{'yes' if t.postgres_ok else 'NO'} {t.postgres_check}",
        ),
    ]
    for label, value in t.rss_mb.items():
        if label != "(samples)":
            rows.append((f"peak RSS {label}", f"{value:8.1f} MB"))
    rows.append(("RSS samples", f"{t.rss_mb.get('(samples)', 0):.0f} (every 100 ms)"))
    server_rss = t.rss_mb.get("server", 0)
    rows.append(
        (
            "server RSS target <= 200 MB",
            check(server_rss <= TARGET_SERVER_RSS_MB),
        )
    )
    cpu = dict(t.cpu_s) | {"subscriber process": t.subscriber_cpu_s}
    total = sum(cpu.values())
    for label, seconds in cpu.items():
        rows.append(
            (f"CPU {label}", f"{seconds:7.2f} s  = {seconds / max(n - 1, 1) * 1e6:6.2f} µs/line")
        )
    rows.append(("CPU total", f"{total:7.2f} s  = {total / max(n - 1, 1) * 1e6:6.2f} µs/line"))
    window = t.go_to_stored_s
    rows.append(("2 cores x window", f"{2 * window:7.2f} s"))
    text = table(rows, "1. Throughput: one job, lines as fast as it can write them")
    if t.statements:
        text += table(
            [
                (
                    s["statement"],
                    f"{s['calls']:>7,} calls {s['rows']:>9,} rows {s['total_ms']:>9.1f} ms "
                    f"({s['ms_per_call']:.3f} ms/call)",
                )
                for s in t.statements
            ],
            "   PostgreSQL statements on job_log_chunks (pg_stat_statements, execution only)",
        )
    return text + render_profile(t.profile)


def render_profile(profile: dict[str, dict[str, list[tuple[str, float]]]]) -> str:
    text = ""
    for name, kinds in profile.items():
        for kind, frames in kinds.items():
            rows = [(f"{share:6.1%}", frame[:110]) for frame, share in frames]
            text += table(rows, f"   py-spy {name}: {kind}")
    return text


def render_fanout(f: Fanout) -> str:
    d, w, st = f.delays_ms, f.write_to_worker_ms, f.write_to_stored_ms
    rows = [
        (
            "jobs x subscribers each",
            f"{f.jobs} x {f.subscribers // max(f.jobs, 1)} = {f.subscribers}",
        ),
        ("lines per job (+ ready line)", f"{f.lines_per_job:,}"),
        ("job states", str(f.job_states)),
        ("jobs per worker (one stream each)", str(f.jobs_per_worker)),
        (
            "written -> subscriber received",
            f"p50 {d.get('p50', 0):.1f} ms  p90 {d.get('p90', 0):.1f}  p99 "
            f"{d.get('p99', 0):.1f}  p99.9 {d.get('p99.9', 0):.1f}  max {d.get('max', 0):.1f}",
        ),
        ("p99 target < 1000 ms", check(d.get("p99", float("inf")) < TARGET_P99_MS)),
        (
            "written -> worker read it",
            f"p50 {w.get('p50', 0):.1f} ms  p99 {w.get('p99', 0):.1f}  max {w.get('max', 0):.1f}",
        ),
        (
            "written -> stored (last line of a batch)",
            f"p50 {st.get('p50', 0):.1f} ms  p90 {st.get('p90', 0):.1f}  p99 "
            f"{st.get('p99', 0):.1f}  max {st.get('max', 0):.1f}  ({f.stored_batches:,} batches)",
        ),
        (
            "to subscriber p50/p99 by second written",
            "  ".join(
                f"{sec}s:{p50:.0f}/{p99:.0f}"
                for sec, p50, p99 in f.delays_by_second[:: max(1, len(f.delays_by_second) // 10)]
            ),
        ),
        ("delay samples", f"{f.samples:,} of {f.expected_samples:,}"),
        ("streams complete and in order", f"{f.streams_ok} of {f.subscribers}"),
    ]
    rows += [("  " + e, "") for e in f.stream_errors[:5]]
    for label, value in f.rss_mb.items():
        if label != "(samples)":
            rows.append((f"peak RSS {label}", f"{value:8.1f} MB"))
    cpu = dict(f.cpu_s) | {"subscriber processes": f.subscriber_cpu_s}
    for label, seconds in cpu.items():
        rows.append((f"CPU {label}", f"{seconds:7.2f} s ({seconds / max(f.window_s, 1e-9):.0%})"))
    text = table(rows, f"2. Fan-out latency ({f.window_s:.1f} s window)")
    if f.statements:
        text += table(
            [
                (
                    s["statement"],
                    f"{s['calls']:>7,} calls {s['rows']:>9,} rows {s['ms_per_call']:.3f} ms/call",
                )
                for s in f.statements
            ],
            "   PostgreSQL statements on job_log_chunks",
        )
    return text + render_profile(f.profile)


def render(report: Report) -> str:
    head = [
        ("command", report.command),
        ("hodei package", report.hodei_package),
        ("started (UTC)", report.started_utc),
        ("load average before", " ".join(f"{x:.2f}" for x in report.load_before)),
        ("load average after", " ".join(f"{x:.2f}" for x in report.load_after)),
        ("cpus", str(report.cpus)),
    ]
    text = table(head, "Hodei log benchmark")
    if report.stages_us_per_line:
        rows = [
            (name, f"{us:6.2f} µs/line  (one core: {1e6 / us:>12,.0f} lines/s)")
            for name, us in report.stages_us_per_line.items()
        ]
        text += table(rows, "3. Stage costs: CPU time in this process, best of 3")
    if report.throughput is not None:
        text += render_throughput(report.throughput)
    if report.fanout is not None:
        text += render_fanout(report.fanout)
    missed = report.missed
    text += "\n\ntargets: " + ("all met" if not missed else "MISSED: " + "; ".join(missed))
    text += "\nlines lost or phase timed out: " + ("YES" if report.lost else "no")
    return text


def write_json(report: Report, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"logs-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(asdict(report), indent=2, default=str))
    return path


# --- the run --------------------------------------------------------------------------------


async def benchmark(options: Options, cluster: Cluster, work_dir: Path, report: Report) -> None:
    await wait_for_server(cluster)
    for _ in range(options.workers):
        cluster.start_worker(options.worker_cpus, 8192)
    await wait_for_workers(cluster, options.workers)
    server = cluster.server
    assert server is not None
    targets: dict[str, Callable[[], list[psutil.Process]]] = {
        "server": lambda: [server.ps],
        "worker agent (busiest)": lambda: [max((w.ps for w in cluster.workers), key=rss)],
        "job processes": lambda: [p for w in cluster.workers for p in w.descendants()],
        "postgres (sum, shared counted per process)": cluster.postgres_processes,
    }
    with RssSampler(targets) as sampler:
        if options.scenario in ("all", "throughput"):
            report.throughput = await throughput(options, cluster, sampler, work_dir)
        if options.scenario in ("all", "fanout"):
            report.fanout = await fanout(options, cluster, sampler, work_dir)


def parse_options(argv: Sequence[str] | None = None) -> tuple[Options, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--scenario", choices=("all", "throughput", "fanout", "stages"), default="all")
    add("--lines", type=int, default=1_000_000, help="lines of the throughput job")
    add("--line-bytes", type=int, default=100, help="bytes per line, newline included")
    add("--fanout-jobs", type=int, default=20)
    add("--subscribers-per-job", type=int, default=5)
    add("--subscriber-processes", type=int, default=2, help="fan-out subscriber processes")
    add("--burst", type=int, default=100, help="lines a fan-out job writes at a time")
    add("--interval-ms", type=float, default=100.0, help="between a fan-out job's bursts")
    add("--fanout-seconds", type=float, default=20.0)
    add("--workers", type=int, default=2)
    add("--worker-cpus", type=float, default=10.0, help="--cpus of every worker")
    add("--job-cpus", type=float, default=0.5, help="cpu_cores of a fan-out job")
    add("--stage-lines", type=int, default=100_000, help="lines for the stage costs (0: skip)")
    add("--server-log-level", default="info")
    add("--timeout", type=float, default=300.0, help="deadline of each wait, in seconds")
    add(
        "--profile",
        type=Path,
        help="py-spy the server and the worker during scenario 1, the server during scenario 2",
    )
    add("--profile-all-threads", action="store_true", help="py-spy without --gil")
    add("--check-targets", action="store_true", help="exit 3 when a target is missed")
    add("--json-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    add("--no-json", action="store_true")
    add("--keep", action="store_true", help="keep the temporary directory (logs, cluster)")
    # The subscriber processes are this script too.
    add("--role", default="bench", help=argparse.SUPPRESS)
    add("--address", help=argparse.SUPPRESS)
    add("--mode", help=argparse.SUPPRESS)
    add("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "bench" and (
        args.lines < 2 or args.line_bytes < 40 or args.fanout_jobs < 1 or args.workers < 1
    ):
        parser.error("--lines >= 2, --line-bytes >= 40, --fanout-jobs >= 1, --workers >= 1")
    options = Options(
        scenario=args.scenario,
        lines=args.lines,
        line_bytes=args.line_bytes,
        fanout_jobs=args.fanout_jobs,
        subscribers_per_job=max(1, args.subscribers_per_job),
        subscriber_processes=max(1, min(args.subscriber_processes, args.fanout_jobs)),
        burst=max(1, args.burst),
        interval_ms=max(1.0, args.interval_ms),
        fanout_seconds=args.fanout_seconds,
        workers=args.workers,
        worker_cpus=args.worker_cpus,
        job_cpus=args.job_cpus,
        stage_lines=args.stage_lines,
        server_log_level=args.server_log_level,
        timeout_s=args.timeout,
        profile=args.profile,
        profile_all_threads=args.profile_all_threads,
        check_targets=args.check_targets,
        json_dir=None if args.no_json else args.json_dir,
        keep=args.keep,
    )
    return options, args


def raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run(options: Options) -> int:
    """Set up, measure, tear down; returns the exit code."""
    report = Report(
        command=shlex.join([sys.executable, *sys.argv]),
        hodei_package=str(Path(hodei.__file__).parent),
        started_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        load_before=os.getloadavg(),
        cpus=os.cpu_count() or 0,
        options={k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
    )
    if options.stage_lines > 0 and options.scenario in ("all", "stages"):
        note(f"stage costs on {options.stage_lines:,} lines…")
        report.stages_us_per_line = stage_costs(options.stage_lines, options.line_bytes)
    if options.scenario != "stages":
        code = run_cluster(options, report)
        if code is not None:
            return code
    report.load_after = os.getloadavg()
    print(render(report))
    if options.json_dir is not None:
        note(f"\nwrote {write_json(report, options.json_dir)}")
    if report.lost:
        return 1
    return 3 if options.check_targets and report.missed else 0


def run_cluster(options: Options, report: Report) -> int | None:
    """The processes and scenarios 1 and 2; an exit code when they could not run."""
    work_dir = Path(tempfile.mkdtemp(prefix="hodei-bench-logs-"))
    work_dir.chmod(0o755)  # root runs this; PostgreSQL runs as `postgres`
    cluster = Cluster(work_dir, options.server_log_level)
    signal.signal(signal.SIGTERM, raise_interrupt)
    failed = True
    try:
        note(f"starting PostgreSQL (fsync on) in {work_dir}…")
        asyncio.run(cluster.start_postgres())
        note(f"starting the server on {cluster.address} and {options.workers} worker(s)…")
        cluster.start_server()
        asyncio.run(benchmark(options, cluster, work_dir, report))
        failed = report.lost
    except (BenchError, grpc.aio.AioRpcError, psycopg.Error, OSError) as error:
        note(f"benchmark failed: {error}")
        return 2
    except KeyboardInterrupt:
        note("interrupted")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            cluster.stop()
        finally:
            kill_leftovers()
            finish_work_dir(work_dir, options, failed)
    return None


def finish_work_dir(work_dir: Path, options: Options, failed: bool) -> None:
    if options.keep:
        note(f"kept {work_dir}")
        return
    if failed and options.json_dir is not None:
        target = options.json_dir / f"logs-failed-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        target.mkdir(parents=True, exist_ok=True)
        for log in work_dir.glob("*.log"):
            shutil.copy(log, target / log.name)
        with contextlib.suppress(OSError):
            shutil.copy(work_dir / "pg" / "postgres.log", target / "postgres.log")
        note(f"kept the logs in {target}")
    shutil.rmtree(work_dir, ignore_errors=True)


def main() -> None:
    options, args = parse_options()
    if args.role == "subscriber":
        subscriber_role(args)
        return
    sys.exit(run(options))


if __name__ == "__main__":
    main()
