"""A whole Hodei server in-process with a real worker agent running real processes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from hodei.client import HodeiClient
from hodei.domain.auth import Role
from hodei.domain.workers import WorkerInfo, WorkerState
from hodei.server import HodeiServer, ServerConfig
from hodei.services.workers import WorkerProtocolConfig
from hodei.store.database import Database
from hodei.store.secrets import SecretBox
from hodei.store.tokens import TokenRepository
from hodei.store.workers import WorkerRepository
from hodei.v1 import jobs_pb2, scheduler_pb2
from hodei.worker.agent import AgentConfig, WorkerAgent
from hodei.worker.runtime import ProcessRuntime

from .conftest import traversable_tmpdir

FINAL = {jobs_pb2.SUCCEEDED, jobs_pb2.FAILED, jobs_pb2.CANCELLED, jobs_pb2.TIMEOUT}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(check: Callable[[], Awaitable[Any]], seconds: float = 15) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds} s")
        await asyncio.sleep(0.02)


@dataclass
class Running:
    client: HodeiClient
    http: httpx.AsyncClient
    database_url: str
    config: ServerConfig
    data_dir: Path
    server: HodeiServer
    admin_token: str | None = None  # when dev mode is off: what the client and http send

    async def restart_server(self, down_for: float = 0.0) -> None:
        """Stop the server and start a new one on the same ports and database."""
        await self.server.stop()
        await asyncio.sleep(down_for)
        self.server = HodeiServer(self.config)
        await self.server.start()

    async def wait_final(self, job_id: str, seconds: float = 20) -> jobs_pb2.Job:
        async def final() -> jobs_pb2.Job | None:
            job = await self.client.get(job_id)
            return job if job.state in FINAL else None

        result: jobs_pb2.Job = await eventually(final, seconds)
        return result

    async def wait_state(self, job_id: str, state: int) -> None:
        async def reached() -> bool:
            return (await self.client.get(job_id)).state == state

        await eventually(reached)

    async def count_jobs(self) -> int:
        response = await self.client.list(jobs_pb2.ListJobsRequest(page_size=500))
        return len(response.jobs)


def shell(script: str, **fields: Any) -> jobs_pb2.JobDefinition:
    return jobs_pb2.JobDefinition(name=fields.pop("name", script[:40]), script=script, **fields)


def config_for_a_test(database_url: str, data_dir: Path, **overrides: Any) -> ServerConfig:
    """A server for one test: free ports, dev mode (no tokens, unless a test turns it off), a
    fresh secret key, heartbeats every second; ``overrides`` replace any of it."""
    config = ServerConfig(
        dev_mode=True,
        secret_box=SecretBox(os.urandom(32)),
        database_url=database_url,
        data_dir=data_dir,
        grpc_port=free_port(),
        http_port=free_port(),
        protocol=WorkerProtocolConfig(
            heartbeat_interval=timedelta(seconds=1), cancel_grace=timedelta(seconds=2)
        ),
    )
    return dataclasses.replace(config, **overrides)


@contextlib.asynccontextmanager
async def running_hodei(database_url: str, **overrides: Any) -> AsyncIterator[Running]:
    """A server on free ports with one in-process worker agent (4 CPUs, 8 GB)."""
    data_dir = traversable_tmpdir("hodei-it-server-")
    config = config_for_a_test(database_url, data_dir, **overrides)
    grpc_port, http_port = config.grpc_port, config.http_port
    server = HodeiServer(config)
    running: Running | None = None
    await server.start()
    agent_task: asyncio.Task[None] | None = None
    agent: WorkerAgent | None = None
    try:
        db = await Database.connect(database_url, min_size=1, max_size=1)
        try:
            otp = await WorkerRepository(db).create_bootstrap_token("local", timedelta(minutes=1))
            admin_token = None
            if not config.dev_mode:
                admin_token, _ = await TokenRepository(db).create(
                    f"harness-{uuid.uuid4().hex[:8]}", Role.ADMIN, "test"
                )
        finally:
            await db.close()
        agent = WorkerAgent(
            AgentConfig(
                server_addresses=(f"127.0.0.1:{grpc_port}",),
                otp=otp,
                cpu_cores=4,
                memory_mb=8192,
                region="local",
                work_dir=data_dir,
            ),
            ProcessRuntime(),
        )
        agent_task = asyncio.create_task(agent.run())
        headers = {"authorization": f"Bearer {admin_token}"} if admin_token else {}
        async with (
            HodeiClient(f"127.0.0.1:{grpc_port}", token=admin_token) as client,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", headers=headers) as http,
        ):

            async def ready() -> bool:
                workers = await client.workers()
                return any(w.state == scheduler_pb2.WORKER_READY for w in workers.workers)

            await eventually(ready)
            running = Running(client, http, database_url, config, data_dir, server, admin_token)
            yield running
    finally:
        if agent is not None and agent_task is not None:
            agent.stop()
            await asyncio.wait_for(agent_task, 20)
        # A test may have restarted the server: stop the one in use now.
        await (running.server if running is not None else server).stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def ready_worker(db: Database, cpu: float = 2, memory: int = 4096, **info: Any) -> str:
    """A registered READY worker (no agent behind it) for store-level tests; its id."""
    workers = WorkerRepository(db)
    otp = await workers.create_bootstrap_token("local", timedelta(minutes=5))
    registration = await workers.register(
        otp,
        WorkerInfo(
            hostname="h",
            arch="x86_64",
            runtime="process",
            cpu_cores=cpu,
            memory_mb=memory,
            region=info.get("region", "local"),
        ),
    )
    await workers.set_state(
        registration.worker_id, WorkerState.READY, event_type="WorkerConnected", actor="test"
    )
    return registration.worker_id
