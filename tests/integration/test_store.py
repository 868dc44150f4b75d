"""The SQL of the store against a real PostgreSQL: claim order, capacity, fencing, idempotency,
audit trail and pagination."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hodei.domain.errors import AuthenticationError, StaleAttemptError
from hodei.domain.jobs import JobSpec, parse_job_spec
from hodei.domain.logs import LogLevel, LogRecord, LogStream, epoch_ns
from hodei.domain.retries import AttemptOutcome
from hodei.domain.states import JobState
from hodei.domain.workers import WorkerInfo
from hodei.store.database import Database
from hodei.store.jobs import JobFilter, JobRepository, PageCursor
from hodei.store.logs import LogQuery, LogRepository
from hodei.store.workers import WorkerRepository

from .harness import ready_worker

pytestmark = pytest.mark.integration
LEASE = timedelta(seconds=30)


def spec(name: str = "job", **fields: Any) -> JobSpec:
    return parse_job_spec({"name": name, "script": "true"} | fields)


async def test_claims_follow_priority_then_age(db: Database) -> None:
    jobs = JobRepository(db)
    low, _ = await jobs.insert(spec("low", preferences={"priority": "LOW"}), "t")
    normal, _ = await jobs.insert(spec("normal"), "t")
    high1, _ = await jobs.insert(spec("high1", preferences={"priority": "HIGH"}), "t")
    high2, _ = await jobs.insert(spec("high2", preferences={"priority": "HIGH"}), "t")
    worker = await ready_worker(db, cpu=100)
    claimed = [await jobs.claim(worker, LEASE) for _ in range(5)]
    assert [c.job.id if c else None for c in claimed] == [high1, high2, normal, low, None]
    first = claimed[0]
    assert first is not None
    assert first.job.state is JobState.ASSIGNED
    assert first.job.attempt == 1
    assert first.first_sequence == 1


async def test_a_worker_gets_only_what_fits_its_free_capacity(db: Database) -> None:
    jobs = JobRepository(db)
    worker = await ready_worker(db, cpu=2, memory=1024)
    big, _ = await jobs.insert(spec("big", resources={"memory_mb": 2048}), "t")
    ids = [(await jobs.insert(spec(f"j{i}", resources={"cpu_cores": 1}), "t"))[0] for i in range(3)]
    first, second = await jobs.claim(worker, LEASE), await jobs.claim(worker, LEASE)
    assert first is not None
    assert second is not None
    assert [first.job.id, second.job.id] == ids[:2]  # two 1-CPU jobs run at once
    assert await jobs.claim(worker, LEASE) is None  # the worker is full; `big` never fits
    await jobs.finish(
        worker_id=worker,
        job_id=first.job.id,
        attempt=1,
        outcome=AttemptOutcome.SUCCEEDED,
        exit_code=0,
        error_message="",
        finished_at=datetime.now(UTC),
    )
    third = await jobs.claim(worker, LEASE)
    assert third is not None
    assert third.job.id == ids[2]
    assert (await jobs.get(big)).state is JobState.PENDING


async def test_placement_constraints(db: Database) -> None:
    jobs = JobRepository(db)
    worker = await ready_worker(db, cpu=8, memory=8192, region="local")
    await jobs.insert(spec("arm", resources={"arch": "arm64"}), "t")
    await jobs.insert(spec("gpu", resources={"gpu_required": True}), "t")
    await jobs.insert(spec("eu", preferences={"region": "eu"}), "t")
    await jobs.insert(spec("other", preferences={"provider": "docker"}), "t")
    fits, _ = await jobs.insert(spec("fits", preferences={"provider": "local"}), "t")
    claimed = await jobs.claim(worker, LEASE)
    assert claimed is not None
    assert claimed.job.id == fits
    assert await jobs.claim(worker, LEASE) is None


async def test_concurrent_claims_never_share_a_job(db: Database) -> None:
    jobs = JobRepository(db)
    workers = [await ready_worker(db, cpu=100, memory=100_000) for _ in range(4)]
    for i in range(40):
        await jobs.insert(spec(f"j{i}", resources={"cpu_cores": 0.5}), "t")

    async def drain(worker: str) -> list[str]:
        got = []
        while (claimed := await jobs.claim(worker, LEASE)) is not None:
            got.append(claimed.job.id)
        return got

    results = await asyncio.gather(*(drain(w) for w in workers))
    every = [job for result in results for job in result]
    assert len(every) == 40
    assert len(set(every)) == 40


async def test_a_stale_attempt_is_refused_and_a_repeat_is_harmless(db: Database) -> None:
    jobs = JobRepository(db)
    worker, intruder = await ready_worker(db), await ready_worker(db)
    job_id, _ = await jobs.insert(spec(), "t")
    assert await jobs.claim(worker, LEASE) is not None
    now = datetime.now(UTC)
    with pytest.raises(StaleAttemptError):
        await jobs.mark_running(
            worker_id=worker, job_id=job_id, attempt=2, started_at=now, pid=1, lease_ttl=LEASE
        )
    with pytest.raises(StaleAttemptError):
        await jobs.mark_running(
            worker_id=intruder, job_id=job_id, attempt=1, started_at=now, pid=1, lease_ttl=LEASE
        )
    for _ in range(2):
        await jobs.mark_running(
            worker_id=worker, job_id=job_id, attempt=1, started_at=now, pid=1, lease_ttl=LEASE
        )
    result = {
        "worker_id": worker,
        "job_id": job_id,
        "attempt": 1,
        "outcome": AttemptOutcome.FAILED,
        "exit_code": 3,
        "error_message": "exited with code 3",
        "finished_at": now,
    }
    await jobs.finish(**result)
    await jobs.finish(**result)  # a duplicate after a reconnect changes nothing
    with pytest.raises(StaleAttemptError):
        await jobs.finish(**(result | {"worker_id": intruder}))
    job = await jobs.get(job_id)
    assert (job.state, job.exit_code, job.error_message) == (
        JobState.FAILED,
        3,
        "exited with code 3",
    )
    events = [(e.event_type, e.payload.get("to")) for e in await jobs.events(job_id)]
    assert events == [
        ("JobCreated", None),
        ("JobAssigned", None),
        ("JobStatusChanged", "RUNNING"),
        ("JobStatusChanged", "FAILED"),
    ]


async def test_cancelling_a_pending_job_is_audited(db: Database) -> None:
    jobs = JobRepository(db)
    job_id, _ = await jobs.insert(spec(), "alice")
    assert await jobs.end_pending(
        job_id, JobState.CANCELLED, actor="alice", request_event="JobCancelled"
    )
    assert not await jobs.end_pending(job_id, JobState.CANCELLED, actor="alice")
    assert (await jobs.get(job_id)).state is JobState.CANCELLED
    events = [(e.event_type, e.actor, e.payload.get("to")) for e in await jobs.events(job_id)]
    assert events == [
        ("JobCreated", "alice", None),
        ("JobCancelled", "alice", None),
        ("JobStatusChanged", "alice", "CANCELLED"),
    ]


async def test_keyset_pages_cover_every_job_once(db: Database) -> None:
    jobs = JobRepository(db)
    made = [(await jobs.insert(spec(f"batch {i}"), "t"))[0] for i in range(7)]
    seen: list[str] = []
    cursor: PageCursor | None = None
    while page := await jobs.page(JobFilter(), 3, cursor):
        seen += [job.id for job in page]
        cursor = PageCursor(page[-1].created_at, page[-1].id)
    assert seen == list(reversed(made))
    named = await jobs.page(JobFilter(name="BATCH 3"), 10)
    assert [job.id for job in named] == [made[3]]
    assert await jobs.page(JobFilter(states=(JobState.RUNNING,)), 10) == []


def line(sequence: int, text: str, level: LogLevel = LogLevel.INFO) -> LogRecord:
    return LogRecord(
        sequence, epoch_ns(datetime.now(UTC)), LogStream.STDOUT, level, text, attempt=1
    )


async def test_log_appends_are_idempotent_and_fenced(db: Database) -> None:
    jobs, logs = JobRepository(db), LogRepository(db)
    worker, intruder = await ready_worker(db), await ready_worker(db)
    job_id, _ = await jobs.insert(spec(), "t")
    await jobs.claim(worker, LEASE)
    batch = [line(1, "Processing"), line(2, "WARN careful", LogLevel.WARN), line(3, "Done!")]
    assert await logs.append(worker_id=worker, job_id=job_id, attempt=1, lines=batch) == 3
    assert await logs.append(worker_id=worker, job_id=job_id, attempt=1, lines=batch) == 0
    with pytest.raises(StaleAttemptError):
        await logs.append(worker_id=intruder, job_id=job_id, attempt=1, lines=[line(4, "x")])
    read = await logs.read(LogQuery(job_id))
    assert [(r.sequence, r.line) for r in read] == [
        (1, "Processing"),
        (2, "WARN careful"),
        (3, "Done!"),
    ]
    assert [r.sequence for r in await logs.read(LogQuery(job_id, after_sequence=1, limit=1))] == [2]
    warn = await logs.read(LogQuery(job_id, levels=(LogLevel.WARN,)))
    assert [r.line for r in warn] == ["WARN careful"]
    assert [r.line for r in await logs.read(LogQuery(job_id, contains="done"))] == ["Done!"]


async def test_one_time_tokens_are_single_use_and_expire(db: Database) -> None:
    workers = WorkerRepository(db)
    info = WorkerInfo(hostname="h", arch="x86_64", runtime="process", cpu_cores=1, memory_mb=1)
    otp = await workers.create_bootstrap_token(
        "local", timedelta(minutes=5), "5" * 8 + "-5555-4555-8555-" + "5" * 12
    )
    registration = await workers.register(otp, info)
    assert registration.worker_id == "55555555-5555-4555-8555-555555555555"
    with pytest.raises(AuthenticationError, match="already used"):
        await workers.register(otp, info)
    expired = await workers.create_bootstrap_token("local", timedelta(seconds=-1))
    with pytest.raises(AuthenticationError, match="expired"):
        await workers.register(expired, info)
    with pytest.raises(AuthenticationError, match="not valid"):
        await workers.register("made-up", info)
    session = await workers.authenticate(registration.session_token)
    assert session.worker_id == registration.worker_id
    with pytest.raises(AuthenticationError):
        await workers.authenticate(registration.worker_id + ".wrong")


async def test_a_batch_claim_takes_the_prefix_that_fits_together(db: Database) -> None:
    jobs = JobRepository(db)
    worker = await ready_worker(db, cpu=3, memory=100_000)
    ids = [
        (await jobs.insert(spec(f"j{i}", resources={"cpu_cores": cpu}), "t"))[0]
        for i, cpu in enumerate([1, 1, 2, 1])
    ]
    claimed = await jobs.claim_many(worker, LEASE, limit=8)
    # 1 + 1 fit, the third (2 CPUs) would pass 3; the fourth waits behind it in queue order.
    assert [c.job.id for c in claimed] == ids[:2]
    assert [c.job.attempt for c in claimed] == [1, 1]
    claimed = await jobs.claim_many(worker, LEASE, limit=8)
    assert [c.job.id for c in claimed] == [ids[3]]
    events = [e.event_type for e in await jobs.events(ids[0])]
    assert events == ["JobCreated", "JobAssigned"]
