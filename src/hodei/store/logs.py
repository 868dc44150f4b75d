"""Job logs in PostgreSQL: chunks of lines appended idempotently and fenced by attempt, and
paged reads. (``job_logs`` is a view with one row per line, for people writing SQL.)"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from hodei.domain.errors import StaleAttemptError
from hodei.domain.logs import LogChunk, LogLevel, LogRecord, LogStream
from hodei.store.database import Database
from hodei.store.jobs import parse_job_id


@dataclass(frozen=True)
class LogQuery:
    """Which lines of a job's log to read."""

    job_id: str
    after_sequence: int = 0
    limit: int = 1000
    levels: tuple[LogLevel, ...] = ()
    contains: str = ""

    @property
    def filtered(self) -> bool:
        return bool(self.levels or self.contains)


class LogRepository:
    """Appends and reads ``job_log_chunks``."""

    def __init__(self, db: Database, *, origin: str = "") -> None:
        self._db = db
        # Says who stored a chunk in its notification, so that this server can ignore its own.
        self.origin = origin or str(uuid.uuid4())

    async def append_chunk(
        self, *, worker_id: str, job_id: str, attempt: int, chunk: LogChunk
    ) -> int:
        """Store a chunk from the worker that holds this attempt; returns how many lines were new.

        Lines already stored (same job, sequence up to the newest stored) are skipped, so a
        chunk sent again is harmless.

        Raises:
            StaleAttemptError: the attempt is not this worker's current one.
        """
        remaining: LogChunk | None = chunk
        while remaining is not None:
            row = await self._db.fetch_one(
                "append_log_chunk",
                {
                    "job_id": job_id,
                    "attempt": attempt,
                    "worker_id": worker_id,
                    "first_sequence": remaining.first_sequence,
                    "last_sequence": remaining.last_sequence,
                    "body": remaining.body,
                    "kinds": remaining.kinds,
                    "ts": remaining.timestamps,
                    "notice": f"{job_id}:{remaining.last_sequence}:{self.origin}",
                },
            )
            assert row is not None
            if not row["fenced_ok"]:
                raise StaleAttemptError(
                    f"attempt {attempt} of job {job_id} is not current on worker {worker_id}"
                )
            if row["stored"]:
                return remaining.count
            # Some lines of it are stored already: store the rest, if any.
            stored_through = row["stored_through"]
            if stored_through is None or stored_through < remaining.first_sequence:
                return 0  # another server stored this very chunk meanwhile
            remaining = remaining.after(stored_through)
        return 0

    async def append(
        self, *, worker_id: str, job_id: str, attempt: int, lines: Sequence[LogRecord]
    ) -> int:
        """``append_chunk`` for consecutive records of one attempt."""
        return await self.append_chunk(
            worker_id=worker_id, job_id=job_id, attempt=attempt, chunk=LogChunk.of(lines)
        )

    async def delete_older_than(self, age: timedelta, batch: int = 100) -> tuple[int, int]:
        """Delete up to ``batch`` chunks stored before ``age`` ago; returns how many chunks
        and how many lines went."""
        row = await self._db.fetch_one("delete_old_logs", {"age": age, "batch": batch})
        assert row is not None
        return int(row["chunks"]), int(row["lines"])

    async def delete_samples_older_than(self, age: timedelta, batch: int) -> int:
        """Delete up to ``batch`` resource samples taken before ``age`` ago; returns how many."""
        row = await self._db.fetch_one("delete_old_samples", {"age": age, "batch": batch})
        assert row is not None
        return int(row["deleted"])

    async def read_chunks(self, job_id: str, after_sequence: int, limit: int) -> list[LogChunk]:
        """Up to ``limit`` lines after ``after_sequence``, in order, as chunks."""
        rows = await self._db.fetch_all(
            "read_log_chunks",
            {"job_id": parse_job_id(job_id), "after_sequence": after_sequence, "limit": limit},
        )
        chunks: list[LogChunk] = []
        wanted, after = limit, after_sequence
        for row in rows:
            stored = LogChunk(
                row["first_sequence"], row["attempt"], row["body"], row["kinds"], row["ts"]
            )
            chunk = stored.after(after)
            if chunk is None:
                continue
            chunk = chunk.head(wanted)
            chunks.append(chunk)
            wanted -= chunk.count
            after = chunk.last_sequence
            if wanted == 0:
                break
        return chunks

    async def read(self, query: LogQuery) -> list[LogRecord]:
        """Lines after ``query.after_sequence`` in order, filtered."""
        if not query.filtered:
            chunks = await self.read_chunks(query.job_id, query.after_sequence, query.limit)
            return [record for chunk in chunks for record in chunk.records()]
        rows = await self._db.fetch_all(
            "get_logs_filtered",
            {
                "job_id": parse_job_id(query.job_id),
                "after_sequence": query.after_sequence,
                "limit": query.limit,
                "levels": [level - 1 for level in query.levels] or None,
                "contains": query.contains or None,
            },
        )
        return [
            LogRecord(
                row["sequence"],
                row["epoch_ns"],
                LogStream.STDERR if row["kind"] & 1 else LogStream.STDOUT,
                (LogLevel.INFO, LogLevel.WARN, LogLevel.ERROR, LogLevel.INFO)[row["kind"] >> 1 & 3],
                row["line"],
                row["attempt"],
                bool(row["kind"] & 8),
            )
            for row in rows
        ]
