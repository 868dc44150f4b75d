"""Reading a job's log: pages, and history followed by live lines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

from hodei.domain.errors import ValidationError
from hodei.domain.logs import LogChunk, LogRecord, line_matches
from hodei.services.loghub import LogHub, Subscription
from hodei.store.jobs import JobRepository
from hodei.store.logs import LogQuery, LogRepository
from hodei.store.notify import JOB_EVENTS_CHANNEL, LOGS_CHANNEL, Notifier, Watch

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

    def __init__(
        self, jobs: JobRepository, logs: LogRepository, notifier: Notifier, hub: LogHub
    ) -> None:
        self._jobs = jobs
        self._logs = logs
        self._notifier = notifier
        self._hub = hub

    async def page(self, query: LogQuery) -> tuple[list[LogRecord], bool]:
        """Lines after ``query.after_sequence`` (filtered), and whether the job has ended."""
        job = await self._jobs.get(query.job_id)
        query = replace(query, job_id=job.id, limit=checked_limit(query.limit))
        lines = await self._logs.read(query)
        return lines, job.state.is_final

    async def follow(self, query: LogQuery, *, follow: bool) -> AsyncIterator[LogChunk]:
        """Lines after ``query.after_sequence`` in chunks (not filtered: see ``selected``):
        history from PostgreSQL, then (with ``follow``) live chunks as they are stored, until
        the job has ended and every line was sent. Gapless and without repeats: a live chunk
        that does not continue the sequence sends the reader back to PostgreSQL to catch up."""
        job = await self._jobs.get(query.job_id)
        limit = checked_limit(query.limit)
        last = query.after_sequence
        with (
            self._hub.subscribe(job.id) as live,
            self._notifier.watch(LOGS_CHANNEL, job.id) as stored_elsewhere,
            self._notifier.watch(JOB_EVENTS_CHANNEL, job.id) as job_changed,
        ):
            while True:
                # Catch up from PostgreSQL; what is queued live is stored already.
                live.drain()
                stored_elsewhere.clear()
                job_changed.clear()
                ended = (await self._jobs.get(job.id)).state.is_final
                # The worker sends every line before its result, so once the job has ended a
                # read that comes back short has seen the whole log.
                chunks = await self._logs.read_chunks(job.id, last, limit)
                for chunk in chunks:
                    last = chunk.last_sequence
                    yield chunk
                if sum(chunk.count for chunk in chunks) == limit:
                    continue
                if ended or not follow:
                    return
                while (
                    got := await _next_live(
                        live, stored_elsewhere, job_changed, last, self._logs.origin
                    )
                ) is not None:
                    if got.last_sequence <= last:
                        continue
                    if got.first_sequence > last + 1:
                        break  # a gap (this reader lagged): catch up from PostgreSQL
                    fresh = got.after(last)
                    assert fresh is not None
                    last = fresh.last_sequence
                    yield fresh


def selected(chunk: LogChunk, query: LogQuery) -> list[LogRecord]:
    """The lines of ``chunk`` that pass the query's level and text filters."""
    records = chunk.records()
    if not query.filtered:
        return records
    return [r for r in records if line_matches(r, query.levels, query.contains)]


async def _next_live(
    live: Subscription, stored_elsewhere: Watch, job_changed: Watch, last: int, origin: str
) -> LogChunk | None:
    """The next live chunk, or None when the reader should look at PostgreSQL again: it
    lagged, another server stored lines past ``last``, the job changed state, or the poll
    interval passed."""
    while True:
        if live.lagging:
            return None
        if not live.queue.empty():
            return live.queue.get_nowait()
        if job_changed.is_set():
            return None
        if stored_elsewhere.is_set():
            stored_elsewhere.clear()
            # "job_id:last_sequence:origin": what this server stored comes through the hub.
            _, _, detail = stored_elsewhere.payload.partition(":")
            through, _, stored_by = detail.partition(":")
            if stored_by != origin and int(through or 0) > last:
                return None
        getter = asyncio.create_task(live.queue.get())
        waiters = [
            getter,
            asyncio.create_task(stored_elsewhere.wait()),
            asyncio.create_task(job_changed.wait()),
        ]
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=FOLLOW_POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        if getter in done and not getter.cancelled():
            return getter.result()
        if not done:
            return None  # the poll interval passed: look again (safety net)
