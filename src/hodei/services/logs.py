"""Reading a job's log: pages, and history followed by live lines."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

from hodei.domain.errors import ValidationError
from hodei.domain.logs import LogRecord
from hodei.store.jobs import JobRepository
from hodei.store.logs import LogQuery, LogRepository
from hodei.store.notify import JOB_EVENTS_CHANNEL, LOGS_CHANNEL, Notifier

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
FOLLOW_POLL_SECONDS = 1.0


def checked_limit(limit: int) -> int:
    """The page size to use, or a ValidationError naming ``limit``."""
    if limit < 0 or limit > MAX_LIMIT:
        raise ValidationError.single("limit", f"must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit or DEFAULT_LIMIT


class LogService:
    """The log use cases."""

    def __init__(self, jobs: JobRepository, logs: LogRepository, notifier: Notifier) -> None:
        self._jobs = jobs
        self._logs = logs
        self._notifier = notifier

    async def page(self, query: LogQuery) -> tuple[list[LogRecord], bool]:
        """Lines after ``query.after_sequence``, and whether the job has ended."""
        job = await self._jobs.get(query.job_id)
        query = replace(query, job_id=job.id, limit=checked_limit(query.limit))
        lines = await self._logs.read(query)
        return lines, job.state.is_final

    async def follow(self, query: LogQuery, *, follow: bool) -> AsyncIterator[list[LogRecord]]:
        """History from ``query.after_sequence`` in batches, then (with ``follow``) new lines
        as they are stored, until the job has ended and every line was sent."""
        job = await self._jobs.get(query.job_id)
        query = replace(query, job_id=job.id, limit=checked_limit(query.limit))
        with (
            self._notifier.watch(LOGS_CHANNEL, job.id) as new_lines,
            self._notifier.watch(JOB_EVENTS_CHANNEL, job.id) as job_changed,
        ):
            while True:
                new_lines.clear()
                job_changed.clear()
                ended = (await self._jobs.get(job.id)).state.is_final
                # The worker sends every line before its result, so once the job has ended a
                # read that comes back short has seen the whole log.
                batch = await self._logs.read(query)
                if batch:
                    query = replace(query, after_sequence=batch[-1].sequence)
                    yield batch
                if len(batch) == query.limit:
                    continue
                if ended or not follow:
                    return
                await _wait_any(new_lines, job_changed, FOLLOW_POLL_SECONDS)


async def _wait_any(first: asyncio.Event, second: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.create_task(first.wait()), asyncio.create_task(second.wait())]
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED), seconds
            )
    finally:
        for waiter in waiters:
            waiter.cancel()
