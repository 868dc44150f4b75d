"""Dispatch latency and throughput of a real ``hodei up``, against the floors beneath them.

Everything is measured in one run on one machine, because figures from different runs differ by
15 % (throughput) to 50 % (millisecond latencies) here:

1. Floors: one autocommit statement that INSERTs a row and calls ``pg_notify``, until a second,
   LISTENing connection (psycopg async) receives the notification, back-to-back and with a
   spacing between requests (idle CPUs wake up slowly, so spacing costs latency by itself); and,
   spaced the same, a gRPC round trip to the server (Health.Check, no database) and the spawn of
   ``true`` through the worker's own ``ProcessRuntime``: the parts a dispatch is made of.
2. Latency: trivial jobs (``true``, SHELL) submitted ONE AT A TIME through gRPC ``QueueJob``, the
   next one only after the previous succeeded (plus the same spacing). submit -> RUNNING and
   submit -> SUCCEEDED come from the server's ``audit_logs`` timestamps (one clock, no skew) and
   are split into hops; the client-observed figures (``QueueJob`` then ``WatchJob``) are shown
   for reference. The target is p50 submit -> RUNNING within 5x the spaced floor's p50.
3. Throughput: N trivial jobs submitted as fast as several concurrent gRPC clients go; jobs/s
   from the first ``JobCreated`` to the last result, the share that did not succeed, and the CPU
   each process group spent. The target is >= 300 jobs/s with 4 workers on 2 cores.

For both job phases it lists the statements PostgreSQL spent most time on (pg_stat_statements,
named after ``queries.sql``); ``--profile DIR`` adds py-spy profiles of the server and a worker.

It starts its own PostgreSQL (``EmbeddedPostgres``, fsync on) in a temporary directory and the
real CLI ``hodei up --workers W`` against it (the local provider starts W ``hodei worker``
processes), talks only to 127.0.0.1, bounds every loop by count and deadline, and stops all it
started, also on failure, Ctrl-C or SIGTERM.

Exit codes: 0 every job succeeded; 1 some job did not (or a phase ran out of time); 2 the
benchmark could not run; 3 a target was missed (only with ``--check-targets``); 130 interrupted.

Run::

    .venv/bin/python bench/dispatch.py --jobs 2000 --workers 4
    .venv/bin/python bench/dispatch.py --profile bench/results/profile
"""

from __future__ import annotations

import os

# Before grpc is imported: this process forks (pg_ctl run as another user), and gRPC's fork
# handlers, on while other threads use gRPC, crashed the child (hodei itself sets this too).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import psycopg
from benchlib import (
    FLOOR_DATABASE,
    BenchError,
    CpuMeter,
    HodeiUp,
    Profiler,
    note,
    save_logs,
    start_postgres,
)
from dispatch_figures import (
    SUBMIT_TO_RUNNING,
    StatementMeter,
    Timeline,
    hop_summaries,
    summarize,
)
from dispatch_report import Report, render, write_json
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg.rows import DictRow, dict_row

from hodei.client import HodeiClient
from hodei.domain.errors import HodeiError
from hodei.domain.jobs import CommandType
from hodei.domain.logs import LogStream
from hodei.store.embedded import EmbeddedPostgres
from hodei.v1 import jobs_pb2, scheduler_pb2
from hodei.worker.runtime import JobLaunch, ProcessRuntime, use_pidfd_child_watcher

FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED", "TIMEOUT")
FINAL_PROTO_STATES = frozenset(
    {jobs_pb2.SUCCEEDED, jobs_pb2.FAILED, jobs_pb2.CANCELLED, jobs_pb2.TIMEOUT}
)
RPC_TIMEOUT_S = 30.0
FLOOR_CHANNEL = "bench_floor"

FLOOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_floor (
    seq bigint PRIMARY KEY,
    payload text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""
FLOOR_SEND = """
WITH row AS (INSERT INTO bench_floor (seq, payload) VALUES (%s, %s) RETURNING seq)
SELECT pg_notify('bench_floor', seq::text) FROM row
"""
# The benchmark's own statements on the hodei database start with /* bench */, so that the
# pg_stat_statements figures leave them out.

# One row per job of a phase: the server-side instants of its lifecycle (audit_logs, written
# with clock_timestamp() by the server) and the worker-clock instants stored on the job.
TIMELINE = """/* bench */
SELECT j.id::text AS id, j.state, j.started_at, j.finished_at,
       min(a.occurred_at) FILTER (WHERE a.event_type = 'JobCreated') AS created,
       min(a.occurred_at) FILTER (WHERE a.event_type = 'JobAssigned') AS assigned,
       min(a.occurred_at) FILTER (WHERE a.event_type = 'JobStatusChanged'
                                    AND a.payload->>'to' = 'RUNNING') AS running,
       min(a.occurred_at) FILTER (WHERE a.event_type = 'JobStatusChanged'
                                    AND a.payload->>'to' = ANY (%(final)s)) AS ended
FROM jobs j
JOIN audit_logs a ON a.correlation_id = j.id::text
WHERE j.name = %(name)s
GROUP BY j.id
"""
JOBS_TABLE_STATS = """/* bench */
SELECT n_live_tup, n_dead_tup, last_autovacuum, last_autoanalyze, autoanalyze_count
FROM pg_stat_user_tables WHERE relname = 'jobs'
"""
PHASE_PROGRESS = """/* bench */
SELECT count(*) AS total,
       count(*) FILTER (WHERE state = ANY (%(final)s)) AS ended,
       count(*) FILTER (WHERE state = 'SUCCEEDED') AS succeeded
FROM jobs WHERE name = %(name)s
"""


# --- the measurements -----------------------------------------------------------------------


async def measure_floor(url: str, count: int, spacing_s: float, first_seq: int) -> list[float]:
    """INSERT + pg_notify on one connection -> received by a LISTENing one, in ms."""
    loop = asyncio.get_running_loop()
    waiting: dict[str, asyncio.Future[float]] = {}
    samples: list[float] = []
    async with (
        await psycopg.AsyncConnection.connect(url, autocommit=True) as listener,
        await psycopg.AsyncConnection.connect(url, autocommit=True) as sender,
    ):
        await sender.execute(FLOOR_SCHEMA)
        await listener.execute(f"LISTEN {FLOOR_CHANNEL}")

        async def receive() -> None:
            async for notification in listener.notifies():
                future = waiting.pop(notification.payload, None)
                if future is not None and not future.done():
                    future.set_result(time.perf_counter())

        receiver = asyncio.create_task(receive())
        try:
            for seq in range(first_seq, first_seq + count):
                future = loop.create_future()
                waiting[str(seq)] = future
                sent = time.perf_counter()
                await sender.execute(FLOOR_SEND, (seq, "x"))
                received = await asyncio.wait_for(future, timeout=5)
                samples.append((received - sent) * 1000)
                if spacing_s:
                    await asyncio.sleep(spacing_s)
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver
    return samples


async def measure_grpc_floor(address: str, count: int, spacing_s: float) -> list[float]:
    """Health.Check round trips to the server (gRPC over loopback, no database), in ms."""
    samples = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest()
        for _ in range(count):
            sent = time.perf_counter()
            await stub.Check(request, timeout=RPC_TIMEOUT_S)
            samples.append((time.perf_counter() - sent) * 1000)
            await asyncio.sleep(spacing_s)
    return samples


async def _discard_line(_stream: LogStream, _block: bytes) -> None:
    return None


async def measure_spawn_floor(
    count: int, spacing_s: float, work_dir: Path
) -> tuple[list[float], list[float]]:
    """``true`` through the worker's own ProcessRuntime, in this process: (started, exited) ms."""
    # Watch children the way the worker does.
    use_pidfd_child_watcher()
    runtime = ProcessRuntime()
    started_ms, exited_ms = [], []
    for attempt in range(1, count + 1):
        launch = JobLaunch(
            job_id="bench-spawn",
            attempt=attempt,
            command_type=CommandType.SHELL,
            script="true",
            image="",
            env={},
            timeout_ms=0,
            workdir=work_dir,
        )
        sent = time.perf_counter()
        execution = await runtime.start(launch, _discard_line)
        started_ms.append((time.perf_counter() - sent) * 1000)
        await execution.wait()
        exited_ms.append((time.perf_counter() - sent) * 1000)
        await asyncio.sleep(spacing_s)
    return started_ms, exited_ms


def trivial_job(name: str, cpu_cores: float, memory_mb: int) -> jobs_pb2.JobDefinition:
    return jobs_pb2.JobDefinition(
        name=name,
        command_type=jobs_pb2.SHELL,
        script="true",
        resources=jobs_pb2.ResourceRequirements(cpu_cores=cpu_cores, memory_mb=memory_mb),
    )


@dataclass(frozen=True)
class ClientSample:
    """What the client saw of one job, in ms after it called QueueJob."""

    job_id: str
    queue_rpc: float
    running_seen: float | None
    ended_seen: float
    state: str


async def run_one(client: HodeiClient, job: jobs_pb2.JobDefinition) -> ClientSample:
    """QueueJob, then WatchJob until the job ends."""
    sent = time.perf_counter()
    response = await client.jobs.QueueJob(jobs_pb2.QueueJobRequest(job=job), timeout=RPC_TIMEOUT_S)
    acked = time.perf_counter()
    running_seen: float | None = None
    call = client.jobs.WatchJob(
        jobs_pb2.WatchJobRequest(job_id=response.job_id), timeout=RPC_TIMEOUT_S
    )
    try:
        async for event in call:
            now = time.perf_counter()
            if event.state == jobs_pb2.RUNNING and running_seen is None:
                running_seen = (now - sent) * 1000
            if event.state in FINAL_PROTO_STATES:
                return ClientSample(
                    job_id=response.job_id,
                    queue_rpc=(acked - sent) * 1000,
                    running_seen=running_seen,
                    ended_seen=(now - sent) * 1000,
                    state=jobs_pb2.JobState.Name(event.state),
                )
    except grpc.aio.AioRpcError as error:
        raise BenchError(
            f"job {response.job_id} did not end: WatchJob failed with {error.code().name} "
            f"({error.details()}); {await describe_job(client, response.job_id)}"
        ) from None
    finally:
        call.cancel()
    raise BenchError(
        f"WatchJob of {response.job_id} ended before the job did; "
        f"{await describe_job(client, response.job_id)}"
    )


async def describe_job(client: HodeiClient, job_id: str) -> str:
    """Where a job stands, for an error message."""
    try:
        job = await client.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), timeout=5)
    except grpc.aio.AioRpcError as error:
        return f"GetJob failed too: {error.code().name}"
    state = jobs_pb2.JobState.Name(job.state)
    return f"the job is {state}, attempt {job.attempt}, on worker {job.worker_id or '-'}"


async def run_sequential(
    client: HodeiClient, job: jobs_pb2.JobDefinition, count: int, spacing_s: float, deadline: float
) -> list[ClientSample]:
    samples = []
    for _ in range(count):
        if time.monotonic() > deadline:
            raise BenchError(f"the sequential phase {job.name} ran out of time")
        samples.append(await run_one(client, job))
        await asyncio.sleep(spacing_s)
    return samples


@dataclass
class SubmitResult:
    accepted: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    rpc_ms: list[float] = field(default_factory=list)


async def submit_concurrently(
    address: str, job: jobs_pb2.JobDefinition, count: int, submitters: int, deadline: float
) -> SubmitResult:
    """QueueJob ``count`` times from ``submitters`` clients, each on its own channel."""
    result = SubmitResult()
    tickets = iter(range(count))
    request = jobs_pb2.QueueJobRequest(job=job)

    async def submitter() -> None:
        async with HodeiClient(address) as client:
            for _ in tickets:
                if time.monotonic() > deadline:
                    result.errors["deadline"] += 1
                    continue
                sent = time.perf_counter()
                try:
                    await client.jobs.QueueJob(request, timeout=RPC_TIMEOUT_S)
                except grpc.aio.AioRpcError as error:
                    result.errors[error.code().name] += 1
                    continue
                result.accepted += 1
                result.rpc_ms.append((time.perf_counter() - sent) * 1000)

    await asyncio.gather(*(submitter() for _ in range(submitters)))
    return result


async def wait_until_ended(
    db: psycopg.AsyncConnection[DictRow], name: str, expected: int, deadline: float
) -> dict[str, int]:
    """Poll until ``expected`` jobs named ``name`` are in a final state, or the deadline."""
    reported = time.monotonic()
    while True:
        cursor = await db.execute(PHASE_PROGRESS, {"name": name, "final": list(FINAL_STATES)})
        row = await cursor.fetchone()
        assert row is not None
        progress = {key: int(value) for key, value in row.items()}
        if progress["ended"] >= expected or time.monotonic() > deadline:
            return progress
        if time.monotonic() - reported > 5:
            reported = time.monotonic()
            note(f"  {name}: {progress['ended']}/{expected} ended")
        await asyncio.sleep(0.05)


async def timelines(db: psycopg.AsyncConnection[DictRow], name: str) -> list[Timeline]:
    cursor = await db.execute(TIMELINE, {"name": name, "final": list(FINAL_STATES)})
    return [
        Timeline(
            job_id=row["id"],
            state=row["state"],
            created=row["created"],
            assigned=row["assigned"],
            started=row["started_at"],
            running=row["running"],
            finished=row["finished_at"],
            ended=row["ended"],
        )
        for row in await cursor.fetchall()
    ]


async def wait_for_workers(client: HodeiClient, up: HodeiUp, count: int, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    ready = 0
    while time.monotonic() < deadline:
        if not up.alive():
            raise BenchError(f"hodei up exited while starting:\n{up.log_tail()}")
        with contextlib.suppress(grpc.aio.AioRpcError):
            response = await client.scheduler.ListWorkers(
                scheduler_pb2.ListWorkersRequest(), timeout=2
            )
            ready = sum(1 for w in response.workers if w.state == scheduler_pb2.WORKER_READY)
            if ready >= count:
                return
        await asyncio.sleep(0.2)
    raise BenchError(
        f"only {ready} of {count} workers READY after {within_s:g} s:\n{up.log_tail()}"
    )


# --- the run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    jobs: int
    workers: int
    submitters: int
    latency_jobs: int
    floor_round_trips: int
    spacing_ms: float
    warmup_jobs: int
    cpu_cores: float
    memory_mb: int
    server_log_level: str
    timeout_s: float
    profile: Path | None
    statement_stats: bool
    check_targets: bool
    json_dir: Path | None
    logs_dir: Path
    keep: bool


FLOOR_PG = "PostgreSQL INSERT+pg_notify -> LISTEN, back-to-back"
FLOOR_PG_SPACED = "PostgreSQL INSERT+pg_notify -> LISTEN, spaced"
FLOOR_GRPC = "gRPC Health.Check round trip, spaced"
FLOOR_SPAWN = "spawn `true` (ProcessRuntime.start), spaced"
FLOOR_SPAWN_EXIT = "spawn `true` until exit and pipes closed, spaced"


async def measure_floors(
    options: Options, pg: EmbeddedPostgres, up: HodeiUp, work_dir: Path, report: Report
) -> None:
    n = options.floor_round_trips
    spacing = options.spacing_ms / 1000
    note(f"floors: {n} round trips each (PostgreSQL twice, gRPC, process spawn)…")
    floor_url = pg.url_for(FLOOR_DATABASE)
    report.floors[FLOOR_PG] = summarize(await measure_floor(floor_url, n, 0.0, 0))
    report.floors[FLOOR_PG_SPACED] = summarize(await measure_floor(floor_url, n, spacing, n))
    report.floors[FLOOR_GRPC] = summarize(await measure_grpc_floor(up.address, n, spacing))
    started, exited = await measure_spawn_floor(n, spacing, work_dir)
    report.floors[FLOOR_SPAWN] = summarize(started)
    report.floors[FLOOR_SPAWN_EXIT] = summarize(exited)
    # The least submit -> RUNNING could cost with these parts: insert, claim and the RUNNING
    # write each a statement, one gRPC hop there and one back, one spawn.
    report.floors_sum_ms = (
        3 * report.floors[FLOOR_PG_SPACED].p50
        + report.floors[FLOOR_GRPC].p50
        + report.floors[FLOOR_SPAWN].p50
    )


async def benchmark(
    options: Options, pg: EmbeddedPostgres, up: HodeiUp, work_dir: Path, report: Report
) -> None:
    deadline = time.monotonic() + options.timeout_s
    async with (
        HodeiClient(up.address) as client,
        await psycopg.AsyncConnection.connect(pg.url, autocommit=True, row_factory=dict_row) as db,
    ):
        note(f"waiting for {options.workers} READY workers…")
        await wait_for_workers(client, up, options.workers, within_s=60)

        note(f"warming up with {2 * options.warmup_jobs} jobs…")
        warmup = trivial_job("bench-warmup", options.cpu_cores, options.memory_mb)
        await run_sequential(client, warmup, options.warmup_jobs, 0.0, deadline)
        submitted = await submit_concurrently(up.address, warmup, options.warmup_jobs, 4, deadline)
        await wait_until_ended(db, "bench-warmup", 2 * options.warmup_jobs, deadline)
        if submitted.errors:
            raise BenchError(f"warm-up submissions failed: {dict(submitted.errors)}")

        await measure_floors(options, pg, up, work_dir, report)
        statements = StatementMeter(db, enabled=options.statement_stats)
        await measure_latency(options, client, db, statements, report)
        await measure_throughput(options, up, pg, db, statements, report)


async def measure_latency(
    options: Options,
    client: HodeiClient,
    db: psycopg.AsyncConnection[DictRow],
    statements: StatementMeter,
    report: Report,
) -> None:
    note(f"latency: {options.latency_jobs} jobs one at a time…")
    job = trivial_job("bench-latency", options.cpu_cores, options.memory_mb)
    deadline = time.monotonic() + options.timeout_s
    await statements.reset()
    samples = await run_sequential(
        client, job, options.latency_jobs, options.spacing_ms / 1000, deadline
    )
    report.latency_statements = await statements.read()
    report.latency_not_succeeded = sum(1 for s in samples if s.state != "SUCCEEDED")
    report.latency_client = {
        "QueueJob RPC": summarize([s.queue_rpc for s in samples]),
        "submit -> RUNNING seen (WatchJob)": summarize(
            [s.running_seen for s in samples if s.running_seen is not None]
        ),
        "submit -> SUCCEEDED seen (WatchJob)": summarize([s.ended_seen for s in samples]),
    }
    report.latency_hops = hop_summaries(await timelines(db, "bench-latency"))
    to_running = report.latency_hops[SUBMIT_TO_RUNNING].p50
    report.latency_ratio_spaced = to_running / report.floors[FLOOR_PG_SPACED].p50
    report.latency_ratio_back_to_back = to_running / report.floors[FLOOR_PG].p50


async def measure_throughput(
    options: Options,
    up: HodeiUp,
    pg: EmbeddedPostgres,
    db: psycopg.AsyncConnection[DictRow],
    statements: StatementMeter,
    report: Report,
) -> None:
    name = "bench-throughput"
    note(f"throughput: {options.jobs} jobs from {options.submitters} concurrent clients…")
    meter = CpuMeter(up.pid, up.worker_pids(), pg.pid or 0)
    profiler = None
    if options.profile is not None:
        workers = up.worker_pids()
        targets = {"server": up.pid} | ({"worker": workers[0]} if workers else {})
        profiler = Profiler(options.profile, targets)
    job = trivial_job(name, options.cpu_cores, options.memory_mb)
    deadline = time.monotonic() + options.timeout_s
    await statements.reset()
    with profiler.recording() if profiler else contextlib.nullcontext():
        meter.begin()
        submitted = await submit_concurrently(
            up.address, job, options.jobs, options.submitters, deadline
        )
        progress = await wait_until_ended(db, name, submitted.accepted, deadline)
        report.cpu_seconds = meter.spent()
    report.throughput_statements = await statements.read()
    if profiler is not None:
        report.profile_top = profiler.top_frames()
    cursor = await db.execute(JOBS_TABLE_STATS)
    report.jobs_table_stats = {k: str(v) for k, v in (await cursor.fetchone() or {}).items()}

    jobs = await timelines(db, name)
    created = sorted(t.created for t in jobs if t.created is not None)
    assigned = sorted(t.assigned for t in jobs if t.assigned is not None)
    ended = [t.ended for t in jobs if t.ended is not None]
    if not (created and assigned and ended):
        raise BenchError(f"no job of {name} ended: {progress}")
    window = (max(ended) - created[0]).total_seconds()
    intake = (created[-1] - created[0]).total_seconds()
    during = sum(1 for a in assigned if a <= created[-1])
    report.throughput_window_s = window
    report.throughput_jobs_per_s = len(ended) / window
    report.throughput_succeeded_per_s = progress["succeeded"] / window
    report.throughput_intake_per_s = len(created) / max(intake, 1e-9)
    report.throughput_assigned_during_intake_per_s = during / max(intake, 1e-9)
    drain = (assigned[-1] - created[-1]).total_seconds()
    report.throughput_assigned_after_intake_per_s = (len(assigned) - during) / max(drain, 1e-9)
    report.throughput_submit_rpc = summarize(submitted.rpc_ms)
    report.throughput_hops = hop_summaries(jobs)
    report.throughput_submitted = options.jobs
    report.throughput_succeeded = progress["succeeded"]
    report.throughput_not_succeeded_fraction = 1 - progress["succeeded"] / options.jobs
    report.throughput_errors = dict(submitted.errors)
    report.throughput_timed_out = progress["ended"] < submitted.accepted
    report.cpu_seconds["elapsed x cores"] = window * (os.cpu_count() or 1)


# --- entry point ----------------------------------------------------------------------------


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add = parser.add_argument
    add("--jobs", type=int, default=2000, help="jobs in the throughput phase (default 2000)")
    add("--workers", type=int, default=4, help="local workers hodei up keeps (default 4)")
    add("--submitters", type=int, default=8, help="concurrent gRPC submitters (default 8)")
    add("--latency-jobs", type=int, default=200, help="jobs run one at a time (default 200)")
    add("--floor-round-trips", type=int, default=500, help="per floor mode (default 500)")
    add("--spacing-ms", type=float, default=20.0, help="pause between sequential requests")
    add("--warmup-jobs", type=int, default=20, help="warm-up jobs, run sequentially, then again")
    add("--cpu-cores", type=float, default=0.1, help="cpu_cores of every job (default 0.1)")
    add("--memory-mb", type=int, default=16, help="memory_mb of every job (default 16)")
    add("--server-log-level", default="info", help="--log-level of hodei up (default info)")
    add("--timeout", type=float, default=600.0, help="deadline of each phase, in seconds")
    add("--profile", type=Path, help="py-spy the server and a worker during the throughput phase")
    add(
        "--no-statement-stats",
        action="store_true",
        help="do not load pg_stat_statements (per-statement execution times)",
    )
    add("--check-targets", action="store_true", help="exit 3 when a target is missed")
    add(
        "--json-dir",
        type=Path,
        default=Path(__file__).parent / "results",
        help="where the results JSON and the logs of a failed run go (default bench/results)",
    )
    add("--no-json", action="store_true", help="do not write results JSON")
    add("--keep", action="store_true", help="keep the temporary directory (logs, cluster)")
    args = parser.parse_args(argv)
    if min(args.jobs, args.workers, args.submitters, args.latency_jobs) < 1:
        parser.error("--jobs, --workers, --submitters and --latency-jobs must be at least 1")
    if args.floor_round_trips < 2:
        parser.error("--floor-round-trips must be at least 2")
    return Options(
        jobs=args.jobs,
        workers=args.workers,
        submitters=args.submitters,
        latency_jobs=args.latency_jobs,
        floor_round_trips=args.floor_round_trips,
        spacing_ms=args.spacing_ms,
        warmup_jobs=max(args.warmup_jobs, 1),
        cpu_cores=args.cpu_cores,
        memory_mb=args.memory_mb,
        server_log_level=args.server_log_level,
        timeout_s=args.timeout,
        profile=args.profile,
        statement_stats=not args.no_statement_stats,
        check_targets=args.check_targets,
        json_dir=None if args.no_json else args.json_dir,
        logs_dir=args.json_dir,
        keep=args.keep,
    )


def raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run(options: Options) -> int:
    """Set up, measure, tear down; returns the exit code (see README.md)."""
    work_dir = Path(tempfile.mkdtemp(prefix="hodei-bench-"))
    # Root runs this; PostgreSQL runs as `postgres`, which must enter the directory.
    work_dir.chmod(0o755)
    pg = EmbeddedPostgres(work_dir / "pg", fsync=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()}
    report = Report(options=settings)
    up: HodeiUp | None = None
    completed = False
    # SIGTERM takes the same way out as Ctrl-C, through the clean-up below.
    signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        note(f"starting PostgreSQL (fsync on) in {work_dir}…")
        url = asyncio.run(start_postgres(pg, options.statement_stats))
        up = HodeiUp(work_dir, url, options.workers, options.server_log_level)
        note(f"starting `hodei up --workers {options.workers}` on {up.address}…")
        up.start()
        asyncio.run(benchmark(options, pg, up, work_dir, report))
        completed = True
    except (BenchError, HodeiError, grpc.aio.AioRpcError, psycopg.Error) as error:
        note(f"benchmark failed: {error}")
        return 2
    except KeyboardInterrupt:
        note("interrupted")
        return 130
    finally:
        # The clean-up is bounded; a second Ctrl-C must not leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if up is not None:
                note("stopping hodei up…")
                up.stop()
        finally:
            note("stopping PostgreSQL…")
            asyncio.run(pg.stop())
            if options.keep:
                note(f"kept {work_dir}")
            else:
                if not completed or report.failed:
                    note(f"kept the logs in {save_logs(work_dir, options.logs_dir)}")
                shutil.rmtree(work_dir, ignore_errors=True)
    print(render(report))
    if options.json_dir is not None:
        note(f"\nwrote {write_json(report, options.json_dir)}")
    if report.failed:
        return 1
    return 3 if options.check_targets and not report.meets_targets else 0


def main() -> None:
    sys.exit(run(parse_options()))


if __name__ == "__main__":
    main()
