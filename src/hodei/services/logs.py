"""Reading a job's log: pages, and history followed by live lines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

from hodei.domain.errors import ValidationError
from hodei.domain.logs import LogRecord, line_matches
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

    async def follow(self, query: LogQuery, *, follow: bool) -> AsyncIterator[list[LogRecord]]:
        """Lines after ``query.after_sequence`` in batches: history from PostgreSQL, then (with
        ``follow``) live lines as they are stored, until the job has ended and every line was
        sent. Gapless and without repeats: a live batch that does not continue the sequence
        sends the reader back to PostgreSQL to catch up."""
        job = await self._jobs.get(query.job_id)
        limit = checked_limit(query.limit)
        history = replace(query, job_id=job.id, limit=limit, levels=(), contains="")
        last = query.after_sequence

        def wanted(batch: Sequence[LogRecord]) -> list[LogRecord]:
            return [r for r in batch if line_matches(r, query.levels, query.contains)]

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
                batch = await self._logs.read(replace(history, after_sequence=last))
                if batch:
                    last = batch[-1].sequence
                    if selected := wanted(batch):
                        yield selected
                    if len(batch) == limit:
                        continue
                if ended or not follow:
                    return
                while (
                    got := await _next_live(live, stored_elsewhere, job_changed, last)
                ) is not None:
                    if got[-1].sequence <= last:
                        continue
                    if got[0].sequence > last + 1:
                        break  # a gap (this reader lagged): catch up from PostgreSQL
                    fresh = [r for r in got if r.sequence > last]
                    last = fresh[-1].sequence
                    if selected := wanted(fresh):
                        yield selected


async def _next_live(
    live: Subscription, stored_elsewhere: Watch, job_changed: Watch, last: int
) -> Sequence[LogRecord] | None:
    """The next live batch, or None when the reader should look at PostgreSQL again: it
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
            # "job_id:last_sequence": lines this server stored come through the hub anyway.
            if int(stored_elsewhere.payload.partition(":")[2] or 0) > last:
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
