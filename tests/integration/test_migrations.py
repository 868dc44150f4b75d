"""Applying every migration gives exactly the schema of schema.sql, and is idempotent."""

from __future__ import annotations

import asyncio
import re
import subprocess
import uuid

import psycopg
import pytest

from hodei.store.embedded import EmbeddedPostgres, find_postgres_bin_dir
from hodei.store.migrations import migrate
from hodei.store.queries import load_schema

pytestmark = pytest.mark.integration


def schema_dump(url: str) -> str:
    bin_dir = find_postgres_bin_dir()
    assert bin_dir is not None
    dump = subprocess.run(
        [
            str(bin_dir / "pg_dump"),
            "--schema-only",
            "--no-owner",
            "--exclude-table",
            "hodei_migrations",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    lines = [
        line
        for line in dump.splitlines()
        if line.strip()
        and not line.startswith(("--", "SET ", "SELECT pg_catalog.set_config"))
        and not re.match(r"\\(un)?restrict ", line)
    ]
    return "\n".join(lines)


def fresh_database(postgres: EmbeddedPostgres) -> str:
    name = f"schema_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    return postgres.url_for(name)


async def test_migrations_give_exactly_schema_sql(postgres: EmbeddedPostgres) -> None:
    migrated, pictured = fresh_database(postgres), fresh_database(postgres)
    applied = await migrate(migrated)
    assert [m.version for m in applied] == list(range(1, len(applied) + 1))
    assert await migrate(migrated) == []  # a second run applies nothing
    with psycopg.connect(pictured, autocommit=True) as conn:
        conn.execute(load_schema())  # type: ignore[arg-type]
    assert schema_dump(migrated) == schema_dump(pictured)


async def test_concurrent_migrations_apply_once(postgres: EmbeddedPostgres) -> None:
    url = fresh_database(postgres)
    results = await asyncio.gather(*(migrate(url) for _ in range(3)))
    assert sorted(len(r) for r in results)[:2] == [0, 0]
