"""Submit -> SUCCEEDED of a trivial job on the docker runtime, next to a plain ``docker run``.

Benchmark, not a test (issue: "p50/p99 submit -> SUCCEEDED for a trivial job with the docker
runtime, next to a plain ``docker run --rm IMAGE true`` measured in the same run. Target: within
1.5 times the plain run.").

Everything is measured in one run on one machine (figures from different runs differ by up to
50 % for latencies here), the two paths interleaved, job by job:

* Hodei: ``true`` (SHELL, image ``hodei-test/busybox:1``) submitted with gRPC ``QueueJob``, then
  followed on the server's ``WatchJob`` stream until the event that makes it SUCCEEDED arrives.
  The stream is pushed by the server (PostgreSQL NOTIFY wakes it): the client does not poll.
  Jobs run one at a time on the one worker of a ``docker`` provider (``hodei worker --runtime
  docker``, network ``none``) that the real ``hodei up`` (no local workers) starts.
* Plain: ``docker run --rm --network none hodei-test/busybox:1 true`` with the ``docker`` CLI on
  PATH, against the same engine, timed by wall clock from before the CLI process is started until
  it has exited.

It prints p50/p90/p99/max of both, the ratios of the p50s and of the p99s and PASS/FAIL against
the 1.5x target, and writes ``bench/results/docker-<UTC time>.json``. ``--breakdown`` adds where
the time of each path goes (the job's instants from ``GetJob``, the engine's container events,
the events' instants on ``WatchJob``), the docker runtime alone in this process (no server), and
``docker run`` of the very container Hodei asks for (``--init``, CPU and memory limits,
``sh -c true``).

It starts a private ``dockerd`` (``tests.docker_engine.DockerEngine``: no bridge, no iptables)
unless ``--docker-host`` names one, imports the test images into it, starts its own PostgreSQL
(fsync on) and ``hodei up --workers 0`` against it, all on 127.0.0.1, bounds every loop by count
and deadline, and stops everything it started (server, workers, PostgreSQL, dockerd) by PID or
process group, also on failure, Ctrl-C or SIGTERM.

Exit codes: 0 every job and run succeeded; 1 one did not; 2 the benchmark could not run; 3 the
target was missed (only with ``--check-targets``); 130 interrupted.

Run::

    .venv/bin/python bench/docker_latency.py
    .venv/bin/python bench/docker_latency.py --jobs 100 --breakdown
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Before grpc is imported: this process forks (pg_ctl run as another user), and gRPC's fork
# handlers, on while other threads use gRPC, crashed the child (hodei itself sets this too).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
# The repository root, for tests.docker_engine (the private dockerd the tests use too).
sys.path.append(str(REPO_ROOT))

import argparse
import asyncio
import contextlib
import itertools
import json
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import docker
import docker.errors
import grpc
import psutil
import psycopg
from benchlib import BenchError, HodeiUp, note, save_logs
from dispatch_figures import Summary, summarize

import hodei
from hodei.client import HodeiClient
from hodei.domain.errors import HodeiError
from hodei.domain.jobs import CommandType
from hodei.domain.logs import LogStream
from hodei.domain.providers import ProviderConfig, ProviderType
from hodei.domain.states import JobState
from hodei.store.database import Database
from hodei.store.embedded import EmbeddedPostgres
from hodei.store.migrations import migrate
from hodei.store.providers import ProviderRepository
from hodei.v1 import jobs_pb2, scheduler_pb2
from hodei.worker.containers import LABEL_JOB, DockerRuntime, DockerSettings
from hodei.worker.runtime import JobLaunch, use_pidfd_child_watcher
from tests.docker_engine import DockerEngine, DockerEngineError, build_test_images

T = TypeVar("T")

TARGET_RATIO = 1.5
RPC_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 120.0
PLAIN_TIMEOUT_S = 60.0
LEFTOVER_WAIT_S = 5.0
EVENTS_SETTLE_S = 1.0
FINAL_PROTO_STATES = frozenset(
    {jobs_pb2.SUCCEEDED, jobs_pb2.FAILED, jobs_pb2.CANCELLED, jobs_pb2.TIMEOUT}
)
MEASURING = (
    "Hodei: QueueJob sent -> the WatchJob event that makes the job SUCCEEDED received "
    "(a server-pushed stream, woken by PostgreSQL NOTIFY: no client polling); "
    "plain: wall clock from before the docker CLI process starts until it has exited"
)
# The server's WatchJob falls back to reading the events every second when a notification is
# missed: a final event that reached the client this late after it was recorded was such a miss.
LATE_EVENT_MS = 500.0

HODEI = "Hodei (docker runtime)"
PLAIN = "plain docker run --rm"


# --- the processes ---------------------------------------------------------------------------


@dataclass
class Stack:
    """What this benchmark started, for the clean-up."""

    work_dir: Path
    engine: DockerEngine | None = None
    docker_host: str = ""
    pg: EmbeddedPostgres | None = None
    up: HodeiUp | None = None

    def start_engine(self, given_host: str) -> None:
        if given_host:
            self.docker_host = given_host
            return
        self.engine = DockerEngine()
        self.engine.start()
        self.docker_host = self.engine.host

    def stop(self, keep_logs: Path | None) -> None:
        """Server and workers, what they left, PostgreSQL, dockerd; each step runs."""
        try:
            if self.up is not None:
                note("stopping hodei up (and its docker worker)…")
                stop_hodei_up(self.up)
        finally:
            try:
                if self.pg is not None:
                    note("stopping PostgreSQL…")
                    asyncio.run(self.pg.stop())
            finally:
                if self.engine is not None:
                    if keep_logs is not None and self.engine.log_path is not None:
                        with contextlib.suppress(OSError):
                            shutil.copy(self.engine.log_path, self.work_dir / "dockerd.log")
                    note("stopping dockerd…")
                    self.engine.stop()


def stop_hodei_up(up: HodeiUp) -> None:
    """``HodeiUp.stop`` (SIGINT, then SIGKILL to its group), then by PID whatever of its
    descendants outlived it in a session of its own (a worker's keeper)."""
    descendants: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error, BenchError):
        descendants = psutil.Process(up.pid).children(recursive=True)
    up.stop()
    left = [p for p in descendants if _alive(p)]
    for process in left:
        note(f"killing leftover process {process.pid}")
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(left, timeout=LEFTOVER_WAIT_S)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def create_docker_provider(url: str, docker_host: str, image: str) -> None:
    """The ``docker`` provider in the table before ``hodei up`` reads it: one worker."""
    await migrate(url)
    db = await Database.connect(url, min_size=1, max_size=1)
    try:
        await ProviderRepository(db).upsert(
            ProviderConfig(
                name="docker",
                type=ProviderType.DOCKER,
                min_workers=1,
                max_workers=1,
                idle_timeout=timedelta(hours=1),
                config={
                    "default_image": image,
                    "network": "none",
                    "docker_host": docker_host,
                    "keep_containers": False,
                    "cpu_cores": 2,
                    "memory_mb": 2048,
                },
            ),
            actor="bench",
        )
    finally:
        await db.close()


async def wait_for_docker_worker(client: HodeiClient, up: HodeiUp) -> str:
    """The id of the docker worker once it is READY."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not up.alive():
            raise BenchError(f"hodei up exited while starting:\n{up.log_tail()}")
        with contextlib.suppress(grpc.aio.AioRpcError):
            response = await client.scheduler.ListWorkers(
                scheduler_pb2.ListWorkersRequest(), timeout=5
            )
            for worker in response.workers:
                if worker.runtime == "docker" and worker.state == scheduler_pb2.WORKER_READY:
                    return str(worker.id)
        await asyncio.sleep(0.2)
    raise BenchError(
        f"no docker worker READY after {READY_TIMEOUT_S:g} s:\n{up.log_tail()}\n"
        f"(worker logs: {up.data_dir / 'hodei' / 'logs'})"
    )


def docker_cli(docker_host: str) -> tuple[str, str]:
    """The ``docker`` binary on PATH and its client and engine versions."""
    binary = shutil.which("docker")
    if binary is None:
        raise BenchError("no `docker` CLI on PATH (apt-get install docker.io)")
    result = subprocess.run(
        [binary, "version", "--format", "client {{.Client.Version}}, engine {{.Server.Version}}"],
        env=os.environ | {"DOCKER_HOST": docker_host},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"`{binary} version` failed: {result.stderr.strip()}")
    return binary, result.stdout.strip()


# --- the measurements ------------------------------------------------------------------------


@dataclass
class HodeiSample:
    """One job as the client saw it; wall-clock instants in ns since the epoch."""

    job_id: str
    total_ms: float
    queue_rpc_ms: float
    state: str
    sent_ns: int
    seen_ns: int
    recorded_ns: dict[str, int] = field(default_factory=dict)  # event -> occurred_at


@dataclass
class PlainSample:
    total_ms: float
    started_ns: int
    exited_ns: int


def trivial_job(image: str, name: str) -> jobs_pb2.JobDefinition:
    return jobs_pb2.JobDefinition(
        name=name, command_type=jobs_pb2.SHELL, script="true", image=image
    )


def _event_name(event: jobs_pb2.JobEvent) -> str:
    if event.event_type == "JobStatusChanged":
        return jobs_pb2.JobState.Name(event.state)
    return str(event.event_type)


async def run_hodei(client: HodeiClient, job: jobs_pb2.JobDefinition) -> HodeiSample:
    """QueueJob, then WatchJob until the event that puts the job in a final state."""
    sent_ns, sent = time.time_ns(), time.perf_counter()
    response = await client.jobs.QueueJob(jobs_pb2.QueueJobRequest(job=job), timeout=RPC_TIMEOUT_S)
    acked = time.perf_counter()
    recorded: dict[str, int] = {}
    call = client.jobs.WatchJob(
        jobs_pb2.WatchJobRequest(job_id=response.job_id), timeout=RPC_TIMEOUT_S
    )
    try:
        async for event in call:
            recorded.setdefault(_event_name(event), event.occurred_at.ToNanoseconds())
            if event.state in FINAL_PROTO_STATES:
                seen, seen_ns = time.perf_counter(), time.time_ns()
                return HodeiSample(
                    job_id=response.job_id,
                    total_ms=(seen - sent) * 1000,
                    queue_rpc_ms=(acked - sent) * 1000,
                    state=jobs_pb2.JobState.Name(event.state),
                    sent_ns=sent_ns,
                    seen_ns=seen_ns,
                    recorded_ns=recorded,
                )
    except grpc.aio.AioRpcError as error:
        raise BenchError(
            f"job {response.job_id} did not end: WatchJob failed with {error.code().name} "
            f"({error.details()})"
        ) from None
    finally:
        call.cancel()
    raise BenchError(f"WatchJob of {response.job_id} ended before the job did")


async def run_plain(argv: Sequence[str], env: dict[str, str]) -> PlainSample:
    """One ``docker run``, timed from before its process starts until it has exited."""
    started_ns, started = time.time_ns(), time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), PLAIN_TIMEOUT_S)
    except TimeoutError:
        raise BenchError(f"`{shlex.join(argv)}` took over {PLAIN_TIMEOUT_S:g} s") from None
    finally:
        if process.returncode is None:  # timed out, or interrupted: it goes too
            process.kill()
            await asyncio.shield(process.wait())
    exited, exited_ns = time.perf_counter(), time.time_ns()
    if process.returncode != 0:
        raise BenchError(
            f"`{shlex.join(argv)}` exited with {process.returncode}: {stderr.decode().strip()}"
        )
    return PlainSample((exited - started) * 1000, started_ns, exited_ns)


@dataclass
class Samples:
    hodei: list[HodeiSample] = field(default_factory=list)
    plain: list[PlainSample] = field(default_factory=list)


async def interleaved(
    client: HodeiClient,
    job: jobs_pb2.JobDefinition,
    plain_argv: Sequence[str],
    env: dict[str, str],
    count: int,
    deadline: float,
) -> Samples:
    """``count`` Hodei jobs and ``count`` plain runs, one at a time, alternating which goes
    first in each pair so that neither always follows the other."""
    samples = Samples()
    for index in range(count):
        if time.monotonic() > deadline:
            raise BenchError(f"out of time after {index} of {count} pairs")
        if index % 2 == 0:
            samples.hodei.append(await run_hodei(client, job))
            samples.plain.append(await run_plain(plain_argv, env))
        else:
            samples.plain.append(await run_plain(plain_argv, env))
            samples.hodei.append(await run_hodei(client, job))
    return samples


async def _discard(_stream: LogStream, _block: bytes) -> None:
    return None


@dataclass
class RuntimeAlone:
    start_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    # "2. attach_socket" -> ms: each Docker SDK call, numbered in the order of one attempt.
    calls_ms: dict[str, list[float]] = field(default_factory=dict)


def _time_calls(runtime: DockerRuntime, calls: list[tuple[str, float]]) -> None:
    """Note the name and duration of every SDK call the runtime makes, in order."""
    original = runtime.call

    async def timed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        began = time.perf_counter()
        try:
            return await original(fn, *args, **kwargs)
        finally:
            calls.append((getattr(fn, "__name__", "?"), (time.perf_counter() - began) * 1000))

    runtime.call = timed  # type: ignore[method-assign]


# The SDK calls of one attempt in the order the runtime makes them; the removal runs in the
# background after ``wait`` (and may overlap the next attempt's first calls).
CALL_ORDER = (
    "create_container",
    "attach_socket",
    "start",
    "inspect_container",
    "wait",
    "inspect_container #2",
    "remove_container (background)",
)


def add_calls(into: dict[str, list[float]], calls: list[tuple[str, float]]) -> None:
    """One attempt's calls by name, a repeated one numbered (``inspect_container #2``)."""
    seen: dict[str, int] = {}
    for name, ms in list(calls):
        if name == "remove_container":
            key = f"{name} (background)"
        else:
            seen[name] = seen.get(name, 0) + 1
            key = name if seen[name] == 1 else f"{name} #{seen[name]}"
        into.setdefault(key, []).append(ms)


def call_rank(name: str) -> int:
    return CALL_ORDER.index(name) if name in CALL_ORDER else len(CALL_ORDER)


async def runtime_alone(
    docker_host: str, image: str, resources: jobs_pb2.ResourceRequirements, count: int
) -> RuntimeAlone:
    """``DockerRuntime.start``, then ``.wait``, of ``true`` in this process as the worker calls
    them (same settings and limits), without server or worker; and each SDK call they make."""
    runtime = DockerRuntime(DockerSettings(default_image=image, docker_host=docker_host))
    await runtime.prepare(f"bench-{uuid.uuid4()}")
    calls: list[tuple[str, float]] = []
    _time_calls(runtime, calls)
    result = RuntimeAlone()
    try:
        with tempfile.TemporaryDirectory(prefix="hodei-bench-runtime-") as workdir:
            for attempt in range(1, count + 1):
                launch = JobLaunch(
                    job_id=f"bench-runtime-{uuid.uuid4()}",
                    attempt=attempt,
                    command_type=CommandType.SHELL,
                    script="true",
                    image=image,
                    env={},
                    timeout_ms=0,
                    workdir=Path(workdir),
                    cpu_cores=resources.cpu_cores,
                    memory_mb=resources.memory_mb,
                )
                calls.clear()  # the removal of the previous container, if still going, too
                began = time.perf_counter()
                execution = await runtime.start(launch, _discard)
                result.start_ms.append((time.perf_counter() - began) * 1000)
                outcome = await execution.wait()
                result.total_ms.append((time.perf_counter() - began) * 1000)
                if outcome.state is not JobState.SUCCEEDED:
                    raise BenchError(f"the runtime alone: {outcome.state} {outcome.error_message}")
                add_calls(result.calls_ms, calls)
    finally:
        await runtime.close()
    return result


# --- the breakdown ---------------------------------------------------------------------------

# The instants of a Hodei job in order: each hop is the time between two neighbours.
HODEI_INSTANTS = (
    ("QueueJob sent (client)", "sent"),
    ("created_at (server)", "created"),
    ("assigned_at (server)", "assigned"),
    ("container created (engine)", "create"),
    ("container started (engine)", "start"),
    ("container died (engine)", "die"),
    ("finished_at (worker)", "finished"),
    ("SUCCEEDED recorded (server, audit event)", "SUCCEEDED"),
    ("SUCCEEDED seen (client, WatchJob)", "seen"),
)
HODEI_HOP_MEANING = {
    "created": "QueueJob RPC until the row is written",
    "assigned": "scheduling: the dispatcher picks the job and a worker",
    "create": "RunJob to the worker, mkdtemp, create_container",
    "start": "attach, start (runc, docker-init)",
    "die": "the container runs `sh -c true`",
    "finished": "worker: streams close, wait, inspect, log batch closed",
    "SUCCEEDED": "JobResult to the server, stored, audit event",
    "seen": "NOTIFY -> WatchJob -> client",
}
# Instants off the path above, each measured from the instant it follows.
HODEI_ASIDES = (
    ("started_at (worker) after container started", "started", "start"),
    ("RUNNING recorded after started_at (worker)", "RUNNING", "started"),
    ("container destroyed after SUCCEEDED seen", "destroy", "seen"),
)
PLAIN_INSTANTS = (
    ("docker CLI started", "sent"),
    ("container created (engine)", "create"),
    ("container started (engine)", "start"),
    ("container died (engine)", "die"),
    ("container destroyed (engine, --rm)", "destroy"),
    ("docker CLI exited", "seen"),
)
PLAIN_HOP_MEANING = {
    "create": "CLI start-up, API version, create",
    "start": "attach, start (runc)",
    "die": "the container runs `true`",
    "destroy": "the engine removes it (--rm)",
    "seen": "the CLI hears of it and exits",
}


@dataclass
class Breakdown:
    hodei_hops: dict[str, Summary] = field(default_factory=dict)
    hodei_asides: dict[str, Summary] = field(default_factory=dict)
    plain_hops: dict[str, Summary] = field(default_factory=dict)
    runtime_start: Summary | None = None
    runtime_total: Summary | None = None
    runtime_calls: dict[str, Summary] = field(default_factory=dict)
    plain_again: Summary | None = None
    plain_like_hodei: Summary | None = None
    plain_like_hodei_argv: list[str] = field(default_factory=list)
    job_resources: dict[str, float] = field(default_factory=dict)
    jobs_without_all_instants: int = 0


class EngineEvents:
    """The engine's container events, read live by a thread from ``start`` to ``stop``.

    Live, because dockerd keeps only its last 256 events for a later ``since``/``until`` query:
    fewer than a run of 40 jobs and 40 plain runs makes."""

    def __init__(self, docker_host: str) -> None:
        self._client = docker.DockerClient(base_url=docker_host, timeout=60)
        self._stream: Any = None
        self._thread: threading.Thread | None = None
        self.events: list[dict[str, Any]] = []

    def start(self) -> None:
        self._stream = self._client.api.events(filters={"type": "container"}, decode=True)
        self._thread = threading.Thread(target=self._read, name="engine-events", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # closed under it by stop()
            for event in self._stream:
                self.events.append(event)

    def stop(self) -> list[dict[str, Any]]:
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._client.close()
        return list(self.events)


def container_instants(events: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per container id, the first instant of each action (create, start, die, destroy)."""
    instants: dict[str, dict[str, int]] = {}
    for event in events:
        action = str(event.get("Action") or event.get("status") or "")
        container = str(event.get("id") or event.get("Actor", {}).get("ID", ""))
        instants.setdefault(container, {}).setdefault(action, int(event["timeNano"]))
    return instants


def _labels(events: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {
        str(e.get("id")): dict(e.get("Actor", {}).get("Attributes") or {})
        for e in events
        if e.get("Action") == "create"
    }


def _hops(
    instants: list[dict[str, int]], order: Sequence[tuple[str, str]]
) -> tuple[dict[str, Summary], int]:
    """Summaries of the hops between neighbouring instants; and how many rows missed one."""
    complete = [row for row in instants if all(key in row for _, key in order)]
    hops = {}
    for (_, earlier), (label, later) in itertools.pairwise(order):
        hops[label] = summarize([(row[later] - row[earlier]) / 1e6 for row in complete])
    return hops, len(instants) - len(complete)


def _asides(instants: list[dict[str, int]]) -> dict[str, Summary]:
    return {
        label: summarize(
            [(row[key] - row[after]) / 1e6 for row in instants if key in row and after in row]
        )
        for label, key, after in HODEI_ASIDES
    }


async def hodei_instants(
    client: HodeiClient, samples: list[HodeiSample], containers: dict[str, dict[str, int]]
) -> tuple[list[dict[str, int]], jobs_pb2.ResourceRequirements]:
    """Per job: the client's, the server's (GetJob, audit events), the worker's and the
    engine's instants."""
    rows = []
    resources = jobs_pb2.ResourceRequirements()
    for sample in samples:
        job = await client.jobs.GetJob(
            jobs_pb2.GetJobRequest(job_id=sample.job_id), timeout=RPC_TIMEOUT_S
        )
        resources = job.definition.resources
        row = {"sent": sample.sent_ns, "seen": sample.seen_ns} | sample.recorded_ns
        for key in ("created", "assigned", "started", "finished"):
            stamp = getattr(job, f"{key}_at")
            if stamp.seconds or stamp.nanos:
                row[key] = stamp.ToNanoseconds()
        row |= containers.get(sample.job_id, {})
        rows.append(row)
    return rows, resources


def plain_instants(
    samples: list[PlainSample], containers: dict[str, dict[str, int]]
) -> list[dict[str, int]]:
    """Each plain run with the one container created while its CLI ran."""
    rows = []
    for sample in samples:
        row = {"sent": sample.started_ns, "seen": sample.exited_ns}
        for instants in containers.values():
            if sample.started_ns <= instants.get("create", 0) <= sample.exited_ns:
                row |= instants
                break
        rows.append(row)
    return rows


async def breakdown(
    options: Options,
    client: HodeiClient,
    samples: Samples,
    events: list[dict[str, Any]],
    env: dict[str, str],
) -> Breakdown:
    docker_host = env["DOCKER_HOST"]
    labels = _labels(events)
    per_container = container_instants(events)
    by_job = {
        labels[c][LABEL_JOB]: i for c, i in per_container.items() if LABEL_JOB in labels.get(c, {})
    }
    plain_containers = {
        c: i for c, i in per_container.items() if c in labels and LABEL_JOB not in labels[c]
    }
    result = Breakdown()
    rows, resources = await hodei_instants(client, samples.hodei, by_job)
    result.hodei_hops, result.jobs_without_all_instants = _hops(rows, HODEI_INSTANTS)
    result.hodei_asides = _asides(rows)
    result.plain_hops, _ = _hops(plain_instants(samples.plain, plain_containers), PLAIN_INSTANTS)
    result.job_resources = {"cpu_cores": resources.cpu_cores, "memory_mb": resources.memory_mb}

    note(f"breakdown: the docker runtime alone, {options.jobs} times in this process…")
    alone = await runtime_alone(docker_host, options.image, resources, options.jobs)
    result.runtime_start, result.runtime_total = (
        summarize(alone.start_ms),
        summarize(alone.total_ms),
    )
    result.runtime_calls = {
        name: summarize(alone.calls_ms[name]) for name in sorted(alone.calls_ms, key=call_rank)
    }

    shaped = hodei_shaped_argv(options.docker_binary, options.image, resources)
    plain = plain_argv(options)
    note(f"breakdown: `{shlex.join(shaped)}` and the plain run, {options.jobs} pairs…")
    result.plain_like_hodei_argv = shaped
    pairs: list[tuple[PlainSample, PlainSample]] = []
    for index in range(options.warmup + options.jobs):
        first, second = (shaped, plain) if index % 2 else (plain, shaped)
        one, other = await run_plain(first, env), await run_plain(second, env)
        pairs.append((other, one) if index % 2 else (one, other))
    measured = pairs[options.warmup :]
    result.plain_again = summarize([p.total_ms for p, _ in measured])
    result.plain_like_hodei = summarize([s.total_ms for _, s in measured])
    return result


def hodei_shaped_argv(
    binary: str, image: str, resources: jobs_pb2.ResourceRequirements
) -> list[str]:
    """``docker run`` of the container the docker runtime creates for ``true``."""
    limits = []
    if resources.cpu_cores > 0:
        limits += ["--cpus", f"{resources.cpu_cores:g}"]
    if resources.memory_mb > 0:
        memory = f"{resources.memory_mb}m"
        limits += ["--memory", memory, "--memory-swap", memory]
    return [
        binary,
        *("run", "--rm", "--network", "none", "--init"),
        *limits,
        *(image, "sh", "-c", "true"),
    ]


# --- the report ------------------------------------------------------------------------------


@dataclass
class Report:
    command: str
    started_utc: str
    hodei_package: str
    cpus: int
    options: dict[str, Any]
    measuring: str = MEASURING
    docker_cli: str = ""
    docker_versions: str = ""
    docker_host: str = ""
    plain_argv: list[str] = field(default_factory=list)
    load_before: tuple[float, ...] = ()
    load_after: tuple[float, ...] = ()
    hodei: Summary | None = None
    plain: Summary | None = None
    queue_rpc: Summary | None = None
    ratio_p50: float = float("nan")
    ratio_p99: float = float("nan")
    target_ratio: float = TARGET_RATIO
    not_succeeded: int = 0
    late_final_events: int = 0
    hodei_ms: list[float] = field(default_factory=list)
    plain_ms: list[float] = field(default_factory=list)
    breakdown: Breakdown | None = None

    @property
    def passed(self) -> bool:
        return self.ratio_p50 <= TARGET_RATIO and self.ratio_p99 <= TARGET_RATIO


def fill(report: Report, samples: Samples) -> None:
    report.hodei_ms = [s.total_ms for s in samples.hodei]
    report.plain_ms = [s.total_ms for s in samples.plain]
    report.hodei = summarize(report.hodei_ms)
    report.plain = summarize(report.plain_ms)
    report.queue_rpc = summarize([s.queue_rpc_ms for s in samples.hodei])
    report.ratio_p50 = report.hodei.p50 / report.plain.p50
    report.ratio_p99 = report.hodei.p99 / report.plain.p99
    report.not_succeeded = sum(1 for s in samples.hodei if s.state != "SUCCEEDED")
    report.late_final_events = sum(
        1
        for s in samples.hodei
        if s.state in s.recorded_ns and (s.seen_ns - s.recorded_ns[s.state]) / 1e6 >= LATE_EVENT_MS
    )


def row(label: str, s: Summary | None, width: int = 44) -> str:
    if s is None or s.n == 0:
        return f"{label:<{width}} {'-':>4}"
    return (
        f"{label:<{width}} {s.n:>4} {s.p50:>8.1f} {s.p90:>8.1f} {s.p99:>8.1f} {s.max:>8.1f}"
        f" {s.mean:>8.1f}"
    )


def header(title: str, width: int = 44) -> str:
    columns = f"{'n':>4} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8} {'mean':>8}"
    return f"\n{title}\n{'ms':<{width}} {columns}"


def hop_table(
    title: str, hops: dict[str, Summary], order: Sequence[tuple[str, str]], meaning: dict[str, str]
) -> list[str]:
    """Hops with their share of the summed means (the means add up, percentiles do not)."""
    lines = [header(title, 58)]
    total = sum(s.mean for s in hops.values() if s.n)
    keys = dict((label, key) for label, key in order)
    for label, s in hops.items():
        share = f" {100 * s.mean / total:>5.1f} %" if total and s.n else ""
        lines.append(row(f"-> {label}", s, 58) + share)
        lines.append(f"     ({meaning.get(keys[label], '')})")
    return lines


def render_breakdown(b: Breakdown) -> str:
    lines = hop_table(
        "Where a Hodei job's time goes (hop to each instant; % of the summed means)",
        b.hodei_hops,
        HODEI_INSTANTS,
        HODEI_HOP_MEANING,
    )
    if b.jobs_without_all_instants:
        lines.append(f"  ({b.jobs_without_all_instants} job(s) left out: an instant was missing)")
    lines.append(header("Off that path", 58))
    lines += [row(label, s, 58) for label, s in b.hodei_asides.items()]
    lines += hop_table(
        "Where a plain `docker run` goes", b.plain_hops, PLAIN_INSTANTS, PLAIN_HOP_MEANING
    )
    lines.append(header("The docker runtime alone, in this process (no server, no worker)", 58))
    lines.append(row("DockerRuntime.start", b.runtime_start, 58))
    lines.append(row("DockerRuntime.start + wait", b.runtime_total, 58))
    lines += [row(f"  {name}", s, 58) for name, s in b.runtime_calls.items()]
    lines.append("  (its Docker SDK calls, in the order of one attempt; each waits for the one")
    lines.append("  before, except the removal, which may overlap the next attempt's calls)")
    lines.append(header("The container Hodei asks for, by `docker run` (interleaved pairs)", 58))
    lines.append(row("plain `docker run --rm … true`, again", b.plain_again, 58))
    lines.append(row("`docker run` of Hodei's container (below)", b.plain_like_hodei, 58))
    lines.append(f"  `{shlex.join(b.plain_like_hodei_argv)}`")
    lines.append(f"  the jobs' resources as stored: {b.job_resources}")
    lines.append(
        "  Clocks: client, server and worker instants are this host's wall clock; engine "
        "instants are dockerd's (same host)."
    )
    return "\n".join(lines)


def render(report: Report) -> str:
    verdict = "PASS" if report.passed else "FAIL"
    lines = [
        f"\nDocker runtime vs plain `docker run` ({report.options['jobs']} each, interleaved)",
        f"docker CLI: {report.docker_cli} ({report.docker_versions}); DOCKER_HOST="
        f"{report.docker_host}",
        f"plain: `{shlex.join(report.plain_argv)}`",
        f"measured: {report.measuring}",
        header("submit -> SUCCEEDED"),
        row(HODEI, report.hodei),
        row(PLAIN, report.plain),
        row("  of Hodei: QueueJob RPC", report.queue_rpc),
        f"\nratio Hodei / plain: p50 {report.ratio_p50:.2f}x, p99 {report.ratio_p99:.2f}x "
        f"(target <= {TARGET_RATIO:g}x for both): {verdict}",
    ]
    if report.not_succeeded:
        lines.append(f"jobs that did not succeed: {report.not_succeeded}")
    if report.late_final_events:
        lines.append(
            f"{report.late_final_events} job(s) reached the client over {LATE_EVENT_MS:g} ms "
            "after their final event was recorded: a missed notification (WatchJob then reads "
            "the events once a second)"
        )
    lines.append(
        f"load average before/after: {report.load_before} / {report.load_after} "
        f"on {report.cpus} CPUs"
    )
    if report.breakdown is not None:
        lines.append(render_breakdown(report.breakdown))
    return "\n".join(lines)


def write_json(report: Report, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"docker-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    document = asdict(report) | {"passed": report.passed}
    path.write_text(json.dumps(document, indent=2, default=str))
    return path


# --- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    jobs: int
    warmup: int
    image: str
    docker_host: str
    docker_binary: str
    breakdown: bool
    server_log_level: str
    timeout_s: float
    check_targets: bool
    json_dir: Path | None
    logs_dir: Path
    keep: bool


def plain_argv(options: Options) -> list[str]:
    return [options.docker_binary, "run", "--rm", "--network", "none", options.image, "true"]


async def benchmark(options: Options, stack: Stack, report: Report) -> None:
    use_pidfd_child_watcher()  # the plain runs' processes: no thread per child
    assert stack.up is not None
    env = os.environ | {"DOCKER_HOST": stack.docker_host}
    report.plain_argv = plain = plain_argv(options)
    job = trivial_job(options.image, "bench-docker")
    async with HodeiClient(stack.up.address) as client:
        note("waiting for the docker worker to be READY…")
        worker = await wait_for_docker_worker(client, stack.up)
        note(f"docker worker {worker} is READY; warming up with {options.warmup} of each…")
        deadline = time.monotonic() + options.timeout_s
        warm = await interleaved(client, job, plain, env, options.warmup, deadline)
        if any(s.state != "SUCCEEDED" for s in warm.hodei):
            raise BenchError(f"a warm-up job did not succeed: {[s.state for s in warm.hodei]}")
        note(f"measuring {options.jobs} Hodei jobs and {options.jobs} plain runs, interleaved…")
        recorder = EngineEvents(stack.docker_host) if options.breakdown else None
        events: list[dict[str, Any]] = []
        try:
            if recorder is not None:
                recorder.start()
            report.load_before = os.getloadavg()
            deadline = time.monotonic() + options.timeout_s
            samples = await interleaved(client, job, plain, env, options.jobs, deadline)
            report.load_after = os.getloadavg()
            if recorder is not None:
                await asyncio.sleep(EVENTS_SETTLE_S)  # the last container's removal
        finally:
            if recorder is not None:
                events = await asyncio.to_thread(recorder.stop)
        fill(report, samples)
        if options.breakdown:
            report.breakdown = await breakdown(options, client, samples, events, env)


def setup(options: Options, stack: Stack, report: Report) -> None:
    if options.docker_host:
        note(f"using the Docker engine at {options.docker_host}")
    else:
        note("starting a private dockerd…")
    stack.start_engine(options.docker_host)
    report.docker_host = stack.docker_host
    with contextlib.closing(docker.DockerClient(base_url=stack.docker_host, timeout=120)) as c:
        note("importing the test images…")
        build_test_images(c)
        try:
            c.images.get(options.image)
        except docker.errors.ImageNotFound:
            # Never a pull: it would reach out to a registry beyond loopback.
            raise BenchError(f"{options.image} is not in the engine (nothing is pulled)") from None
    report.docker_cli, report.docker_versions = docker_cli(stack.docker_host)
    stack.pg = EmbeddedPostgres(stack.work_dir / "pg", fsync=True)
    note("starting PostgreSQL (fsync on)…")
    url = asyncio.run(stack.pg.start())
    asyncio.run(create_docker_provider(url, stack.docker_host, options.image))
    stack.up = HodeiUp(stack.work_dir, url, 0, options.server_log_level)
    note(f"starting `hodei up --workers 0` on {stack.up.address} (a docker provider, 1 worker)…")
    # hodei up and its workers see the same engine (the provider names it too).
    os.environ["DOCKER_HOST"] = stack.docker_host
    stack.up.start()


def raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run(options: Options) -> int:
    """Set up, measure, tear down; returns the exit code."""
    report = Report(
        command=shlex.join([sys.executable, *sys.argv]),
        started_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        hodei_package=str(Path(hodei.__file__).parent),
        cpus=os.cpu_count() or 0,
        options={k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
    )
    work_dir = Path(tempfile.mkdtemp(prefix="hodei-bench-docker-"))
    work_dir.chmod(0o755)  # root runs this; PostgreSQL runs as `postgres`
    stack = Stack(work_dir)
    completed = False
    signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        setup(options, stack, report)
        asyncio.run(benchmark(options, stack, report))
        completed = True
    except (
        BenchError,
        HodeiError,
        DockerEngineError,
        docker.errors.DockerException,
        grpc.aio.AioRpcError,
        psycopg.Error,
        OSError,
    ) as error:
        note(f"benchmark failed: {error}")
        return 2
    except KeyboardInterrupt:
        note("interrupted")
        return 130
    finally:
        # The clean-up is bounded; a second Ctrl-C must not leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        failed = not completed or report.not_succeeded > 0
        try:
            stack.stop(keep_logs=work_dir if failed else None)
        finally:
            finish_work_dir(work_dir, options, failed)
    print(render(report))
    if options.json_dir is not None:
        note(f"\nwrote {write_json(report, options.json_dir)}")
    if report.not_succeeded:
        return 1
    return 3 if options.check_targets and not report.passed else 0


def finish_work_dir(work_dir: Path, options: Options, failed: bool) -> None:
    if options.keep:
        note(f"kept {work_dir}")
        return
    if failed:
        note(f"kept the logs in {save_logs(work_dir, options.logs_dir)}")
    shutil.rmtree(work_dir, ignore_errors=True)


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--jobs", type=int, default=40, help="measured jobs, and as many plain runs (default 40)")
    add("--warmup", type=int, default=5, help="warm-up jobs and plain runs (default 5)")
    add("--image", default="hodei-test/busybox:1", help="image of the jobs and plain runs")
    add(
        "--docker-host",
        default="",
        help="use this engine (unix://…) instead of starting a private dockerd",
    )
    add("--breakdown", action="store_true", help="also show where the time goes")
    add("--server-log-level", default="info", help="--log-level of hodei up (default info)")
    add("--timeout", type=float, default=600.0, help="deadline of each phase, in seconds")
    add("--check-targets", action="store_true", help="exit 3 when the target is missed")
    add(
        "--json-dir",
        type=Path,
        default=BENCH_DIR / "results",
        help="where the results JSON and the logs of a failed run go (default bench/results)",
    )
    add("--no-json", action="store_true", help="do not write results JSON")
    add("--keep", action="store_true", help="keep the temporary directory (logs, cluster)")
    args = parser.parse_args(argv)
    if args.jobs < 2 or args.warmup < 0:
        parser.error("--jobs must be at least 2, --warmup at least 0")
    if args.docker_host and not args.docker_host.startswith("unix://"):
        parser.error("--docker-host: a unix:// socket (the benchmark talks to loopback only)")
    binary = shutil.which("docker") or "docker"
    json_dir = args.json_dir.resolve()  # the run changes directory
    return Options(
        jobs=args.jobs,
        warmup=args.warmup,
        image=args.image,
        docker_host=args.docker_host,
        docker_binary=binary,
        breakdown=args.breakdown,
        server_log_level=args.server_log_level,
        timeout_s=args.timeout,
        check_targets=args.check_targets,
        json_dir=None if args.no_json else json_dir,
        logs_dir=json_dir,
        keep=args.keep,
    )


def main() -> None:
    sys.exit(run(parse_options()))


if __name__ == "__main__":
    main()
