"""A whole server in-process with a real worker agent running real processes, driven through
gRPC and REST."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import grpc
import psutil
import pytest
import pytest_asyncio

from hodei.domain.workers import WorkerInfo
from hodei.store.database import Database
from hodei.store.workers import WorkerRepository
from hodei.v1 import jobs_pb2, logs_pb2

from .harness import Running, running_hodei, shell

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def hodei(database_url: str) -> AsyncIterator[Running]:
    async with running_hodei(database_url) as running:
        yield running


async def test_a_shell_job_runs_and_its_logs_are_kept(hodei: Running) -> None:
    job_id = await hodei.client.queue(shell('echo "Hello from Hodei!"; echo oops >&2; exit 0'))
    job = await hodei.wait_final(job_id)
    assert job.state == jobs_pb2.SUCCEEDED
    assert job.exit_code == 0
    assert job.attempt == 1
    lines = [line async for line in hodei.client.follow_logs(job_id, follow=False)]
    assert [(line.sequence, line.line) for line in lines] == [
        (1, "Hello from Hodei!"),
        (2, "oops"),
    ]
    assert lines[1].stream == logs_pb2.STDERR


async def test_python_script_and_exit_codes(hodei: Running) -> None:
    ok = await hodei.client.queue(
        shell(
            "import sys\nfor i in range(3):\n    print(f'Step {i+1}/3')",
            command_type=jobs_pb2.PYTHON,
        )
    )
    bad = await hodei.client.queue(shell("import sys; sys.exit(7)", command_type=jobs_pb2.PYTHON))
    assert (await hodei.wait_final(ok)).state == jobs_pb2.SUCCEEDED
    failed = await hodei.wait_final(bad)
    assert (failed.state, failed.exit_code) == (jobs_pb2.FAILED, 7)
    assert failed.error_message == "exited with code 7"
    lines = [line.line async for line in hodei.client.follow_logs(ok, follow=False)]
    assert lines == ["Step 1/3", "Step 2/3", "Step 3/3"]


async def test_env_and_secret_env_reach_the_job_and_secrets_are_masked(hodei: Running) -> None:
    job_id = await hodei.client.queue(
        shell(
            'echo "url=$API_URL token=$API_TOKEN dir=$(pwd)"',
            env={"API_URL": "https://api.example.com/data"},
            secret_env={"API_TOKEN": "tu-token-secreto"},
        )
    )
    assert (await hodei.wait_final(job_id)).state == jobs_pb2.SUCCEEDED
    [line] = [line.line async for line in hodei.client.follow_logs(job_id, follow=False)]
    assert line.startswith("url=https://api.example.com/data token=*** dir=")
    job = await hodei.client.get(job_id)
    assert dict(job.definition.secret_env) == {"API_TOKEN": "***"}
    async with await __import__("psycopg").AsyncConnection.connect(hodei.database_url) as conn:
        cursor = await conn.execute("SELECT payload::text FROM audit_logs")
        assert "tu-token-secreto" not in str(await cursor.fetchall())


async def test_bad_input_names_the_field_and_stores_nothing(hodei: Running) -> None:
    before = await hodei.count_jobs()
    bad = jobs_pb2.JobDefinition(
        name="x", script="", resources=jobs_pb2.ResourceRequirements(cpu_cores=1000)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hodei.client.queue(bad)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "script: is required" in (caught.value.details() or "")
    assert "resources.cpu_cores: must be between" in (caught.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hodei.client.queue(
            shell("ls", command_type=jobs_pb2.DOCKER_EXEC, image="alpine:latest")
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "DOCKER_EXEC needs a container provider" in (caught.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hodei.client.get("not-a-uuid")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hodei.client.get("00000000-0000-4000-8000-000000000000")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert await hodei.count_jobs() == before


async def test_a_job_nothing_can_ever_run_fails_at_once(hodei: Running) -> None:
    job_id = await hodei.client.queue(
        shell("true", resources=jobs_pb2.ResourceRequirements(cpu_cores=64))
    )
    job = await hodei.client.get(job_id)
    assert job.state == jobs_pb2.FAILED
    assert "64 CPU cores were asked for" in job.error_message
    assert "offers 4 CPU" in job.error_message


async def test_jobs_share_a_worker_when_they_fit_and_wait_when_they_do_not(
    hodei: Running,
) -> None:
    two = jobs_pb2.ResourceRequirements(cpu_cores=2)
    first = await hodei.client.queue(shell("sleep 0.5", resources=two))
    second = await hodei.client.queue(shell("sleep 0.5", resources=two))
    third = await hodei.client.queue(shell("true", resources=two))
    await hodei.wait_state(first, jobs_pb2.RUNNING)
    await hodei.wait_state(second, jobs_pb2.RUNNING)  # both fit the 4-CPU worker at once
    assert (await hodei.client.get(third)).state == jobs_pb2.PENDING  # no room left
    jobs = [await hodei.wait_final(j) for j in (first, second, third)]
    assert all(job.state == jobs_pb2.SUCCEEDED for job in jobs)
    assert jobs[2].started_at.ToDatetime() >= min(j.finished_at.ToDatetime() for j in jobs[:2])


async def test_high_priority_jobs_run_before_older_low_ones(hodei: Running) -> None:
    everything = jobs_pb2.ResourceRequirements(cpu_cores=4)
    blocker = await hodei.client.queue(shell("sleep 0.5", resources=everything))
    await hodei.wait_state(blocker, jobs_pb2.RUNNING)
    low = await hodei.client.queue(
        shell("true", resources=everything, preferences=jobs_pb2.Preferences(priority=jobs_pb2.LOW))
    )
    high = await hodei.client.queue(
        shell(
            "true", resources=everything, preferences=jobs_pb2.Preferences(priority=jobs_pb2.HIGH)
        )
    )
    low_job, high_job = await hodei.wait_final(low), await hodei.wait_final(high)
    assert high_job.started_at.ToDatetime() < low_job.started_at.ToDatetime()


def gone(pid: int) -> bool:
    """The process no longer runs (PID 1 here may leave it a zombie, which runs nothing)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_timeout_kills_the_whole_process_group(hodei: Running) -> None:
    job_id = await hodei.client.queue(
        shell(
            "sleep 300 & echo $!; wait",
            resources=jobs_pb2.ResourceRequirements(timeout_ms=1000),
        )
    )
    job = await hodei.wait_final(job_id)
    assert job.state == jobs_pb2.TIMEOUT
    assert "timed out after 1000 ms" in job.error_message
    [grandchild] = [int(line.line) async for line in hodei.client.follow_logs(job_id, follow=False)]
    assert gone(grandchild)


async def first_lines(hodei: Running, job_id: str, count: int) -> list[str]:
    lines: list[str] = []
    async for line in hodei.client.follow_logs(job_id, follow=True):
        lines.append(line.line)
        if len(lines) == count:
            break
    return lines


async def test_cancel_pending_and_running_jobs(hodei: Running) -> None:
    everything = jobs_pb2.ResourceRequirements(cpu_cores=4)
    running = await hodei.client.queue(
        shell("echo $$; sleep 300 & echo $!; wait; echo never", resources=everything)
    )
    pids = [int(pid) for pid in await first_lines(hodei, running, 2)]
    pending = await hodei.client.queue(shell("true", resources=everything))
    cancelled = await hodei.client.cancel(pending)
    assert cancelled.state == jobs_pb2.CANCELLED
    await hodei.client.cancel(running)
    job = await hodei.wait_final(running)
    assert job.state == jobs_pb2.CANCELLED
    assert all(gone(pid) for pid in pids)  # the shell and its background sleep
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hodei.client.cancel(running)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already ended" in (caught.value.details() or "")


async def test_watch_job_streams_the_lifecycle(hodei: Running) -> None:
    job_id = await hodei.client.queue(shell("sleep 0.2"))
    request = jobs_pb2.WatchJobRequest(job_id=job_id)
    events = [event async for event in hodei.client.jobs.WatchJob(request)]
    assert [(e.event_type, jobs_pb2.JobState.Name(e.state)) for e in events] == [
        ("JobCreated", "PENDING"),
        ("JobAssigned", "ASSIGNED"),
        ("JobStatusChanged", "RUNNING"),
        ("JobStatusChanged", "SUCCEEDED"),
    ]
    assert events[2].payload["from"] == "ASSIGNED"


async def test_subscribe_follows_until_the_job_ends(hodei: Running) -> None:
    job_id = await hodei.client.queue(shell("for i in 1 2 3 4 5; do echo line $i; sleep 0.1; done"))
    lines = [line async for line in hodei.client.follow_logs(job_id, follow=True)]
    assert [line.line for line in lines] == [f"line {i}" for i in range(1, 6)]
    assert [line.sequence for line in lines] == [1, 2, 3, 4, 5]
    from_three = [
        line.sequence
        async for line in hodei.client.follow_logs(job_id, follow=False, from_sequence=3)
    ]
    assert from_three == [3, 4, 5]


async def test_rest_mirror(hodei: Running) -> None:
    http = hodei.http
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert (await http.get("/readyz")).status_code == 200
    spec = (await http.get("/api/openapi.json")).json()
    assert "/api/v1/jobs" in spec["paths"]
    bad = await http.post(
        "/api/v1/jobs", json={"name": "x", "script": "true", "resources": {"memory_mb": -1}}
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "resources", "memory_mb"]
    created = await http.post(
        "/api/v1/jobs",
        json={
            "name": "rest",
            "command_type": "SHELL",
            "script": "echo via rest",
            "preferences": {"priority": "HIGH"},
        },
    )
    assert created.status_code == 201
    job_id = created.json()["job_id"]
    await hodei.wait_final(job_id)
    job = (await http.get(f"/api/v1/jobs/{job_id}")).json()
    assert (job["state"], job["exit_code"]) == ("SUCCEEDED", 0)
    assert job["definition"]["preferences"]["priority"] == "HIGH"
    logs = (await http.get(f"/api/v1/jobs/{job_id}/logs")).json()
    assert [line["line"] for line in logs["lines"]] == ["via rest"]
    assert logs["job_finished"] is True
    listed = (await http.get("/api/v1/jobs", params={"state": "SUCCEEDED", "page_size": 1})).json()
    assert len(listed["jobs"]) == 1
    assert listed["next_page_token"] or listed["jobs"][0]["id"] == job_id
    assert (await http.get("/api/v1/jobs/00000000-0000-4000-8000-000000000000")).status_code == 404
    queue = (await http.get("/api/v1/queue")).json()
    assert queue["jobs_by_state"]["SUCCEEDED"] >= 1
    workers = (await http.get("/api/v1/workers")).json()
    assert workers[0]["state"] == "READY"


async def test_an_image_job_without_a_container_provider_runs_on_the_host_and_says_so(
    hodei: Running,
) -> None:
    job_id = await hodei.client.queue(shell("echo ran anyway", image="alpine:latest"))
    job = await hodei.wait_final(job_id)
    assert job.state == jobs_pb2.SUCCEEDED
    assert job.notice == (
        "image alpine:latest was not applied: it ran as a process on the worker's host "
        "(no container provider is running)"
    )
    rest = (await hodei.http.get(f"/api/v1/jobs/{job_id}")).json()
    assert rest["notice"] == job.notice
    events = (await hodei.http.get(f"/api/v1/jobs/{job_id}/events")).json()
    # The audit trail of the user guide stays as it is; the RUNNING change says why.
    kinds = [e["event_type"] for e in events]
    assert kinds == ["JobCreated", "JobAssigned", "JobStatusChanged", "JobStatusChanged"]
    assert events[2]["payload"]["image_not_applied"] == (
        "it ran as a process on the worker's host (no container provider is running)"
    )

    plain = await hodei.wait_final(await hodei.client.queue(shell("echo no image")))
    assert plain.notice == ""


async def test_a_dead_container_workers_row_does_not_keep_image_jobs_off_the_host(
    hodei: Running,
) -> None:
    """A docker worker that died without a word (its row still says READY) must not make the
    live host workers refuse image jobs: they would wait for ever."""
    db = await Database.connect(hodei.database_url, min_size=1, max_size=1)
    try:
        workers = WorkerRepository(db)
        otp = await workers.create_bootstrap_token("docker", timedelta(minutes=1))
        info = WorkerInfo(hostname="gone", arch="x86_64", runtime="docker", cpu_cores=4,
                          memory_mb=8192, region="local")  # fmt: skip
        dead = await workers.register(otp, info)
        async with db.connection() as conn:
            await conn.execute(
                "UPDATE workers SET last_heartbeat_at = now() - interval '1 hour' WHERE id = %s",
                (dead.worker_id,),
            )
    finally:
        await db.close()
    await asyncio.sleep(2.5)  # the server's view of the workers is at most 2 s old
    job = await hodei.wait_final(await hodei.client.queue(shell("echo here", image="busybox:1")))
    assert job.state == jobs_pb2.SUCCEEDED
    assert job.worker_id != dead.worker_id
    assert "was not applied" in job.notice
