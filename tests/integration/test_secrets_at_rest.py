"""Secret variables are sealed in PostgreSQL, shown to nobody, and opened only for the worker."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio

from hodei.domain.errors import FailedPreconditionError
from hodei.domain.jobs import JobSpec, parse_job_spec
from hodei.domain.states import JobState
from hodei.store.database import Database
from hodei.store.jobs import JobFilter, JobRepository
from hodei.store.secrets import SecretBox
from hodei.v1 import jobs_pb2

from .harness import Running, ready_worker, running_hodei, shell

pytestmark = pytest.mark.integration
LEASE = timedelta(seconds=30)
SECRET = "s3cr3t-value"


@pytest_asyncio.fixture
async def hodei(database_url: str) -> AsyncIterator[Running]:
    async with running_hodei(database_url, secret_box=SecretBox(os.urandom(32))) as running:
        yield running


async def fetch_text(database_url: str, sql: str) -> str:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(sql)
        return str(await cursor.fetchall())


async def test_a_secret_is_sealed_at_rest_masked_everywhere_and_reaches_the_job(
    hodei: Running,
) -> None:
    job_id = await hodei.client.queue(
        shell(
            'echo "token=$API_TOKEN"; test "$API_TOKEN" = s3cr3t-value && echo match',
            secret_env={"API_TOKEN": SECRET},
        )
    )
    assert (await hodei.wait_final(job_id)).state == jobs_pb2.SUCCEEDED
    lines = [line.line async for line in hodei.client.follow_logs(job_id, follow=False)]
    assert lines == ["token=***", "match"]

    stored = await fetch_text(hodei.database_url, "SELECT secret_env::text FROM jobs")
    assert "API_TOKEN" in stored
    assert "enc:v1:" in stored
    assert SECRET not in stored
    audit = await fetch_text(hodei.database_url, "SELECT payload::text FROM audit_logs")
    assert SECRET not in audit

    assert dict((await hodei.client.get(job_id)).definition.secret_env) == {"API_TOKEN": "***"}
    response = await hodei.http.get(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 200
    assert response.json()["definition"]["secret_env"] == {"API_TOKEN": "***"}
    listed = (await hodei.http.get("/api/v1/jobs")).json()
    assert [job["definition"]["secret_env"] for job in listed["jobs"]] == [{"API_TOKEN": "***"}]


async def test_a_server_without_a_key_refuses_secrets_and_stores_nothing(
    database_url: str,
) -> None:
    async with running_hodei(database_url, secret_box=None) as hodei:
        before = await hodei.count_jobs()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await hodei.client.queue(shell("true", secret_env={"API_TOKEN": SECRET}))
        assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "HODEI_SECRET_KEY" in str(caught.value.details())
        assert await hodei.count_jobs() == before
        plain = await hodei.client.queue(shell("true", env={"A": "1"}))
        assert (await hodei.wait_final(plain)).state == jobs_pb2.SUCCEEDED


def spec(**fields: Any) -> JobSpec:
    return parse_job_spec(
        {"name": "job", "script": "true", "preferences": {"allow_retry": False}} | fields
    )


async def test_the_worker_gets_the_values_in_clear_again_after_a_reconnect(db: Database) -> None:
    jobs = JobRepository(db, secrets=SecretBox(os.urandom(32)))
    job_id, _ = await jobs.insert(spec(secret_env={"API_TOKEN": SECRET}), "t")
    assert (await jobs.get(job_id)).spec.secret_env["API_TOKEN"].startswith("enc:v1:")
    worker = await ready_worker(db, cpu=8, memory=8192)
    claimed = await jobs.claim(worker, LEASE)
    assert claimed is not None
    assert claimed.job.spec.secret_env == {"API_TOKEN": SECRET}
    [again] = await jobs.assigned_to(worker)
    assert again.job.spec.secret_env == {"API_TOKEN": SECRET}


async def test_a_value_that_does_not_open_fails_the_attempt_with_the_reason(db: Database) -> None:
    sealed_by = JobRepository(db, secrets=SecretBox(os.urandom(32)))
    job_id, _ = await sealed_by.insert(spec(secret_env={"API_TOKEN": SECRET}), "t")
    other_key = JobRepository(db, secrets=SecretBox(os.urandom(32)))
    worker = await ready_worker(db, cpu=8, memory=8192)
    assert await other_key.claim(worker, LEASE) is None
    job = await other_key.get(job_id)
    assert job.state is JobState.FAILED
    assert "cannot be decrypted" in job.error_message
    assert "HODEI_SECRET_KEY" in job.error_message
    # The dispatcher carries on: the next job is claimed as usual.
    next_id, _ = await other_key.insert(spec(secret_env={"B": "2"}), "t")
    claimed = await other_key.claim(worker, LEASE)
    assert claimed is not None
    assert (claimed.job.id, claimed.job.spec.secret_env) == (next_id, {"B": "2"})


async def set_secret_env(db: Database, sql: str, *params: str) -> None:
    async with db.connection() as conn:
        await conn.execute(sql, params)


async def test_a_value_moved_from_another_job_does_not_open(db: Database) -> None:
    jobs = JobRepository(db, secrets=SecretBox(os.urandom(32)))
    source, _ = await jobs.insert(spec(secret_env={"API_TOKEN": SECRET}), "t")
    target, _ = await jobs.insert(spec(secret_env={"API_TOKEN": "other"}), "t")
    await set_secret_env(
        db,
        "UPDATE jobs SET secret_env = (SELECT secret_env FROM jobs WHERE id = %s), priority = 3 "
        "WHERE id = %s",
        source,
        target,
    )
    worker = await ready_worker(db, cpu=8, memory=8192)
    assert await jobs.claim(worker, LEASE) is None  # the target first: it is HIGH priority
    claimed = await jobs.claim(worker, LEASE)
    assert claimed is not None
    assert claimed.job.id == source
    assert claimed.job.spec.secret_env == {"API_TOKEN": SECRET}
    target_job = await jobs.get(target)
    assert target_job.state is JobState.FAILED
    assert "cannot be decrypted" in target_job.error_message


async def test_a_value_stored_in_clear_before_encryption_still_runs(db: Database) -> None:
    jobs = JobRepository(db, secrets=SecretBox(os.urandom(32)))
    job_id, _ = await jobs.insert(spec(secret_env={"API_TOKEN": "placeholder"}), "t")
    await set_secret_env(
        db, """UPDATE jobs SET secret_env = '{"API_TOKEN": "old-plain"}' WHERE id = %s""", job_id
    )
    worker = await ready_worker(db, cpu=8, memory=8192)
    claimed = await jobs.claim(worker, LEASE)
    assert claimed is not None
    assert claimed.job.spec.secret_env == {"API_TOKEN": "old-plain"}


async def test_without_a_key_the_repository_refuses_secrets(db: Database) -> None:
    jobs = JobRepository(db)
    with pytest.raises(FailedPreconditionError, match="HODEI_SECRET_KEY"):
        await jobs.insert(spec(secret_env={"API_TOKEN": SECRET}), "t")
    assert await jobs.page(JobFilter(), 10) == []
