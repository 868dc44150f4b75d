"""Chaos soak for "Nothing is lost": thousands of jobs through crashes of every part.

It starts its own PostgreSQL (``EmbeddedPostgres``, fsync on), the real ``hodei server`` and N
real ``hodei worker`` processes (all on one work dir, so that a replacement sweeps what a killed
worker left), submits a mix of jobs over gRPC and, while they run, at random (seeded) with
pauses of a few seconds: SIGKILLs a worker and starts a replacement with a new token, SIGKILLs
the server and restarts it on the same ports, restarts PostgreSQL. Then it waits until every job
is in a final state and checks, in PostgreSQL and on the host:

- every job ended, in the state its kind ends in, after the number of attempts it allows;
- every attempt ended the way its kind allows (a successful job's earlier attempts were lost);
- no two attempts of a job overlapped in ``job_attempts``, and no two attempts' processes ran at
  once (each job but ``true`` holds an flock on a file of its own job for as long as it runs);
- no attempt ran twice (each job but ``true`` notes every run of an attempt in a file);
- the audit trail: one JobCreated, one JobAssigned per attempt, one JobRetried per retry and
  exactly one JobStatusChanged into the final state, the job's last event;
- every job's log is gapless (sequences 1..n), every attempt's lines are in order, and the final
  attempt's lines are all there;
- no job process is left running (the PIDs jobs print, and any process that carries this run's
  id in its environment; a zombie counts as gone);
- every submission the server acknowledged is stored.

The server, workers and ``worker-token`` run from a snapshot of the ``hodei`` package taken at
the start, so that edits to the tree during a run cannot mix versions across restarts.
Everything listens on 127.0.0.1, every loop is bounded in count and time, and every process the
soak started is stopped by its PID or process group, also on failure, Ctrl-C or SIGTERM.

Exit codes: 0 every invariant holds; 1 an invariant failed (the work directory, with every log
and the database, is kept); 2 the soak could not run; 130 interrupted.

Run::

    .venv/bin/python bench/soak.py                      # 2000 jobs, 4 workers, seed 1
    .venv/bin/python bench/soak.py --jobs 300 --duration 60 --seed 7
"""

from __future__ import annotations

import os

# Before grpc is imported: this process forks (pg_ctl run as another user), and gRPC's fork
# handlers, on while other threads use gRPC, crashed the child (hodei itself sets this too).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import argparse
import asyncio
import contextlib
import hashlib
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil
import psycopg
from benchlib import LOOPBACK, free_port, note
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg.rows import dict_row

import hodei
from hodei.client import HodeiClient
from hodei.domain.errors import HodeiError
from hodei.store.embedded import EmbeddedPostgres
from hodei.v1 import jobs_pb2

FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "TIMEOUT"})
CHAOS_KINDS = ("worker", "server", "postgres")
# Protocol timings that make recovery quick (the lease and heartbeat come from the options).
PROTOCOL_ENV = {
    "HODEI_DEV_MODE": "1",  # loopback only: no tokens
    "HODEI_RETRY_BASE_S": "0.1",
    "HODEI_CANCEL_GRACE_S": "2",
    "HODEI_TIMEOUT_GRACE_S": "5",
}
JOB_CPU_CORES = 0.25
JOB_MEMORY_MB = 32
RPC_TIMEOUT_S = 15.0
SUBMITTERS = 4
SUBMIT_TRIES = 300
SERVER_READY_S = 90.0
SERVER_START_TRIES = 5
WORKERS_READY_S = 90.0
TOKEN_TRIES = 20
TOKEN_TIMEOUT_S = 60.0
MAX_UNEXPECTED_EXITS = 40
STOP_TIMEOUT_S = 20.0
SETTLE_S = 3.0
PROGRESS_EVERY_S = 10.0
EXAMPLES_SHOWN = 8
PID_LINE = re.compile(r"pid (\d+)")

Row = dict[str, Any]


class SoakError(Exception):
    """The soak could not run (as opposed to: it ran and an invariant failed)."""


# --- the jobs ---------------------------------------------------------------------------------

# Every job but `true` notes each run of an attempt (attempt, pid, clock) in a file of its
# job, and holds an exclusive flock on another for as long as any of its processes lives: an
# attempt that starts while another attempt's processes still run notes that too.
BEGIN = (
    'echo "$HODEI_JOB_ATTEMPT $$ $(date +%H:%M:%S.%N)" >>"$SOAK_LOCKS/$HODEI_JOB_ID.runs"; '
    'exec 9>>"$SOAK_LOCKS/$HODEI_JOB_ID"; '
    'flock -n 9 || echo "$HODEI_JOB_ID $HODEI_JOB_ATTEMPT" >>"$SOAK_LOCKS/overlaps"; '
)
PRINT_PID = 'echo "pid $$"; '
OVERLAPS_FILE = "overlaps"


@dataclass(frozen=True)
class JobKind:
    """One kind of job in the mix, and how it must end."""

    name: str
    weight: int
    script: str
    final_state: str
    max_attempts: int
    # The final attempt's output; stdout after the "pid N" line when the kind prints one.
    stdout: tuple[str, ...] = ()
    stderr: tuple[str, ...] = ()
    timeout_ms: int = 0
    prints_pid: bool = True
    # False: the attempt is stopped from outside (a timeout) and may not have printed it all.
    complete_output: bool = True

    @property
    def holds_lock(self) -> bool:
        return self.script.startswith(BEGIN)


def job_kinds(lines: int) -> dict[str, JobKind]:
    numbered = tuple(f"line {i}" for i in range(1, lines + 1))
    loop = f'i=1; while [ $i -le {lines} ]; do echo "line $i"; sleep 0.1; i=$((i + 1)); done'
    kinds = (
        JobKind("true", 35, "true", "SUCCEEDED", 10, prints_pid=False),
        JobKind("lines", 35, BEGIN + PRINT_PID + loop, "SUCCEEDED", 10, stdout=numbered),
        JobKind("sleepy", 10, BEGIN + PRINT_PID + "sleep 2; echo done", "SUCCEEDED", 10, ("done",)),
        JobKind(
            "fail",
            10,
            BEGIN + PRINT_PID + 'echo "failing on purpose" >&2; exit 3',
            "FAILED",
            3,
            stderr=("failing on purpose",),
        ),
        JobKind(
            "timeout",
            10,
            BEGIN + PRINT_PID + "sleep 30",
            "TIMEOUT",
            2,
            timeout_ms=1000,
            complete_output=False,
        ),
    )
    return {kind.name: kind for kind in kinds}


@dataclass(frozen=True)
class PlannedJob:
    name: str
    kind: JobKind


def plan_jobs(count: int, kinds: dict[str, JobKind], rng: random.Random) -> list[PlannedJob]:
    chosen = rng.choices(list(kinds.values()), weights=[k.weight for k in kinds.values()], k=count)
    return [PlannedJob(f"soak-{kind.name}-{i:05d}", kind) for i, kind in enumerate(chosen, 1)]


def kind_of(name: str, kinds: dict[str, JobKind]) -> JobKind | None:
    parts = name.split("-")
    return kinds.get(parts[1]) if len(parts) == 3 and parts[0] == "soak" else None


def job_definition(job: PlannedJob, run_id: str, locks: Path) -> jobs_pb2.JobDefinition:
    kind = job.kind
    return jobs_pb2.JobDefinition(
        name=job.name,
        command_type=jobs_pb2.SHELL,
        script=kind.script,
        env={"SOAK_RUN": run_id, "SOAK_LOCKS": str(locks)},
        resources=jobs_pb2.ResourceRequirements(
            cpu_cores=JOB_CPU_CORES, memory_mb=JOB_MEMORY_MB, timeout_ms=kind.timeout_ms
        ),
        preferences=jobs_pb2.Preferences(allow_retry=True, max_attempts=kind.max_attempts),
    )


# --- options ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    jobs: int
    workers: int
    seed: int
    duration_s: float
    max_chaos: int
    pause_min_s: float
    pause_max_s: float
    chaos_weights: dict[str, int]
    timeout_s: float
    lines: int
    lease_ttl_s: float
    heartbeat_s: float
    worker_cpus: float
    worker_memory_mb: int
    log_level: str
    snapshot: bool
    keep: bool


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--jobs", type=int, default=2000, help="jobs to submit (default 2000)")
    add("--workers", type=int, default=4, help="workers kept running (default 4)")
    add("--seed", type=int, default=1, help="seed of the job mix and of the chaos (default 1)")
    add("--duration", type=float, default=180.0, help="seconds during which chaos strikes")
    add("--max-chaos", type=int, default=40, help="at most this many chaos events (default 40)")
    add("--pause-min", type=float, default=3.0, help="least seconds between chaos events")
    add("--pause-max", type=float, default=8.0, help="most seconds between chaos events")
    add("--worker-kills", type=int, default=6, help="weight of worker SIGKILLs (default 6)")
    add("--server-kills", type=int, default=2, help="weight of server SIGKILLs (default 2)")
    add("--postgres-restarts", type=int, default=2, help="weight of PostgreSQL restarts")
    add("--timeout", type=float, default=1800.0, help="seconds until every job must have ended")
    add("--lines", type=int, default=30, help="lines a numbered-line job prints (default 30)")
    add("--lease-ttl", type=float, default=3.0, help="HODEI_LEASE_TTL_S (default 3)")
    add("--heartbeat", type=float, default=0.5, help="HODEI_HEARTBEAT_INTERVAL_S (default 0.5)")
    add("--worker-cpus", type=float, default=4.0, help="--cpus of each worker (default 4)")
    add("--worker-memory-mb", type=int, default=4096, help="--memory-mb of each worker")
    add("--log-level", default="info", help="--log-level of the server and workers")
    add("--no-snapshot", action="store_true", help="run the live source tree, not a snapshot")
    add("--keep", action="store_true", help="keep the work directory even when all is well")
    args = parser.parse_args(argv)
    if min(args.jobs, args.workers, args.lines) < 1:
        parser.error("--jobs, --workers and --lines must be at least 1")
    if not 0 < args.heartbeat < args.lease_ttl:
        parser.error("need 0 < --heartbeat < --lease-ttl")
    if not 0 < args.pause_min <= args.pause_max:
        parser.error("need 0 < --pause-min <= --pause-max")
    weights = dict(
        zip(
            CHAOS_KINDS, (args.worker_kills, args.server_kills, args.postgres_restarts), strict=True
        )
    )
    if min(weights.values()) < 0:
        parser.error("chaos weights cannot be negative")
    return Options(
        jobs=args.jobs,
        workers=args.workers,
        seed=args.seed,
        duration_s=args.duration,
        max_chaos=max(args.max_chaos, 0),
        pause_min_s=args.pause_min,
        pause_max_s=args.pause_max,
        chaos_weights=weights,
        timeout_s=args.timeout,
        lines=args.lines,
        lease_ttl_s=args.lease_ttl,
        heartbeat_s=args.heartbeat,
        worker_cpus=args.worker_cpus,
        worker_memory_mb=args.worker_memory_mb,
        log_level=args.log_level,
        snapshot=not args.no_snapshot,
        keep=args.keep,
    )


# --- processes --------------------------------------------------------------------------------


def hodei_command() -> list[str]:
    script = Path(sys.executable).with_name("hodei")
    return [str(script)] if script.exists() else [sys.executable, "-m", "hodei"]


def snapshot_source(work_dir: Path) -> Path:
    """Copy the ``hodei`` package; the processes the soak starts import this copy."""
    target = work_dir / "src"
    package = Path(hodei.__file__).resolve().parent
    shutil.copytree(package, target / "hodei", ignore=shutil.ignore_patterns("__pycache__"))
    return target


def describe_source(source: Path | None) -> str:
    package = Path(hodei.__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(package), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        head, changed = "?", []
    where = source / "hodei" if source is not None else package
    digest = hashlib.sha256()
    for path in sorted(where.rglob("*.py")) + sorted(where.rglob("*.sql")):
        digest.update(str(path.relative_to(where)).encode())
        digest.update(path.read_bytes())
    origin = "snapshot" if source is not None else "live tree"
    return (
        f"git HEAD {head or '?'} with {len(changed)} changed path(s) under src/hodei; "
        f"{origin} sha256 {digest.hexdigest()[:12]}"
    )


def child_env(source: Path | None, options: Options) -> dict[str, str]:
    """The environment of every hodei process: no inherited HODEI_* settings, quick timings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("HODEI_") and name not in ("GRPC_PORT", "RUST_LOG")
    }
    # COLUMNS: one log record per line in the logs (rich wraps at 80 columns otherwise).
    env |= PROTOCOL_ENV | {
        "HODEI_LEASE_TTL_S": str(options.lease_ttl_s),
        "HODEI_HEARTBEAT_INTERVAL_S": str(options.heartbeat_s),
        "HODEI_LOG_LEVEL": options.log_level,
        "COLUMNS": "200",
    }
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(source), env.get("PYTHONPATH")) if p)
    return env


class Child:
    """A process the soak started, leading a process group of its own, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_file: Path) -> None:
        self.name = name
        self.log_file = log_file
        self._argv = argv
        self._env = env
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self._process.pid if self._process is not None else 0

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    def start(self) -> None:
        with self.log_file.open("ab") as log:
            log.write(
                f"\n=== soak: {self.name} starts at {time.strftime('%H:%M:%S')} ===\n".encode()
            )
            log.flush()
            self._process = subprocess.Popen(
                self._argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def terminate(self) -> None:
        """SIGTERM, without waiting."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the process group, then reap the leader.

        Only while the leader is not reaped: until then its pid, and so the group id, cannot
        belong to anyone else.
        """
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)

    def wait(self, timeout: float) -> None:
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=max(timeout, 0.0))

    def log_tail(self, lines: int = 12) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


def run_processes(run_id: str) -> dict[int, str]:
    """Live processes (not zombies) started for a job of this run, by pid."""
    found = {}
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            env = process.environ()
            if env.get("SOAK_RUN") == run_id:
                found[process.pid] = (
                    f"job {env.get('HODEI_JOB_ID')} attempt {env.get('HODEI_JOB_ATTEMPT')}: "
                    + " ".join(process.cmdline())[:120]
                )
    return found


class Stack:
    """PostgreSQL, the server and the workers of one soak, and the chaos done to them."""

    def __init__(self, options: Options, work_dir: Path, source: Path | None) -> None:
        self.options = options
        self.work_dir = work_dir
        self.logs_dir = work_dir / "logs"
        self.logs_dir.mkdir()
        self.jobs_dir = work_dir / "work"  # every worker's --work-dir
        self.jobs_dir.mkdir()
        self.locks_dir = work_dir / "locks"
        self.locks_dir.mkdir()
        self.pg = EmbeddedPostgres(work_dir / "pg", fsync=True)
        self.url = ""
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.server: Child | None = None
        self.workers: list[Child] = []
        self.kills: Counter[str] = Counter()
        self.unexpected_exits: list[str] = []
        self.events: list[str] = []
        self._env = child_env(source, options)
        self._serial = 0
        self.began = time.monotonic()  # reset when the jobs start: events count from there

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"

    def log_event(self, text: str) -> None:
        line = f"[{time.monotonic() - self.began:7.1f} s, {time.strftime('%H:%M:%S')}] {text}"
        self.events.append(line)
        note(line)

    async def start_postgres(self) -> None:
        self.url = await self.pg.start()

    async def start_server(self) -> None:
        argv = [
            *hodei_command(),
            "server",
            *("--database-url", self.url, "--bind", LOOPBACK),
            *("--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port)),
            *("--data-dir", str(self.work_dir / "server")),
        ]
        server = self.server
        for _ in range(SERVER_START_TRIES):
            server = Child("server", argv, self._env, self.logs_dir / "server.log")
            self.server = server
            server.start()
            if await self._server_ready(server):
                return
            server.kill()
            await asyncio.sleep(1)
        tail = server.log_tail() if server is not None else ""
        raise SoakError(f"the server did not start in {SERVER_START_TRIES} tries:\n{tail}")

    async def _server_ready(self, server: Child) -> bool:
        deadline = time.monotonic() + SERVER_READY_S
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline and server.alive():
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return True
                await asyncio.sleep(0.3)
        return False

    async def _worker_token(self) -> str:
        argv = [*hodei_command(), "worker-token", "--database-url", self.url, "--ttl", "600"]
        error = ""
        for _ in range(TOKEN_TRIES):
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env,
                start_new_session=True,
            )
            try:
                out, err = await asyncio.wait_for(process.communicate(), TOKEN_TIMEOUT_S)
            except TimeoutError:
                out, err = b"", b"timed out"
            finally:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            words = out.decode(errors="replace").split()
            if process.returncode == 0 and words:
                return words[-1]
            error = err.decode(errors="replace").strip()[-400:]
            await asyncio.sleep(1)
        raise SoakError(f"hodei worker-token failed {TOKEN_TRIES} times: {error}")

    async def start_worker(self) -> Child:
        token = await self._worker_token()
        self._serial += 1
        name = f"worker-{self._serial}"
        argv = [
            *hodei_command(),
            "worker",
            *("--server", self.address, "--otp", token, "--work-dir", str(self.jobs_dir)),
            *("--cpus", str(self.options.worker_cpus)),
            *("--memory-mb", str(self.options.worker_memory_mb)),
        ]
        worker = Child(name, argv, self._env, self.logs_dir / f"{name}.log")
        worker.start()
        self.workers.append(worker)
        return worker

    async def ready_workers(self) -> int:
        async with await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, connect_timeout=5
        ) as conn:
            cursor = await conn.execute("SELECT count(*) FROM workers WHERE state = 'READY'")
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def wait_for_workers(self, count: int) -> None:
        deadline = time.monotonic() + WORKERS_READY_S
        ready = 0
        while time.monotonic() < deadline:
            ready = await self.ready_workers()
            if ready >= count:
                return
            await asyncio.sleep(0.5)
        raise SoakError(f"only {ready} of {count} workers READY after {WORKERS_READY_S:g} s")

    # --- chaos ---

    async def strike(self, kind: str, rng: random.Random) -> None:
        if kind == "worker":
            text = await self.kill_worker(rng)
        elif kind == "server":
            text = await self.kill_server(rng)
        else:
            text = await self.restart_postgres(rng)
        self.log_event(text)

    async def kill_worker(self, rng: random.Random) -> str:
        alive = [w for w in self.workers if w.alive()]
        if not alive:
            return "no live worker to kill"
        victim = rng.choice(alive)
        victim.kill()
        self.workers.remove(victim)
        self.kills["worker"] += 1
        replacement = await self.start_worker()
        return f"SIGKILL {victim.name} (pid {victim.pid}); started {replacement.name}"

    async def kill_server(self, rng: random.Random) -> str:
        assert self.server is not None
        pid = self.server.pid
        self.server.kill()
        self.kills["server"] += 1
        down = rng.uniform(0.0, 2.0)
        await asyncio.sleep(down)
        began = time.monotonic()
        await self.start_server()
        return (
            f"SIGKILL server (pid {pid}); restarted after {down:.1f} s down, "
            f"ready in {time.monotonic() - began:.1f} s"
        )

    async def restart_postgres(self, rng: random.Random) -> str:
        began = time.monotonic()
        await self.pg.stop()
        stopped = time.monotonic() - began
        down = rng.uniform(0.5, 3.0)
        await asyncio.sleep(down)
        url = await self.pg.start()
        self.kills["postgres"] += 1
        if url != self.url:
            raise SoakError(f"PostgreSQL came back at {url}, not {self.url}: a port changed")
        return f"PostgreSQL stopped in {stopped:.1f} s, down {down:.1f} s more, started again"

    async def supervise(self) -> None:
        """Replace what exited without being killed by the soak; each is a finding."""
        if self.server is not None and not self.server.alive():
            self._unexpected(self.server)
            await self.start_server()
        for worker in [w for w in self.workers if not w.alive()]:
            self._unexpected(worker)
            self.workers.remove(worker)
            replacement = await self.start_worker()
            self.log_event(f"{worker.name} exited by itself; started {replacement.name}")

    def _unexpected(self, child: Child) -> None:
        self.unexpected_exits.append(
            f"{child.name} (pid {child.pid}) exited with {child.returncode}:\n{child.log_tail()}"
        )
        if len(self.unexpected_exits) > MAX_UNEXPECTED_EXITS:
            raise SoakError(f"more than {MAX_UNEXPECTED_EXITS} processes exited by themselves")

    def stop_processes(self, run_id: str) -> None:
        """Workers (SIGTERM: they drain), what their jobs left, then the server. Bounded."""
        for worker in self.workers:
            worker.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for worker in self.workers:
            worker.wait(deadline - time.monotonic())
            worker.kill()
        for pid in run_processes(run_id):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if self.server is not None:
            self.server.terminate()
            self.server.wait(STOP_TIMEOUT_S)
            self.server.kill()


# --- submitting and waiting ---------------------------------------------------------------------


@dataclass
class Submissions:
    acked: dict[str, str] = field(default_factory=dict)  # name -> id QueueJob returned
    stored_despite_error: dict[str, str] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    resubmitted: int = 0
    given_up: list[str] = field(default_factory=list)
    seconds: float = 0.0


async def find_job(url: str, name: str) -> str | None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=5) as c:
        cursor = await c.execute("SELECT id::text FROM jobs WHERE name = %s LIMIT 1", (name,))
        row = await cursor.fetchone()
    return str(row[0]) if row else None


async def submit_one(
    client: HodeiClient,
    url: str,
    name: str,
    request: jobs_pb2.QueueJobRequest,
    subs: Submissions,
    deadline: float,
) -> None:
    """QueueJob until acknowledged; after an error, first look whether the job was stored
    anyway (the server may die between its commit and its answer): QueueJob has no
    idempotency key."""
    look_first = False
    for _ in range(SUBMIT_TRIES):
        if time.monotonic() > deadline:
            break
        if look_first:
            try:
                stored = await find_job(url, name)
            except psycopg.Error:
                await asyncio.sleep(1)
                continue
            if stored is not None:
                subs.stored_despite_error[name] = stored
                return
            subs.resubmitted += 1
        try:
            response = await client.jobs.QueueJob(request, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            subs.errors[error.code().name] += 1
            look_first = True
            await asyncio.sleep(0.5)
            continue
        subs.acked[name] = response.job_id
        return
    subs.given_up.append(name)


async def submit_all(
    stack: Stack, jobs: list[PlannedJob], run_id: str, subs: Submissions, deadline: float
) -> None:
    began = time.monotonic()
    tickets: Iterator[PlannedJob] = iter(jobs)

    async def submitter() -> None:
        async with HodeiClient(stack.address) as client:
            for job in tickets:
                request = jobs_pb2.QueueJobRequest(job=job_definition(job, run_id, stack.locks_dir))
                await submit_one(client, stack.url, job.name, request, subs, deadline)

    await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
    subs.seconds = time.monotonic() - began


async def job_states(url: str) -> Counter[str] | None:
    """Jobs by state, or None while PostgreSQL does not answer."""
    try:
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=5
        ) as conn:
            cursor = await conn.execute("SELECT state, count(*) FROM jobs GROUP BY state")
            return Counter({str(state): int(n) for state, n in await cursor.fetchall()})
    except psycopg.Error:
        return None


def chaos_plan(rng: random.Random, count: int, weights: dict[str, int]) -> list[str]:
    """Each kind of chaos once first (in random order), then by weight."""
    kinds = [kind for kind in CHAOS_KINDS if weights.get(kind, 0) > 0]
    if not kinds or count <= 0:
        return []
    first = rng.sample(kinds, len(kinds))
    rest = rng.choices(kinds, weights=[weights[k] for k in kinds], k=max(count - len(first), 0))
    return (first + rest)[:count]


@dataclass
class Progress:
    states: Counter[str] = field(default_factory=Counter)
    all_final_after_s: float | None = None
    timed_out: bool = False

    @property
    def unfinished(self) -> int:
        return sum(n for state, n in self.states.items() if state not in FINAL_STATES)


async def soak(
    options: Options, stack: Stack, jobs: list[PlannedJob], run_id: str, report: Report
) -> None:
    """Submit, strike while jobs run, and wait until every job ended (or the timeout)."""
    rng = random.Random(options.seed)
    began = stack.began = time.monotonic()
    deadline = began + options.timeout_s
    plan = chaos_plan(rng, options.max_chaos, options.chaos_weights)
    next_strike = began + rng.uniform(options.pause_min_s, options.pause_max_s)
    submitting = asyncio.create_task(submit_all(stack, jobs, run_id, report.submissions, deadline))
    progress, last_note = report.progress, began
    try:
        while True:
            now = time.monotonic()
            if now > deadline:
                progress.timed_out = True
                return
            await stack.supervise()
            states = await job_states(stack.url)
            if states is not None:
                progress.states = states
            submitted = submitting.done()
            if submitted:
                submitting.result()  # raises what the submitters raised
                if states is not None and progress.unfinished == 0:
                    progress.all_final_after_s = time.monotonic() - began
                    return
            if now - last_note >= PROGRESS_EVERY_S:
                last_note = now
                shown = ", ".join(f"{s} {n}" for s, n in sorted(progress.states.items()))
                note(f"[{now - began:7.1f} s] jobs: {shown or '?'}")
            if plan and now < began + options.duration_s and now >= next_strike:
                await stack.strike(plan.pop(0), rng)
                next_strike = time.monotonic() + rng.uniform(
                    options.pause_min_s, options.pause_max_s
                )
            await asyncio.sleep(1)
    finally:
        submitting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await submitting


# --- the invariants ---------------------------------------------------------------------------


@dataclass
class Check:
    """One invariant: how many things it looked at, and what broke it."""

    name: str
    checked: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations

    def fail(self, text: str) -> None:
        self.violations.append(text)


@dataclass
class Snapshot:
    """What PostgreSQL holds about the jobs at the end, grouped by job id."""

    jobs: dict[str, Row]
    attempts: dict[str, list[Row]]
    events: dict[str, list[Row]]
    logs: dict[str, list[Row]]


SNAPSHOT_QUERIES = {
    "jobs": "SELECT id::text AS id, name, state, attempt, exit_code, error_message FROM jobs",
    "attempts": """
        SELECT job_id::text AS job_id, attempt, worker_id::text AS worker_id, state,
               assigned_at, started_at, finished_at, exit_code, error_message
        FROM job_attempts ORDER BY job_id, attempt""",
    "events": """
        SELECT id, correlation_id AS job_id, event_type, payload FROM audit_logs
        WHERE event_type LIKE 'Job%' ORDER BY id""",
    "logs": """
        SELECT job_id::text AS job_id, sequence, attempt, stream, line FROM job_logs
        ORDER BY job_id, sequence""",
}


async def load_snapshot(url: str) -> Snapshot:
    grouped: dict[str, dict[str, list[Row]]] = {}
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row, connect_timeout=10
    ) as conn:
        for name, query in SNAPSHOT_QUERIES.items():
            cursor = await conn.execute(query)
            by_job: dict[str, list[Row]] = defaultdict(list)
            for row in await cursor.fetchall():
                by_job[str(row["job_id" if name != "jobs" else "id"])].append(row)
            grouped[name] = by_job
    return Snapshot(
        jobs={job_id: rows[0] for job_id, rows in grouped["jobs"].items()},
        attempts=grouped["attempts"],
        events=grouped["events"],
        logs=grouped["logs"],
    )


def label(job: Row) -> str:
    return f"{job['name']} ({job['id'][:8]})"


def expected_state(kind: JobKind, attempts: list[Row]) -> str:
    """A job that may fail ends FAILED when its last allowed attempt was lost."""
    if kind.final_state != "SUCCEEDED" and attempts and attempts[-1]["state"] == "LOST":
        return "FAILED"
    return kind.final_state


def check_final_states(data: Snapshot, kinds: dict[str, JobKind]) -> Check:
    check = Check("every job final, in its kind's state, after its allowed attempts")
    for job_id, job in data.jobs.items():
        check.checked += 1
        kind = kind_of(job["name"], kinds)
        attempts = data.attempts.get(job_id, [])
        if kind is None:
            check.fail(f"{label(job)}: not a job of this soak")
        elif job["state"] not in FINAL_STATES:
            check.fail(f"{label(job)} is still {job['state']} at attempt {job['attempt']}")
        elif job["state"] != expected_state(kind, attempts):
            check.fail(
                f"{label(job)} ended {job['state']}, expected {expected_state(kind, attempts)} "
                f"(attempts: {', '.join(a['state'] for a in attempts) or 'none'}; "
                f"{job['error_message']!r})"
            )
        elif kind.final_state != "SUCCEEDED" and len(attempts) != kind.max_attempts:
            check.fail(f"{label(job)} ended after {len(attempts)} of {kind.max_attempts} attempts")
    return check


def allowed_outcomes(kind: JobKind, last: bool) -> frozenset[str]:
    if kind.final_state == "SUCCEEDED":
        return frozenset({"SUCCEEDED"} if last else {"LOST"})
    return frozenset({kind.final_state, "LOST"})


def check_attempt_outcomes(data: Snapshot, kinds: dict[str, JobKind]) -> Check:
    check = Check("every attempt ended as its kind allows (earlier ones: lost)")
    for job_id, attempts in data.attempts.items():
        job = data.jobs[job_id]
        kind = kind_of(job["name"], kinds)
        if kind is None or job["state"] not in FINAL_STATES:
            continue
        for index, attempt in enumerate(attempts):
            check.checked += 1
            allowed = allowed_outcomes(kind, last=index == len(attempts) - 1)
            if attempt["state"] not in allowed or attempt["finished_at"] is None:
                check.fail(
                    f"{label(job)} attempt {attempt['attempt']} ended {attempt['state']} "
                    f"(allowed: {'/'.join(sorted(allowed))}; {attempt['error_message']!r})"
                )
    return check


def check_no_overlap(data: Snapshot) -> Check:
    check = Check("no attempt ran concurrently with another of its job (job_attempts)")
    for job_id, job in data.jobs.items():
        attempts = data.attempts.get(job_id, [])
        check.checked += len(attempts)
        numbers = [a["attempt"] for a in attempts]
        if numbers != list(range(1, job["attempt"] + 1)):
            check.fail(f"{label(job)}: attempt rows {numbers}, job at attempt {job['attempt']}")
        for i, earlier in enumerate(attempts):
            for later in attempts[i + 1 :]:
                end = earlier["finished_at"]
                if end is None or later["assigned_at"] < end:
                    check.fail(
                        f"{label(job)}: attempt {later['attempt']} assigned at "
                        f"{later['assigned_at']:%H:%M:%S.%f} while attempt {earlier['attempt']} "
                        f"({earlier['state']}) lasted until {end}"
                    )
    return check


@dataclass(frozen=True)
class Run:
    """One run of an attempt, as the job itself recorded it."""

    attempt: int
    pid: int
    clock: str  # HH:MM:SS.nnnnnnnnn when it began


def read_runs(locks: Path, job_id: str) -> list[Run]:
    """Every run of the job's attempts, in the order they began."""
    try:
        text = (locks / f"{job_id}.runs").read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    runs = []
    for line in text.splitlines():
        attempt, pid, clock = [*line.split(), "", ""][:3]
        if attempt.isdigit() and pid.isdigit():
            runs.append(Run(int(attempt), int(pid), clock[:12]))
    return runs


def describe_runs(runs: list[Run]) -> str:
    return ", ".join(f"attempt {r.attempt} pid {r.pid} at {r.clock}" for r in runs) or "none"


def check_process_overlap(data: Snapshot, kinds: dict[str, JobKind], locks: Path) -> Check:
    check = Check("no two attempts' processes of a job ran at once (flock)")
    for job_id, job in data.jobs.items():
        kind = kind_of(job["name"], kinds)
        if kind is not None and kind.holds_lock:
            check.checked += len(data.attempts.get(job_id, []))
    with contextlib.suppress(FileNotFoundError):
        for line in (locks / OVERLAPS_FILE).read_text(encoding="utf-8").splitlines():
            job_id, _, attempt = line.partition(" ")
            stored = data.jobs.get(job_id)
            who = label(stored) if stored else job_id
            check.fail(
                f"{who}: attempt {attempt} started while another run's processes lived "
                f"(runs: {describe_runs(read_runs(locks, job_id))})"
            )
    return check


def check_runs(data: Snapshot, kinds: dict[str, JobKind], locks: Path) -> Check:
    check = Check("no attempt executed twice (the jobs' own run records)")
    for job_id, job in data.jobs.items():
        kind = kind_of(job["name"], kinds)
        if kind is None or not kind.holds_lock:
            continue
        runs = read_runs(locks, job_id)
        check.checked += len(runs)
        counted = Counter(run.attempt for run in runs)
        if max(counted.values(), default=1) > 1 or max(counted, default=0) > job["attempt"]:
            check.fail(f"{label(job)} at attempt {job['attempt']}: {describe_runs(runs)}")
    return check


def audit_problems(job: Row, attempts: list[Row], events: list[Row]) -> list[str]:
    types = Counter(e["event_type"] for e in events)
    count = len(attempts)
    problems = []
    if types["JobCreated"] != 1 or events[0]["event_type"] != "JobCreated":
        problems.append(f"{types['JobCreated']} JobCreated, first event {events[0]['event_type']}")
    assigned = sorted(
        e["payload"].get("attempt") for e in events if e["event_type"] == "JobAssigned"
    )
    if assigned != list(range(1, count + 1)):
        problems.append(f"JobAssigned for attempts {assigned}, {count} attempt(s)")
    retried = sorted(e["payload"].get("attempt") for e in events if e["event_type"] == "JobRetried")
    if retried != list(range(1, count)):
        problems.append(f"JobRetried for attempts {retried}, {count} attempt(s)")
    finals = [
        e
        for e in events
        if e["event_type"] == "JobStatusChanged" and e["payload"].get("to") in FINAL_STATES
    ]
    if [e["payload"]["to"] for e in finals] != [job["state"]]:
        problems.append(
            f"JobStatusChanged into {[e['payload']['to'] for e in finals]}, job {job['state']}"
        )
    elif events[-1] is not finals[0]:
        problems.append(f"the last event is {events[-1]['event_type']}, not the final change")
    return problems


def check_audit(data: Snapshot) -> Check:
    check = Check("audit: JobCreated, JobAssigned per attempt, JobRetried per retry, one end")
    for job_id, job in data.jobs.items():
        if job["state"] not in FINAL_STATES:
            continue
        check.checked += 1
        events = data.events.get(job_id, [])
        if not events:
            check.fail(f"{label(job)}: no audit event at all")
            continue
        for problem in audit_problems(job, data.attempts.get(job_id, []), events):
            check.fail(f"{label(job)}: {problem}")
    return check


def output_problem(kind: JobKind, stdout: list[str], stderr: list[str], final: bool) -> str | None:
    """Why an attempt's output is not what its kind prints (None: it is).

    Every attempt's stdout must be a prefix of what the kind prints, in order; the final
    attempt's must be all of it (unless the kind is stopped from outside).
    """
    body = stdout
    if kind.prints_pid and stdout:
        if not PID_LINE.fullmatch(stdout[0]):
            return f"first line {stdout[0]!r} is no pid line"
        body = stdout[1:]
    elif kind.prints_pid and final and kind.complete_output:
        return "no pid line"
    if body != list(kind.stdout[: len(body)]):
        wrong = next(
            i for i, line in enumerate(body) if i >= len(kind.stdout) or line != kind.stdout[i]
        )
        return f"stdout line {wrong + 1} after the pid is {body[wrong]!r}"
    if (
        final
        and kind.complete_output
        and (len(body), stderr) != (len(kind.stdout), list(kind.stderr))
    ):
        return f"{len(body)} of {len(kind.stdout)} lines, stderr {stderr[:3]}"
    return None


def check_logs(data: Snapshot, kinds: dict[str, JobKind]) -> Check:
    check = Check("logs gapless (1..n), each attempt's lines in order, final attempt's all there")
    for job_id, job in data.jobs.items():
        kind = kind_of(job["name"], kinds)
        if kind is None or job["state"] not in FINAL_STATES:
            continue
        check.checked += 1
        lines = data.logs.get(job_id, [])
        sequences = [line["sequence"] for line in lines]
        if sequences != list(range(1, len(sequences) + 1)):
            missing = sorted(set(range(1, max(sequences) + 1)) - set(sequences))
            check.fail(f"{label(job)}: sequences 1..{max(sequences)} miss {missing[:10]}")
        for attempt in data.attempts.get(job_id, []):
            number = attempt["attempt"]
            mine = [line for line in lines if line["attempt"] == number]
            stdout = [line["line"] for line in mine if line["stream"] == "stdout"]
            stderr = [line["line"] for line in mine if line["stream"] == "stderr"]
            final = number == job["attempt"] and attempt["state"] != "LOST"
            problem = output_problem(kind, stdout, stderr, final)
            if problem is not None:
                check.fail(f"{label(job)} attempt {number} ({attempt['state']}): {problem}")
    return check


def check_processes(data: Snapshot, run_id: str) -> Check:
    check = Check("no job process left running (printed PIDs, and this run's environment)")
    printed = 0
    for lines in data.logs.values():
        printed += sum(1 for line in lines if PID_LINE.fullmatch(line["line"]))
    check.checked = printed
    for pid, what in sorted(run_processes(run_id).items()):
        check.fail(f"pid {pid} still runs: {what}")
    return check


def check_submissions(data: Snapshot, subs: Submissions, jobs: list[PlannedJob]) -> Check:
    check = Check("every acknowledged submission stored; every planned job stored")
    names = Counter(job["name"] for job in data.jobs.values())
    for name, job_id in subs.acked.items():
        check.checked += 1
        if job_id not in data.jobs:
            check.fail(f"{name}: QueueJob answered {job_id}, which is not stored")
    for job in jobs:
        if names[job.name] == 0:
            check.fail(f"{job.name}: never stored (given up: {job.name in subs.given_up})")
    return check


def run_checks(
    data: Snapshot,
    kinds: dict[str, JobKind],
    subs: Submissions,
    jobs: list[PlannedJob],
    run_id: str,
    locks: Path,
) -> list[Check]:
    return [
        check_submissions(data, subs, jobs),
        check_final_states(data, kinds),
        check_attempt_outcomes(data, kinds),
        check_no_overlap(data),
        check_process_overlap(data, kinds, locks),
        check_runs(data, kinds, locks),
        check_audit(data),
        check_logs(data, kinds),
        check_processes(data, run_id),
    ]


# --- the report -------------------------------------------------------------------------------


@dataclass
class Report:
    options: Options
    source: str = ""
    run_id: str = ""
    work_dir: Path | None = None
    submissions: Submissions = field(default_factory=Submissions)
    progress: Progress = field(default_factory=Progress)
    planned: Counter[str] = field(default_factory=Counter)
    kills: Counter[str] = field(default_factory=Counter)
    unexpected_exits: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    snapshot: Snapshot | None = None
    checks: list[Check] = field(default_factory=list)
    wall_s: float = 0.0
    checks_s: float = 0.0

    @property
    def failed(self) -> bool:
        return not self.checks or any(not c.passed for c in self.checks)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        return "  " + "  ".join(
            [first, *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))]
        )

    return [line(cells[0]), "  " + "  ".join("-" * w for w in widths), *map(line, cells[1:])]


def kind_rows(data: Snapshot, kinds: dict[str, JobKind]) -> list[list[object]]:
    rows = []
    for kind in kinds.values():
        ids = [i for i, job in data.jobs.items() if kind_of(job["name"], kinds) is kind]
        attempts = [a for i in ids for a in data.attempts.get(i, [])]
        ended = Counter(data.jobs[i]["state"] for i in ids)
        rows.append(
            [
                kind.name,
                len(ids),
                kind.final_state,
                ", ".join(f"{s} {n}" for s, n in sorted(ended.items())),
                len(attempts),
                sum(1 for a in attempts if a["state"] == "LOST"),
            ]
        )
    return rows


def render_jobs(report: Report, kinds: dict[str, JobKind]) -> list[str]:
    data = report.snapshot
    if data is None:
        return ["(no snapshot of the database)"]
    attempts = [a for rows in data.attempts.values() for a in rows]
    outcomes = Counter(a["state"] for a in attempts)
    retries = sum(
        1 for rows in data.events.values() for e in rows if e["event_type"] == "JobRetried"
    )
    states = Counter(job["state"] for job in data.jobs.values())
    hit = sum(1 for rows in data.attempts.values() if any(a["state"] == "LOST" for a in rows))
    lines = ["Jobs by final state:"]
    lines += table(["state", "jobs"], sorted(states.items()))
    lines += ["", "By kind:"]
    lines += table(
        ["kind", "jobs", "must end", "ended", "attempts", "lost attempts"], kind_rows(data, kinds)
    )
    lines += [
        "",
        f"Attempts: {len(attempts)} ({', '.join(f'{s} {n}' for s, n in sorted(outcomes.items()))})",
        f"Retries (JobRetried): {retries}; lost attempts: {outcomes['LOST']} in {hit} job(s)",
    ]
    return lines


def render_run(report: Report) -> list[str]:
    subs, kills = report.submissions, report.kills
    final_after = report.progress.all_final_after_s
    errors = ", ".join(f"{k} {n}" for k, n in sorted(subs.errors.items())) or "none"
    return [
        f"Chaos: worker SIGKILLs {kills['worker']}, server SIGKILLs {kills['server']}, "
        f"PostgreSQL restarts {kills['postgres']}; processes that exited by themselves: "
        f"{len(report.unexpected_exits)}",
        f"Submissions: {len(subs.acked)} acknowledged in {subs.seconds:.1f} s; errors: {errors}; "
        f"stored despite an error {len(subs.stored_despite_error)}, "
        f"resubmitted {subs.resubmitted}, given up {len(subs.given_up)}",
        "Wall time: "
        + (
            f"all jobs final {final_after:.1f} s after the first submission"
            if final_after is not None
            else "NOT all jobs final before the timeout"
        )
        + f"; checks {report.checks_s:.1f} s; total {report.wall_s:.1f} s",
    ]


def render(report: Report, kinds: dict[str, JobKind]) -> str:
    o = report.options
    lines = [
        "",
        f"Hodei chaos soak: {o.jobs} jobs, {o.workers} workers, seed {o.seed}, "
        f"chaos for up to {o.duration_s:g} s / {o.max_chaos} events; "
        f"lease {o.lease_ttl_s:g} s, heartbeat {o.heartbeat_s:g} s",
        f"Source: {report.source}",
        f"Job mix: {', '.join(f'{k} {n}' for k, n in sorted(report.planned.items()))}",
        "",
        *render_jobs(report, kinds),
        "",
        *render_run(report),
        "",
        "Chaos events:",
        *("  " + event for event in report.events),
        "",
        "Invariants:",
    ]
    lines += table(
        ["invariant", "checked", "violations", "result"],
        [
            [c.name, c.checked, len(c.violations), "pass" if c.passed else "FAIL"]
            for c in report.checks
        ],
    )
    for check in report.checks:
        if check.violations:
            lines += ["", f"{check.name}: {len(check.violations)} violation(s), e.g."]
            lines += ["  - " + v for v in check.violations[:EXAMPLES_SHOWN]]
    if report.unexpected_exits:
        lines += ["", "Processes that exited by themselves:"]
        lines += ["  - " + text for text in report.unexpected_exits[:EXAMPLES_SHOWN]]
    lines += ["", "RESULT: " + ("FAIL" if report.failed else "PASS")]
    return "\n".join(lines)


# --- the run ----------------------------------------------------------------------------------


async def main_async(
    options: Options,
    stack: Stack,
    jobs: list[PlannedJob],
    kinds: dict[str, JobKind],
    report: Report,
) -> None:
    note(f"work dir {stack.work_dir}; starting PostgreSQL (fsync on)…")
    await stack.start_postgres()
    note(f"starting the server on {stack.address} and {options.workers} workers…")
    await stack.start_server()
    for _ in range(options.workers):
        await stack.start_worker()
    await stack.wait_for_workers(options.workers)
    note(f"submitting {len(jobs)} jobs while chaos strikes…")
    try:
        await soak(options, stack, jobs, report.run_id, report)
    finally:
        report.kills, report.events = stack.kills, stack.events
        report.unexpected_exits = stack.unexpected_exits
    note(f"checking (after {SETTLE_S:g} s for stragglers)…")
    await asyncio.sleep(SETTLE_S)
    began = time.monotonic()
    report.snapshot = data = await load_snapshot(stack.url)
    report.checks = run_checks(
        data, kinds, report.submissions, jobs, report.run_id, stack.locks_dir
    )
    report.checks_s = time.monotonic() - began


def raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run(options: Options) -> int:
    """Set up, soak, check, tear down; returns the exit code (see the module docstring)."""
    began = time.monotonic()
    work_dir = Path(tempfile.mkdtemp(prefix="hodei-soak-"))
    # Root runs this; PostgreSQL runs as `postgres`, which must enter the directory.
    work_dir.chmod(0o755)
    source = snapshot_source(work_dir) if options.snapshot else None
    kinds = job_kinds(options.lines)
    jobs = plan_jobs(options.jobs, kinds, random.Random(options.seed))
    report = Report(options, source=describe_source(source), run_id=uuid.uuid4().hex[:12])
    report.work_dir = work_dir
    report.planned = Counter(job.kind.name for job in jobs)
    stack = Stack(options, work_dir, source)
    signal.signal(signal.SIGTERM, raise_interrupt)
    code = 2
    try:
        asyncio.run(main_async(options, stack, jobs, kinds, report))
        code = 1 if report.failed else 0
    except (SoakError, HodeiError, psycopg.Error, grpc.aio.AioRpcError, OSError) as error:
        note(f"the soak could not run: {type(error).__name__}: {error}")
    except KeyboardInterrupt:
        note("interrupted")
        code = 130
    finally:
        # The clean-up is bounded; a second Ctrl-C must not leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        note("stopping workers, server and PostgreSQL…")
        try:
            stack.stop_processes(report.run_id)
        finally:
            try:
                asyncio.run(stack.pg.stop())
            except HodeiError as error:
                note(f"could not stop PostgreSQL: {error}")
            if options.keep or code != 0:
                note(f"kept {work_dir}")
            else:
                shutil.rmtree(work_dir, ignore_errors=True)
    report.wall_s = time.monotonic() - began
    if code in (0, 1):
        print(render(report, kinds), flush=True)
    return code


def main() -> None:
    sys.exit(run(parse_options()))


if __name__ == "__main__":
    main()
