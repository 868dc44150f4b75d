"""PostgreSQL restarted while jobs run and others wait: the server reconnects by itself, and no
job is lost, stuck or repeated."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable, Iterator

import pytest

from hodei.store.embedded import EmbeddedPostgres

from .conftest import traversable_tmpdir
from .harness import (
    LEASE_TTL_S,
    Platform,
    Server,
    check_invariants,
    job_processes,
    numbered,
    reap_adopted,
    wait_for,
)

pytestmark = pytest.mark.faults

LINES = {"short": 8, "long": 70, "queued": 3}


@pytest.fixture
def cluster() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, since the test stops it."""
    data_dir = traversable_tmpdir("hodei-faults-pg-restart-")
    postgres = EmbeddedPostgres(data_dir, fsync=False)
    try:
        asyncio.run(postgres.start())
        yield postgres
    finally:
        asyncio.run(postgres.stop())
        reap_adopted()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def private_platform(cluster: EmbeddedPostgres) -> Iterator[Platform]:
    root = traversable_tmpdir("hodei-faults-")
    world = Platform(cluster.url, root)
    try:
        yield world
    finally:
        world.close()
        shutil.rmtree(root, ignore_errors=True)


def restart_postgres_under_load(
    platform: Platform,
    cluster: EmbeddedPostgres,
    server: Server,
    while_down: Callable[[dict[str, str]], None],
) -> None:
    """Two jobs running (a short and a long one) and two queued, PostgreSQL stopped, then
    ``while_down(running jobs)``, then started again: every job must end right."""
    # One slot per worker, so that two jobs wait in the queue through the outage.
    for _ in range(2):
        platform.worker([server], cpus=1)
    running = {
        platform.submit(server, numbered(kind, LINES[kind], 0.1), name=kind): kind
        for kind in ("short", "long")
    }
    for job in running:
        platform.wait_state(job, "RUNNING")
    queued = {
        platform.submit(server, numbered("queued", LINES["queued"], 0.05), name="q"): "queued"
        for _ in range(2)
    }
    assert {platform.state(job) for job in queued} == {"PENDING"}
    wait_for(lambda: all(platform.lines(job) for job in running), 10, "the running jobs log")

    asyncio.run(cluster.stop())
    platform.reap_orphans()  # the postmaster, our adopted child
    while_down(running)
    assert server.running
    asyncio.run(cluster.start())

    jobs = running | queued
    for job in jobs:
        platform.wait_state(job, timeout=40)
    after = platform.submit(server, "echo after", name="after")
    platform.wait_state(after)

    for job, kind in jobs.items():
        expected = [f"{kind} {i}" for i in range(1, LINES[kind] + 1)]
        assert platform.lines(job) == expected, f"job {job}: lines lost or repeated"
        assert len(platform.attempts(job)) == 1, f"job {job} ran more than once"
    check_invariants(platform, dict.fromkeys([*jobs, after], "SUCCEEDED"))


@pytest.mark.timeout(120)
def test_jobs_survive_a_postgres_restart(
    cluster: EmbeddedPostgres, private_platform: Platform
) -> None:
    # A long lease: this outage is about reconnecting, not about leases running out.
    server = private_platform.server(env={"HODEI_LEASE_TTL_S": "15"})

    def until_the_server_notices(running: dict[str, str]) -> None:
        wait_for(lambda: not server.ready(), 10, "/readyz reports PostgreSQL gone")
        assert job_processes(running), "the jobs run on while PostgreSQL is down"

    restart_postgres_under_load(private_platform, cluster, server, until_the_server_notices)


@pytest.mark.timeout(120)
def test_jobs_survive_a_postgres_outage_longer_than_a_lease(
    cluster: EmbeddedPostgres, private_platform: Platform
) -> None:
    # Nobody can renew a lease while PostgreSQL is away; the reaper must not take that for lost
    # workers once it is back (it waits for a connection rather than failing, so it has to
    # notice the outage by the time that passed).
    server = private_platform.server()

    def past_a_lease(running: dict[str, str]) -> None:
        stopped_at = time.monotonic()
        short = [job for job, kind in running.items() if kind == "short"]
        wait_for(
            lambda: time.monotonic() - stopped_at > LEASE_TTL_S + 1 and not job_processes(short),
            20,
            "the short job ends and a lease's time passes while PostgreSQL is down",
        )
        assert job_processes(running), "the long job still runs"

    restart_postgres_under_load(private_platform, cluster, server, past_a_lease)
