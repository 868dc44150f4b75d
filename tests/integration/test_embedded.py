"""The embedded PostgreSQL cluster, against real PostgreSQL programs."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, LiteralString

import psutil
import psycopg
import pytest

from hodei.store.embedded import (
    SERVER_BINARIES,
    EmbeddedPostgres,
    EmbeddedPostgresError,
    find_postgres_bin_dir,
)

pytestmark = pytest.mark.integration

MakeCluster = Callable[..., EmbeddedPostgres]


@pytest.fixture
def base_dir() -> Iterator[Path]:
    """A scratch directory the server user can reach when the tests run as root.

    pytest's tmp_path is private (mode 0700), which the server user may not enter.
    """
    path = Path(tempfile.mkdtemp(prefix="hodei-embedded-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def make_cluster(base_dir: Path) -> AsyncIterator[MakeCluster]:
    """Build clusters (fsync off) and stop every one of them afterwards."""
    clusters: list[EmbeddedPostgres] = []

    def make(data_dir: Path | None = None, **options: Any) -> EmbeddedPostgres:
        options.setdefault("fsync", False)
        cluster = EmbeddedPostgres(data_dir or base_dir / "data", **options)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in reversed(clusters):
        await cluster.stop()


async def fetch_one(url: str, query: LiteralString) -> tuple[Any, ...]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute(query)
        row = await cursor.fetchone()
    assert row is not None
    return row


def is_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@contextlib.contextmanager
def listening_on(port: int) -> Iterator[None]:
    with socket.socket() as holder:
        # The cluster's own connections may linger in TIME_WAIT on this port.
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        yield


def pgserver_bin_dir() -> Path:
    spec = importlib.util.find_spec("pgserver")
    assert spec is not None, "pgserver (a dependency of hodei) is not installed"
    assert spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


async def test_start_answers_queries_with_a_private_password(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()

    url = await cluster.start()

    assert url == cluster.url
    assert url.startswith("postgresql://hodei:")
    assert f"@127.0.0.1:{cluster.port}/hodei" in url
    assert await fetch_one(url, "select 1") == (1,)
    password_file = cluster.data_dir / "postgres.password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert password_file.stat().st_uid == os.geteuid()
    assert password_file.read_text().strip() in url


async def test_restart_keeps_data_and_port(make_cluster: MakeCluster) -> None:
    first = make_cluster()
    url = await first.start()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("create table kept (value text)")
        await conn.execute("insert into kept values ('still here')")
    first_port, first_pid = first.port, first.pid
    assert first_pid is not None
    await first.stop()
    assert not is_running(first_pid)
    assert first.port is None

    second = make_cluster()
    await second.start()

    assert second.port == first_port
    assert second.pid != first_pid
    assert await fetch_one(second.url, "select value from kept") == ("still here",)


async def test_restart_moves_off_a_port_taken_meanwhile(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    await cluster.start()
    old_port = cluster.port
    assert old_port is not None
    await cluster.stop()

    with listening_on(old_port):
        await cluster.start()

    assert cluster.port != old_port
    assert json.loads((cluster.data_dir / "postgres.json").read_text()) == {"port": cluster.port}
    assert await fetch_one(cluster.url, "select 1") == (1,)


async def test_start_failure_reports_the_server_log(make_cluster: MakeCluster) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        cluster = make_cluster(port=blocker.getsockname()[1])

        with pytest.raises(EmbeddedPostgresError, match="did not start") as error:
            await cluster.start()

    assert "Address already in use" in str(error.value)
    assert "last lines of" in str(error.value)
    assert cluster.port is None


async def test_initdb_failure_reports_its_errors(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(user="pg_reserved")

    with pytest.raises(EmbeddedPostgresError, match="initdb failed") as error:
        await cluster.start()

    assert "pg_reserved" in str(error.value)
    assert not cluster.cluster_dir.exists()


async def test_bundled_pgserver_binaries_work(make_cluster: MakeCluster) -> None:
    bin_dir = pgserver_bin_dir()
    cluster = make_cluster(bin_dir=bin_dir)

    await cluster.start()

    major = (cluster.cluster_dir / "PG_VERSION").read_text().strip()
    (version_num,) = await fetch_one(cluster.url, "select current_setting('server_version_num')")
    assert version_num.startswith(major)
    assert await fetch_one(cluster.url, "select 1") == (1,)


async def test_adopts_a_postmaster_left_running(make_cluster: MakeCluster) -> None:
    crashed_owner = make_cluster()
    await crashed_owner.start()
    pid = crashed_owner.pid
    assert pid is not None

    adopter = make_cluster()
    await adopter.start()

    assert adopter.pid == pid
    assert adopter.port == crashed_owner.port
    assert await fetch_one(adopter.url, "select 1") == (1,)
    await adopter.stop()
    assert not is_running(pid)


async def test_kills_a_server_that_ignores_shutdown_then_restarts(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(stop_timeout=timedelta(seconds=1))
    await cluster.start()
    pid = cluster.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)

    await cluster.stop()

    assert not is_running(pid)
    # postmaster.pid still names the killed server: a dead PID must not block a new start.
    assert (cluster.cluster_dir / "postmaster.pid").exists()
    restarted = make_cluster()
    await restarted.start()
    assert await fetch_one(restarted.url, "select 1") == (1,)


async def test_pid_file_naming_another_program_does_not_block_start(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()
    await cluster.start()
    pid_file = cluster.cluster_dir / "postmaster.pid"
    saved = pid_file.read_text().splitlines()
    await cluster.stop()
    # As after a reboot, when the old PID now belongs to an unrelated live process: this one.
    pid_file.write_text("\n".join([str(os.getpid()), *saved[1:]]) + "\n")

    await cluster.start()

    assert cluster.pid != os.getpid()
    assert await fetch_one(cluster.url, "select 1") == (1,)


async def test_clones_and_drops_databases(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    await cluster.start()
    async with await psycopg.AsyncConnection.connect(cluster.url, autocommit=True) as conn:
        await conn.execute("create table seeded as select 42 as answer")

    await cluster.create_database("copy-1", template="hodei")
    assert await fetch_one(cluster.url_for("copy-1"), "select answer from seeded") == (42,)
    await cluster.drop_database("copy-1")

    (count,) = await fetch_one(
        cluster.url_for("postgres"), "select count(*) from pg_database where datname = 'copy-1'"
    )
    assert count == 0


async def test_directory_without_binaries_is_a_clear_error(
    make_cluster: MakeCluster, base_dir: Path
) -> None:
    empty = base_dir / "no-binaries"
    empty.mkdir()
    cluster = make_cluster(bin_dir=empty)

    assert find_postgres_bin_dir(empty) is None
    with pytest.raises(EmbeddedPostgresError, match="does not hold the PostgreSQL server"):
        await cluster.start()
    assert not cluster.cluster_dir.exists()


def test_finds_binaries_without_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")

    bin_dir = find_postgres_bin_dir()

    assert bin_dir is not None
    assert all((bin_dir / name).is_file() for name in SERVER_BINARIES)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
async def test_root_refuses_a_data_dir_the_server_user_cannot_reach(
    make_cluster: MakeCluster, base_dir: Path
) -> None:
    private = base_dir / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    cluster = make_cluster(private / "data")

    with pytest.raises(EmbeddedPostgresError, match="HODEI_DATA_DIR=/var/lib/hodei") as error:
        await cluster.start()

    assert str(private) in str(error.value)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
async def test_root_runs_the_server_as_another_user(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    await cluster.start()
    assert cluster.pid is not None

    server_uid = psutil.Process(cluster.pid).uids().real

    assert server_uid != 0
    assert cluster.cluster_dir.stat().st_uid == server_uid
    assert (cluster.data_dir / "postgres.password").stat().st_uid == 0
