"""The local provider keeps its pool of real `hodei worker` processes and replaces one that dies."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path

import psutil
import pytest

from hodei.client import HodeiClient
from hodei.domain.providers import ProviderConfig, ProviderType
from hodei.server import HodeiServer
from hodei.store.database import Database
from hodei.store.providers import ProviderRepository
from hodei.v1 import jobs_pb2, scheduler_pb2

from .conftest import traversable_tmpdir
from .harness import config_for_a_test

pytestmark = pytest.mark.integration


def cmdline(process: psutil.Process) -> list[str]:
    """The command line, or nothing for a process that is gone or a zombie."""
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def mine(process: psutil.Process, data_dir: Path) -> bool:
    """A live process of this test: its workers work in its data dir (other tests' processes,
    such as a shared `hodei up`, are children of this process too)."""
    return str(data_dir) in " ".join(cmdline(process))


async def ready_workers(client: HodeiClient) -> set[str]:
    response = await client.workers()
    return {w.id for w in response.workers if w.state == scheduler_pb2.WORKER_READY}


async def wait_for(client: HodeiClient, predicate: object, seconds: float = 30) -> set[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready = await ready_workers(client)
        if predicate(ready):  # type: ignore[operator]
            return ready
        await asyncio.sleep(0.1)
    raise AssertionError("workers did not reach the expected state in time")


@pytest.mark.timeout(120)
async def test_the_pool_is_kept_and_a_dead_worker_is_replaced(database_url: str) -> None:
    db = await Database.connect(database_url, min_size=1, max_size=1)
    try:
        await ProviderRepository(db).upsert(
            ProviderConfig(name="local", type=ProviderType.LOCAL, min_workers=2, max_workers=2),
            actor="test",
        )
    finally:
        await db.close()
    data_dir = traversable_tmpdir("hodei-it-local-")
    server = HodeiServer(config_for_a_test(database_url, data_dir))
    grpc_port = server.config.grpc_port
    me = psutil.Process(os.getpid())
    try:
        await server.start()
        async with HodeiClient(f"127.0.0.1:{grpc_port}") as client:
            first = await wait_for(client, lambda ready: len(ready) == 2)
            job_id = await client.queue(jobs_pb2.JobDefinition(name="n", script="echo pooled"))
            lines = [line.line async for line in client.follow_logs(job_id, follow=True)]
            assert lines == ["pooled"]
            victim = next(p for p in me.children() if "worker" in cmdline(p) and mine(p, data_dir))
            victim.send_signal(signal.SIGKILL)
            replaced = await wait_for(client, lambda ready: len(ready) == 2 and ready != first)
            assert len(replaced & first) == 1
            listed = await client.scheduler.ListWorkers(
                scheduler_pb2.ListWorkersRequest(include_terminated=True)
            )
            states = {w.id: w.state for w in listed.workers}
            (dead,) = first - replaced
            assert states[dead] == scheduler_pb2.WORKER_TERMINATED
    finally:
        await server.stop()
        leftovers = [p for p in me.children(recursive=True) if mine(p, data_dir)]
        for process in leftovers:
            process.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
        assert leftovers == []
