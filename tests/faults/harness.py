"""Real processes for the fault tests, and the checks every test makes on the end state.

A `Platform` is one test's world: `hodei server` and `hodei worker` processes started by PID,
each in a process group of its own with its output in a log file, against a database of its own.
`Platform.close` kills everything it started (and every process of the test's jobs), whatever
the test did. Nothing is ever killed by name.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psutil
import psycopg
from psycopg.rows import dict_row

from hodei.store.workers import hash_token
from hodei.v1 import jobs_pb2, jobs_pb2_grpc

HODEI = str(Path(sys.executable).parent / "hodei")
FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED", "TIMEOUT")
# Protocol timings in seconds instead of production's tens of seconds.
LEASE_TTL_S = 3.0
CANCEL_GRACE_S = 2.0
FAST_SETTINGS = {
    "HODEI_DEV_MODE": "1",  # no tokens: these tests are not about authentication
    "HODEI_LEASE_TTL_S": str(LEASE_TTL_S),
    "HODEI_HEARTBEAT_INTERVAL_S": "0.5",
    "HODEI_RETRY_BASE_S": "0.2",
    "HODEI_CANCEL_GRACE_S": str(CANCEL_GRACE_S),
}
# What a job script starts with: its shell's PID and a grandchild that would outlive it.
MARK_PIDS = 'echo "pid $$"; sleep 60 & echo "child $!"; '
_PID_LINE = re.compile(r"^(?:pid|child) (\d+)$")
_POLL = 0.05
_START_TIMEOUT = 30.0

T = TypeVar("T")


def sleeps_with_pids(seconds: float) -> str:
    """A job whose shell prints its PID and waits ``seconds`` for a grandchild it printed."""
    return f'echo "pid $$"; sleep {seconds} & echo "child $!"; wait; '


def gate(path: Path) -> str:
    """Shell that blocks until the test creates ``path``."""
    return f'while [ ! -e "{path}" ]; do sleep 0.05; done; '


def wait_for(condition: Callable[[], T], timeout: float, what: str) -> T:
    """Poll ``condition`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(_POLL)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything that configures Hodei or libpq, plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("HODEI_", "PG")) and name not in ("GRPC_PORT", "RUST_LOG")
    }
    # Wide log lines, so that a log file can be searched for a whole message.
    return env | {"COLUMNS": "400"} | extra


def free_port() -> int:
    """A loopback port that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def run(argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a short command to its end with its output captured."""
    return subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
        check=False,
    )


@dataclass
class Process:
    """One long-running process of the platform, in a process group of its own."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"\n$ {shlex.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def send(self, sig: signal.Signals) -> None:
        """Signal the process itself (only while it has not been reaped: the PID is ours)."""
        if self.running:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL its whole group and reap it."""
        if self.popen is None or self.popen.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)

    def wait(self, timeout: float) -> int:
        assert self.popen is not None
        return self.popen.wait(timeout)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


@dataclass
class Server(Process):
    grpc_port: int = 0
    http_port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http}/readyz", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def wait_ready(self, timeout: float = _START_TIMEOUT) -> None:
        def up() -> bool:
            if not self.running:
                raise AssertionError(f"{self.name} exited:\n{self.log_tail()}")
            return self.ready()

        wait_for(up, timeout, f"{self.name} answers /readyz")


@dataclass
class Worker(Process):
    worker_id: str = ""
    work_dir: Path = Path()


@dataclass
class Platform:
    """One test's database and processes."""

    database_url: str
    root: Path
    processes: list[Process] = field(default_factory=list)
    job_ids: set[str] = field(default_factory=set)
    _names: dict[str, int] = field(default_factory=dict)

    # --- processes -------------------------------------------------------------------------

    def _name(self, kind: str) -> str:
        self._names[kind] = self._names.get(kind, 0) + 1
        return f"{kind}-{self._names[kind]}"

    def server(
        self,
        *,
        grpc_port: int | None = None,
        http_port: int | None = None,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> Server:
        """Start ``hodei server`` and wait until it is ready."""
        name = name or self._name("server")
        grpc_port = grpc_port or free_port()
        http_port = http_port or free_port()
        data_dir = self.root / name
        data_dir.mkdir(exist_ok=True)
        server = Server(
            name=name,
            argv=[
                HODEI,
                "server",
                *("--database-url", self.database_url),
                *("--grpc-port", str(grpc_port)),
                *("--http-port", str(http_port)),
                *("--data-dir", str(data_dir)),
            ],
            env=clean_env(**(FAST_SETTINGS | dict(env or {}))),
            log_path=self.root / f"{name}.log",
            grpc_port=grpc_port,
            http_port=http_port,
        )
        self.processes.append(server)
        server.start()
        server.wait_ready()
        return server

    def restart(self, server: Server) -> Server:
        """A new ``hodei server`` process like ``server`` (same ports, settings and log)."""
        assert not server.running, "stop the old process first"
        again = Server(
            name=server.name,
            argv=server.argv,
            env=server.env,
            log_path=server.log_path,
            grpc_port=server.grpc_port,
            http_port=server.http_port,
        )
        self.processes.append(again)
        again.start()
        again.wait_ready()
        return again

    def worker_tokens(self, count: int) -> list[str]:
        """One-time tokens from ``hodei worker-token``, as an administrator gets them."""
        argv = [HODEI, "worker-token", "--database-url", self.database_url]
        commands = [
            subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=clean_env(),
            )
            for _ in range(count)
        ]
        tokens = []
        for command in commands:
            out, err = command.communicate(timeout=60)
            assert command.returncode == 0, err
            tokens.append(out.strip())
        return tokens

    def workers(
        self,
        servers: Sequence[Server],
        count: int,
        *,
        work_dir: Path | None = None,
        cpus: float = 4,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> list[Worker]:
        """Start ``count`` ``hodei worker`` processes dialling ``servers`` in that order, and
        wait until all are READY."""
        started = []
        for token in self.worker_tokens(count):
            name = self._name("worker")
            worker_dir = work_dir or self.root / f"{name}-work"
            worker_dir.mkdir(exist_ok=True)
            worker = Worker(
                name=name,
                argv=[
                    HODEI,
                    "worker",
                    *("--server", ",".join(s.address for s in servers)),
                    *("--otp", token),
                    *("--work-dir", str(worker_dir)),
                    *("--cpus", str(cpus)),
                    *("--memory-mb", "4096"),
                    *args,
                ],
                env=clean_env(**dict(env or {})),
                log_path=self.root / f"{name}.log",
                work_dir=worker_dir,
            )
            self.processes.append(worker)
            worker.start()
            started.append((worker, token))
        for worker, token in started:
            worker.worker_id = wait_for(
                lambda w=worker, t=token: self._ready_worker(w, t),  # type: ignore[misc]
                _START_TIMEOUT,
                f"{worker.name} is READY",
            )
        return [worker for worker, _ in started]

    def worker(self, servers: Sequence[Server], **options: Any) -> Worker:
        """Start one ``hodei worker`` (see `workers`)."""
        [worker] = self.workers(servers, 1, **options)
        return worker

    def _ready_worker(self, worker: Worker, token: str) -> str | None:
        if not worker.running:
            raise AssertionError(f"{worker.name} exited:\n{worker.log_tail()}")
        rows = self.query(
            "SELECT t.worker_id FROM worker_bootstrap_tokens t JOIN workers w"
            " ON w.id = t.worker_id WHERE t.token_hash = %s AND w.state = 'READY'",
            (hash_token(token),),
        )
        return str(rows[0]["worker_id"]) if rows else None

    def close(self) -> None:
        """Kill every process the test started and every process of its jobs; reap them."""
        doomed: dict[int, psutil.Process] = {}
        for process in self.processes:
            if process.running:
                with contextlib.suppress(psutil.Error):
                    for child in psutil.Process(process.pid).children(recursive=True):
                        doomed.setdefault(child.pid, child)
        for process in reversed(self.processes):
            process.kill()
        for job_process in job_processes(self.job_ids):
            doomed.setdefault(job_process.pid, job_process)
        for leftover in doomed.values():
            with contextlib.suppress(psutil.Error):
                leftover.kill()
        psutil.wait_procs(list(doomed.values()), timeout=5)
        self.reap_orphans()

    def reap_orphans(self) -> None:
        """Reap adopted orphans that died, leaving alone the processes this platform runs."""
        reap_adopted(p.pid for p in self.processes if p.popen and p.popen.returncode is None)

    def describe(self) -> list[tuple[str, str]]:
        """Each process's log tail, for a failure report."""
        return [(f"{p.name} log ({p.log_path})", p.log_tail(80)) for p in self.processes]

    # --- the API ---------------------------------------------------------------------------

    def submit(
        self,
        server: Server,
        script: str,
        *,
        name: str = "fault",
        retry: int = 0,
        timeout_ms: int = 0,
        cpu: float = 1,
        priority: int = jobs_pb2.NORMAL,
    ) -> str:
        """QueueJob through ``server``; ``retry`` > 0 allows that many attempts."""
        definition = jobs_pb2.JobDefinition(
            name=name,
            command_type=jobs_pb2.SHELL,
            script=script,
            resources=jobs_pb2.ResourceRequirements(cpu_cores=cpu, timeout_ms=timeout_ms),
            preferences=jobs_pb2.Preferences(
                allow_retry=retry > 0, max_attempts=retry or 1, priority=priority
            ),
        )
        with grpc.insecure_channel(server.address) as channel:
            stub = jobs_pb2_grpc.JobExecutionServiceStub(channel)
            response = stub.QueueJob(jobs_pb2.QueueJobRequest(job=definition), timeout=10)
        self.job_ids.add(response.job_id)
        return str(response.job_id)

    def get_job(self, server: Server, job_id: str) -> jobs_pb2.Job:
        """GetJob through ``server``."""
        with grpc.insecure_channel(server.address) as channel:
            stub = jobs_pb2_grpc.JobExecutionServiceStub(channel)
            job: jobs_pb2.Job = stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), timeout=10)
        return job

    # --- the database ----------------------------------------------------------------------

    def query(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[dict[str, Any]]:
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=5) as conn:
            cursor = conn.cursor(row_factory=dict_row)
            cursor.execute(sql, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def job(self, job_id: str) -> dict[str, Any]:
        [row] = self.query("SELECT * FROM jobs WHERE id = %s", (job_id,))
        return row

    def state(self, job_id: str) -> str:
        return str(self.job(job_id)["state"])

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        return self.query(
            "SELECT attempt, worker_id::text AS worker_id, state, assigned_at, started_at,"
            " finished_at, exit_code, error_message FROM job_attempts WHERE job_id = %s"
            " ORDER BY attempt",
            (job_id,),
        )

    def logs(self, job_id: str) -> list[dict[str, Any]]:
        return self.query(
            "SELECT sequence, attempt, stream, line FROM job_logs WHERE job_id = %s"
            " ORDER BY sequence",
            (job_id,),
        )

    def lines(self, job_id: str, attempt: int | None = None) -> list[str]:
        return [
            str(r["line"]) for r in self.logs(job_id) if attempt is None or r["attempt"] == attempt
        ]

    def events(self, job_id: str, event_type: str | None = None) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT event_type, actor, payload, occurred_at FROM audit_logs"
            " WHERE correlation_id = %s ORDER BY id",
            (job_id,),
        )
        return [r for r in rows if event_type is None or r["event_type"] == event_type]

    def worker_state(self, worker_id: str) -> str:
        [row] = self.query("SELECT state FROM workers WHERE id = %s", (worker_id,))
        return str(row["state"])

    def wait_state(self, job_id: str, *states: str, timeout: float = 20) -> dict[str, Any]:
        """Until the job is in one of ``states`` (any final state when none is given)."""
        wanted = states or FINAL_STATES

        def reached() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["state"] in wanted else None

        return wait_for(reached, timeout, f"job {job_id} reaches {'/'.join(wanted)}")

    def wait_running(self, job_id: str, timeout: float = 20) -> list[psutil.Process]:
        """Until the job RUNS and its log shows both PIDs it prints; its processes."""
        self.wait_state(job_id, "RUNNING", timeout=timeout)
        return wait_for(
            lambda: printed_processes(self, job_id) if len(printed_pids(self, job_id)) >= 2 else [],
            timeout,
            f"job {job_id} logs its pids",
        )


def printed_pids(platform: Platform, job_id: str) -> list[int]:
    """The PIDs a job printed with `MARK_PIDS` (every attempt)."""
    return pids_in(platform.lines(job_id))


def pids_in(lines: Iterable[str]) -> list[int]:
    """The PIDs in ``pid N`` and ``child N`` lines."""
    return [int(match.group(1)) for line in lines if (match := _PID_LINE.match(line))]


def _job_of(process: psutil.Process) -> str | None:
    with contextlib.suppress(psutil.Error, OSError):
        return process.environ().get("HODEI_JOB_ID")
    return None


def _alive(process: psutil.Process) -> bool:
    """Running and not a zombie; psutil notices a reused PID by its start time."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def printed_processes(platform: Platform, job_id: str) -> list[psutil.Process]:
    """The live processes behind the PIDs the job printed (those that still run its job)."""
    found = []
    for pid in printed_pids(platform, job_id):
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            if _alive(process) and _job_of(process) == job_id:
                found.append(process)
    return found


def job_processes(job_ids: Iterable[str]) -> list[psutil.Process]:
    """Every live process that runs one of these jobs (by the HODEI_JOB_ID it inherited)."""
    wanted = set(job_ids)
    if not wanted:
        return []
    return [p for p in psutil.process_iter() if _alive(p) and _job_of(p) in wanted]


def gone(processes: Iterable[psutil.Process]) -> bool:
    """Whether none of these processes runs any more (a zombie counts as gone)."""
    return not any(_alive(p) for p in processes)


def reap_adopted(keep: Iterable[int] = ()) -> None:
    """Reap the zombie children of this process except ``keep`` (children it started and will
    wait for itself): orphans it adopted as the subreaper (job processes of a killed worker, a
    stopped postmaster)."""
    kept = set(keep)
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error, ChildProcessError):
            if child.pid not in kept and child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)


def check_invariants(platform: Platform, expected: Mapping[str, str]) -> None:
    """The end state of each job and the invariants that hold whatever went wrong on the way.

    - the job is in the expected final state;
    - its log sequence is gapless from 1, without duplicates;
    - exactly one JobStatusChanged took it into a final state, and that state is the expected;
    - no two of its attempts overlap in time (job_attempts);
    - no process of the job still runs.
    """
    for job_id, state in expected.items():
        job = platform.job(job_id)
        assert job["state"] == state, (
            f"job {job_id} is {job['state']} ({job['error_message']!r}), expected {state}"
        )
        sequences = [row["sequence"] for row in platform.logs(job_id)]
        assert sequences == list(range(1, len(sequences) + 1)), (
            f"job {job_id}: log sequences {sequences} are not gapless from 1"
        )
        into_final = [
            e["payload"].get("to")
            for e in platform.events(job_id, "JobStatusChanged")
            if e["payload"].get("to") in FINAL_STATES
        ]
        assert into_final == [state], (
            f"job {job_id}: JobStatusChanged into final states {into_final}, expected [{state}]"
        )
        check_attempts_do_not_overlap(platform, job_id)
    wait_for(
        lambda: not job_processes(expected),
        10,
        f"no process of jobs {sorted(expected)} runs ({job_processes(expected)})",
    )


def check_attempts_do_not_overlap(platform: Platform, job_id: str) -> None:
    attempts = platform.attempts(job_id)
    assert [a["attempt"] for a in attempts] == list(range(1, len(attempts) + 1))
    previous_end: datetime | None = None
    for attempt in attempts:
        assert attempt["finished_at"] is not None, f"job {job_id}: {attempt} never ended"
        if previous_end is not None:
            assert previous_end <= attempt["assigned_at"], (
                f"job {job_id}: attempt {attempt['attempt']} was assigned at "
                f"{attempt['assigned_at']}, before the previous one ended at {previous_end}"
            )
        if attempt["started_at"] is not None:
            assert attempt["assigned_at"] <= attempt["started_at"] <= attempt["finished_at"]
        previous_end = attempt["finished_at"]


def numbered(prefix: str, count: int, pause: float) -> str:
    """A script printing ``PREFIX 1`` … ``PREFIX count``, ``pause`` seconds apart."""
    return (
        f'i=1; while [ "$i" -le {count} ]; do echo "{prefix} $i"; i=$((i + 1)); sleep {pause}; done'
    )
