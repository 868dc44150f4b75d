"""Fixtures of the fault-injection suite: one real PostgreSQL per run (a migrated template
cloned per test), a `Platform` of real processes per test, and this process as the subreaper of
whatever they orphan, so that nothing is left behind, not even a zombie."""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import tempfile
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import psycopg
import pytest

from hodei.store.embedded import EmbeddedPostgres
from hodei.store.migrations import migrate

from .harness import Platform, reap_adopted

TEMPLATE = "hodei_faults_template"
_PR_SET_CHILD_SUBREAPER = 36


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: fault injection with real processes (kills, restarts, partitions)"
    )


def traversable_tmpdir(prefix: str) -> Path:
    """A temporary directory the `postgres` user can enter (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)
    return path


def _set_subreaper(on: bool) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


@pytest.fixture(scope="session", autouse=True)
def adopt_orphans() -> Iterator[None]:
    """Orphans of the processes the tests start (the jobs of a SIGKILLed worker, a stopped
    postmaster) become children of this process, which reaps them: PID 1 here reaps late."""
    _set_subreaper(True)
    try:
        yield
    finally:
        reap_adopted()
        _set_subreaper(False)


@pytest.fixture(scope="session")
def fault_cluster(adopt_orphans: None) -> Iterator[EmbeddedPostgres]:
    data_dir = traversable_tmpdir("hodei-faults-pg-")
    cluster = EmbeddedPostgres(data_dir, fsync=False)
    try:
        asyncio.run(cluster.start())
        asyncio.run(cluster.create_database(TEMPLATE))
        asyncio.run(migrate(cluster.url_for(TEMPLATE)))
        yield cluster
    finally:
        asyncio.run(cluster.stop())
        reap_adopted()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def database_url(fault_cluster: EmbeddedPostgres) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"faults_{uuid.uuid4().hex[:12]}"
    admin = fault_cluster.url_for("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')  # type: ignore[arg-type]
    try:
        yield fault_cluster.url_for(name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


@pytest.fixture
def platform(database_url: str) -> Iterator[Platform]:
    """Processes of one test, all killed at its end, pass or fail."""
    root = traversable_tmpdir("hodei-faults-")
    world = Platform(database_url, root)
    try:
        yield world
    finally:
        world.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, attach the log of every process the test started."""
    report: pytest.TestReport = yield
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Platform):
                report.sections.extend(value.describe())
    return report
