"""A real PostgreSQL for the integration tests: one cluster per run, one database per test,
cloned from a migrated template (fast)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio

from hodei.store.database import Database
from hodei.store.embedded import EmbeddedPostgres
from hodei.store.migrations import migrate

TEMPLATE = "hodei_template"


def traversable_tmpdir(prefix: str) -> Path:
    """A temporary directory the `postgres` user can enter (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres]:
    data_dir = traversable_tmpdir("hodei-it-pg-")
    cluster = EmbeddedPostgres(data_dir, fsync=False)
    try:
        asyncio.run(cluster.start())
        asyncio.run(cluster.create_database(TEMPLATE))
        asyncio.run(migrate(cluster.url_for(TEMPLATE)))
        yield cluster
    finally:
        asyncio.run(cluster.stop())
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def database_url(postgres: EmbeddedPostgres) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')  # type: ignore[arg-type]
    try:
        yield postgres.url_for(name)
    finally:
        with psycopg.connect(postgres.url_for("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


@pytest_asyncio.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = await Database.connect(database_url, min_size=1, max_size=8)
    try:
        yield database
    finally:
        await database.close()
