"""Job logs in PostgreSQL: idempotent bulk appends fenced by attempt, and paged reads."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from hodei.domain.errors import StaleAttemptError
from hodei.domain.logs import LogLevel, LogRecord, LogStream
from hodei.store.database import Database
from hodei.store.jobs import parse_job_id

_STREAM_NAMES = {LogStream.STDOUT: "stdout", LogStream.STDERR: "stderr"}
_STREAMS_BY_NAME = {name: stream for stream, name in _STREAM_NAMES.items()}
_LEVEL_NAMES = {level: level.name for level in LogLevel}


@dataclass(frozen=True)
class LogQuery:
    """Which lines of a job's log to read."""

    job_id: str
    after_sequence: int = 0
    limit: int = 1000
    levels: tuple[LogLevel, ...] = ()
    contains: str = ""


class LogRepository:
    """Appends and reads ``job_logs``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(
        self, *, worker_id: str, job_id: str, attempt: int, lines: Sequence[LogRecord]
    ) -> int:
        """Store a batch from the worker that holds this attempt; returns how many were new.

        Lines already stored (same job and sequence) are skipped, so a resent batch is harmless.

        Raises:
            StaleAttemptError: the attempt is not this worker's current one.
        """
        row = await self._db.fetch_one(
            "append_logs",
            {
                "job_id": job_id,
                "attempt": attempt,
                "worker_id": worker_id,
                # One JSON document per batch: PostgreSQL unpacks it far faster than psycopg
                # adapts six arrays element by element.
                "rows": json.dumps(
                    [
                        {
                            "s": line.sequence,
                            "t": line.epoch_ns // 1000,
                            "o": _STREAM_NAMES[line.stream],
                            "v": _LEVEL_NAMES[line.level],
                            "x": line.line,
                            "i": line.invalid_utf8,
                        }
                        for line in lines
                    ],
                    ensure_ascii=False,
                ),
                "last_sequence": max(line.sequence for line in lines),
            },
        )
        assert row is not None
        if not row["fenced_ok"]:
            raise StaleAttemptError(
                f"attempt {attempt} of job {job_id} is not current on worker {worker_id}"
            )
        return int(row["stored"])

    async def delete_older_than(self, age: timedelta, batch: int = 10_000) -> int:
        """Delete up to ``batch`` lines older than ``age``; returns how many went."""
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                self._db.query("delete_old_logs"), {"age": age, "batch": batch}
            )
            return cursor.rowcount

    async def read(self, query: LogQuery) -> list[LogRecord]:
        """Lines after ``query.after_sequence`` in order, filtered."""
        rows = await self._db.fetch_all(
            "get_logs",
            {
                "job_id": parse_job_id(query.job_id),
                "after_sequence": query.after_sequence,
                "limit": query.limit,
                "levels": [level.name for level in query.levels] or None,
                "contains": query.contains or None,
            },
        )
        return [
            LogRecord(
                row["sequence"],
                row["epoch_ns"],
                _STREAMS_BY_NAME[row["stream"]],
                LogLevel[row["level"]],
                row["line"],
                row["attempt"],
                row["invalid_utf8"],
            )
            for row in rows
        ]
