"""The connection pool and the one way the rest of the code runs a named query."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, LiteralString

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from hodei.domain.errors import UnavailableError
from hodei.store.queries import load_queries

Row = dict[str, Any]


class Database:
    """A pool of autocommit connections; each named query is one atomic statement."""

    def __init__(self, pool: AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]) -> None:
        self._pool = pool
        self._queries: dict[str, LiteralString] = load_queries()

    @classmethod
    async def connect(cls, conninfo: str, *, min_size: int = 2, max_size: int = 10) -> Database:
        """Open a pool and wait until its first connections are up.

        Raises:
            UnavailableError: PostgreSQL could not be reached within the timeout.
        """
        pool: AsyncConnectionPool[psycopg.AsyncConnection[DictRow]] = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                # Short OLTP statements: JIT compiling costs more than it saves (hundreds of ms
                # on the metrics queries), and a generic plan cached after five runs can be far
                # worse than a per-call one for keyset pages with optional filters.
                "options": "-c jit=off -c plan_cache_mode=force_custom_plan",
            },
            open=False,
            name="hodei",
        )
        try:
            await pool.open(wait=True, timeout=30)
        except Exception as exc:
            await pool.close()
            raise UnavailableError(f"cannot connect to PostgreSQL: {exc}") from exc
        return cls(pool)

    async def close(self) -> None:
        """Close every connection."""
        await self._pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[DictRow]]:
        """Borrow a connection, turning connection failures into UnavailableError."""
        try:
            async with self._pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            raise UnavailableError(f"PostgreSQL is unavailable: {exc}") from exc

    def query(self, name: str) -> LiteralString:
        """The text of a named query."""
        return self._queries[name]

    async def fetch_all(self, query: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Run a named query and return every row."""
        async with self.connection() as conn:
            cursor = await conn.execute(self._queries[query], params)
            return await cursor.fetchall() if cursor.description else []

    async def fetch_one(self, query: str, params: Mapping[str, Any] | None = None) -> Row | None:
        """Run a named query and return its first row, if any."""
        rows = await self.fetch_all(query, params)
        return rows[0] if rows else None

    async def ping(self) -> None:
        """Check that PostgreSQL answers."""
        async with self.connection() as conn:
            await conn.execute("SELECT 1")
