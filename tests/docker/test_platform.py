"""The docker provider end to end: a real server starts ``hodei worker --runtime docker``
processes against a real engine, and jobs run in their images."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, LiteralString

import docker
import pytest

from hodei.client import HodeiClient
from hodei.domain.providers import ProviderConfig, ProviderType
from hodei.server import HodeiServer
from hodei.services.workers import WorkerProtocolConfig
from hodei.store.database import Database
from hodei.store.providers import ProviderRepository
from hodei.v1 import jobs_pb2, scheduler_pb2
from hodei.worker.containers import LABEL_PID
from tests.docker_engine import DockerEngine, TestImages, job_containers
from tests.integration.conftest import database_url, postgres, traversable_tmpdir  # noqa: F401
from tests.integration.harness import FINAL, config_for_a_test, eventually, shell

pytestmark = pytest.mark.timeout(180)


@dataclass
class Platform:
    client: HodeiClient
    db: Database
    server: HodeiServer

    async def run(self, definition: jobs_pb2.JobDefinition, seconds: float = 60) -> jobs_pb2.Job:
        job_id = await self.client.queue(definition)
        return await self.wait_final(job_id, seconds)

    async def wait_final(self, job_id: str, seconds: float = 60) -> jobs_pb2.Job:
        async def final() -> jobs_pb2.Job | None:
            job = await self.client.get(job_id)
            return job if job.state in FINAL else None

        result: jobs_pb2.Job = await eventually(final, seconds)
        return result

    async def wait_running(self, job_id: str) -> None:
        async def running() -> bool:
            return (await self.client.get(job_id)).state == jobs_pb2.RUNNING

        await eventually(running, 60)

    async def output(self, job_id: str) -> list[str]:
        return [line.line async for line in self.client.follow_logs(job_id, follow=False)]

    async def sql(self, query: LiteralString, params: dict[str, Any]) -> list[Any]:
        async with self.db.connection() as conn:
            cursor = await conn.execute(query, params)
            return await cursor.fetchall()

    async def events(self, job_id: str) -> list[tuple[str, dict[str, Any]]]:
        rows = await self.sql(
            "SELECT event_type, payload FROM audit_logs WHERE correlation_id = %(id)s "
            "ORDER BY occurred_at, id",
            {"id": job_id},
        )
        return [(row["event_type"], row["payload"]) for row in rows]

    async def worker_runtime(self, worker_id: str) -> str:
        workers = await self.client.workers()
        return next(w.runtime for w in workers.workers if w.id == worker_id)


@contextlib.asynccontextmanager
async def platform(
    database_url: str,  # noqa: F811
    engine: DockerEngine,
    images: TestImages,
    *,
    min_workers: int = 1,
    max_workers: int = 2,
    idle_timeout: timedelta = timedelta(minutes=5),
    local_workers: int = 0,
    config: dict[str, Any] | None = None,
) -> AsyncIterator[Platform]:
    data_dir = traversable_tmpdir("hodei-docker-it-")
    db = await Database.connect(database_url, min_size=1, max_size=2)
    providers = ProviderRepository(db)
    await providers.upsert(
        ProviderConfig(
            name="docker",
            type=ProviderType.DOCKER,
            min_workers=min_workers,
            max_workers=max_workers,
            idle_timeout=idle_timeout,
            config={
                "default_image": images.busybox,
                "network": "none",
                "docker_host": engine.host,
                "cpu_cores": 2,
                "memory_mb": 2048,
            }
            | (config or {}),
        ),
        actor="test",
    )
    if local_workers:
        await providers.upsert(
            ProviderConfig(name="local", type=ProviderType.LOCAL, min_workers=local_workers),
            actor="test",
        )
    server = HodeiServer(
        config_for_a_test(
            database_url,
            data_dir,
            protocol=WorkerProtocolConfig(
                heartbeat_interval=timedelta(seconds=1),
                lease_ttl=timedelta(seconds=3),
                cancel_grace=timedelta(seconds=2),
            ),
            timeout_grace=timedelta(seconds=5),
        )
    )
    grpc_port = server.config.grpc_port
    try:
        await server.start()
        async with HodeiClient(f"127.0.0.1:{grpc_port}") as client:

            async def ready() -> bool:
                workers = (await client.workers()).workers
                live = [w for w in workers if w.state == scheduler_pb2.WORKER_READY]
                return len(live) >= min_workers + local_workers

            await eventually(ready, 60)
            yield Platform(client, db, server)
    finally:
        await server.stop()
        await db.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def containers_of(client: docker.DockerClient, job_id: str) -> list[dict[str, Any]]:
    return job_containers(client, job_id)


async def test_shell_and_python_jobs_run_in_their_images(
    database_url: str,  # noqa: F811
    docker_engine: DockerEngine,
    docker_client: docker.DockerClient,
    test_images: TestImages,
) -> None:
    async with platform(database_url, docker_engine, test_images) as hodei:
        job_id = await hodei.client.queue(
            shell("echo hello from busybox; busybox | head -1 >&2", image=test_images.busybox)
        )
        job = await hodei.wait_final(job_id)
        assert job.state == jobs_pb2.SUCCEEDED, job.error_message
        assert job.exit_code == 0
        assert await hodei.worker_runtime(job.worker_id) == "docker"
        output = await hodei.output(job_id)
        assert output[0] == "hello from busybox"
        assert output[1].startswith("BusyBox")
        assert [e for e, _ in await hodei.events(job_id)] == [
            "JobCreated",
            "JobAssigned",
            "JobStatusChanged",
            "JobStatusChanged",
        ]
        assert job.notice == ""

        python = jobs_pb2.JobDefinition(
            name="python in its image",
            command_type=jobs_pb2.PYTHON,
            script="import os, sys\nprint(os.environ['GREETING'], sys.version_info[0])\n"
            "sys.exit(4)",
            image=test_images.python,
            env={"GREETING": "hola"},
        )
        job = await hodei.run(python)
        assert job.state == jobs_pb2.FAILED
        assert job.exit_code == 4
        assert job.error_message == "exited with code 4"
        assert await hodei.output(job.id) == ["hola 3"]
        await eventually(lambda: _none_left(docker_client, job.id))


async def _none_left(client: docker.DockerClient, job_id: str) -> bool:
    return not containers_of(client, job_id)


async def test_a_missing_image_is_pulled_and_shows_in_the_timeline(
    database_url: str,  # noqa: F811
    docker_engine: DockerEngine,
    docker_client: docker.DockerClient,
    test_images: TestImages,
    registry: Any,
) -> None:
    image = registry.publish_from_engine(docker_client, test_images.busybox, "hodei/pulled", "1")
    with contextlib.suppress(docker.errors.ImageNotFound):
        docker_client.images.remove(image, force=True)
    async with platform(database_url, docker_engine, test_images) as hodei:
        job = await hodei.run(shell("echo pulled and ran", image=image))
        assert job.state == jobs_pb2.SUCCEEDED, job.error_message
        assert await hodei.output(job.id) == ["pulled and ran"]
        events = await hodei.events(job.id)
        assert [e for e, _ in events] == [
            "JobCreated",
            "JobAssigned",
            "JobImagePulled",
            "JobStatusChanged",
            "JobStatusChanged",
        ]
        assert events[2][1]["image"] == image
        assert events[2][1]["duration_ms"] >= 0

        again = await hodei.run(shell("echo present now", image=image))
        assert again.state == jobs_pb2.SUCCEEDED
        assert "JobImagePulled" not in [e for e, _ in await hodei.events(again.id)]
        assert registry.pulls("hodei/pulled") == 1

        for missing, engine_says in (
            (f"{registry.address}/hodei/pulled:no-such-tag", "manifest unknown"),
            (f"{registry.address}/hodei/no-such-image:1", "name unknown"),
        ):
            failed = await hodei.run(shell("echo never", image=missing))
            assert failed.state == jobs_pb2.FAILED
            assert failed.error_message.startswith(f"image {missing} could not be pulled: ")
            assert engine_says in failed.error_message.lower()
    docker_client.images.remove(image, force=True)


async def test_out_of_memory_cancel_and_timeout(
    database_url: str,  # noqa: F811
    docker_engine: DockerEngine,
    docker_client: docker.DockerClient,
    test_images: TestImages,
) -> None:
    async with platform(database_url, docker_engine, test_images) as hodei:
        hog = jobs_pb2.JobDefinition(
            name="hog",
            command_type=jobs_pb2.PYTHON,
            script="b = bytearray(300 * 2**20)",
            image=test_images.python,
            resources=jobs_pb2.ResourceRequirements(memory_mb=32),
        )
        job = await hodei.run(hog)
        assert job.state == jobs_pb2.FAILED
        assert job.exit_code == 137
        assert "out of memory" in job.error_message

        sleeper = await hodei.client.queue(shell("echo up; sleep 300", image=test_images.busybox))
        await hodei.wait_running(sleeper)
        await eventually(lambda: _has_output(hodei, sleeper))
        await hodei.client.cancel(sleeper)
        job = await hodei.wait_final(sleeper)
        assert job.state == jobs_pb2.CANCELLED
        await eventually(lambda: _none_left(docker_client, sleeper))

        slow = jobs_pb2.JobDefinition(
            name="slow",
            script="sleep 300",
            image=test_images.busybox,
            resources=jobs_pb2.ResourceRequirements(timeout_ms=1500),
        )
        job = await hodei.run(slow)
        assert job.state == jobs_pb2.TIMEOUT
        assert job.error_message == "timed out after 1500 ms"
        await eventually(lambda: _none_left(docker_client, job.id))


async def _has_output(hodei: Platform, job_id: str) -> bool:
    return bool(await hodei.output(job_id))


async def test_it_scales_up_for_waiting_jobs_and_releases_idle_workers(
    database_url: str,  # noqa: F811
    docker_engine: DockerEngine,
    test_images: TestImages,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with platform(
        database_url,
        docker_engine,
        test_images,
        min_workers=0,
        max_workers=2,
        idle_timeout=timedelta(seconds=1),
        config={"cpu_cores": 1},
    ) as hodei:
        assert (await hodei.client.workers()).workers == []
        one_cpu = jobs_pb2.ResourceRequirements(cpu_cores=1)
        holder = await hodei.client.queue(
            shell("sleep 300", image=test_images.busybox, resources=one_cpu)
        )
        await hodei.wait_running(holder)
        # The only worker's one CPU is taken: this job needs a second worker.
        second = await hodei.run(
            shell("echo done", image=test_images.busybox, resources=one_cpu), 90
        )
        assert second.state == jobs_pb2.SUCCEEDED
        first = await hodei.client.cancel(holder)
        assert (await hodei.wait_final(holder)).state == jobs_pb2.CANCELLED
        assert first.worker_id != second.worker_id

        async def all_released() -> bool:
            workers = (await hodei.client.workers()).workers
            return not [w for w in workers if w.state != scheduler_pb2.WORKER_TERMINATED]

        await eventually(all_released, 30)
        rows = await hodei.sql(
            "SELECT correlation_id FROM audit_logs WHERE event_type = 'WorkerReleased'", {}
        )
        assert {r["correlation_id"] for r in rows} == {first.worker_id, second.worker_id}
    assert "released worker" in caplog.text


async def test_a_killed_worker_leaves_no_container_behind(
    database_url: str,  # noqa: F811
    docker_engine: DockerEngine,
    docker_client: docker.DockerClient,
    test_images: TestImages,
) -> None:
    async with platform(database_url, docker_engine, test_images, min_workers=1) as hodei:
        job_id = await hodei.client.queue(shell("sleep 300", image=test_images.busybox))
        await hodei.wait_running(job_id)
        (container,) = containers_of(docker_client, job_id)
        worker_pid = int(container["Labels"][LABEL_PID])
        os.kill(worker_pid, signal.SIGKILL)

        job = await hodei.wait_final(job_id, 60)
        assert job.state == jobs_pb2.FAILED
        assert "worker lost" in job.error_message
        await eventually(lambda: _none_left(docker_client, job_id), 30)

        # The provider replaced the worker; the replacement runs jobs.
        again = await hodei.run(shell("echo still here", image=test_images.busybox))
        assert again.state == jobs_pb2.SUCCEEDED


async def test_jobs_go_to_the_kind_of_worker_they_need(
    database_url: str,  # noqa: F811
    docker_engine: DockerEngine,
    test_images: TestImages,
) -> None:
    async with platform(
        database_url, docker_engine, test_images, min_workers=1, local_workers=1
    ) as hodei:
        in_image = await hodei.run(shell("echo in a container", image=test_images.busybox))
        on_host = await hodei.run(shell("echo on the host"))
        exec_job = await hodei.run(
            jobs_pb2.JobDefinition(
                name="argv",
                command_type=jobs_pb2.DOCKER_EXEC,
                script="echo plain argv",
                image=test_images.busybox,
            )
        )
        assert [j.state for j in (in_image, on_host, exec_job)] == [jobs_pb2.SUCCEEDED] * 3
        assert await hodei.worker_runtime(in_image.worker_id) == "docker"
        assert await hodei.worker_runtime(exec_job.worker_id) == "docker"
        assert await hodei.worker_runtime(on_host.worker_id) == "process"
        assert in_image.notice == on_host.notice == ""
        await asyncio.sleep(0)
