"""Deletes log lines older than the retention period, in small batches, in the background."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from hodei.background import BackgroundLoop
from hodei.domain.errors import HodeiError
from hodei.store.logs import LogRepository

log = logging.getLogger(__name__)

# Chunks per statement (a chunk holds up to about a thousand lines).
BATCH = 100
SAMPLES_BATCH = 10_000


class LogRetention(BackgroundLoop):
    """Every ``interval``, removes lines older than ``keep`` (batch by batch)."""

    task_name = "hodei-log-retention"

    def __init__(
        self,
        logs: LogRepository,
        *,
        keep: timedelta,
        interval: timedelta = timedelta(minutes=10),
    ) -> None:
        self._logs = logs
        self._keep = keep
        self._interval = interval.total_seconds()

    async def _run(self) -> None:
        while True:
            try:
                deleted = await self.purge()
                if deleted:
                    log.info("deleted %d log line(s) older than %s", deleted, self._keep)
            except HodeiError as exc:
                log.warning("log retention pass failed, will retry: %s", exc)
            await asyncio.sleep(self._interval)

    async def purge(self) -> int:
        """Delete everything older than the retention period; returns how many lines."""
        total = 0
        while True:
            chunks, lines = await self._logs.delete_older_than(self._keep, BATCH)
            total += lines
            if chunks < BATCH:
                break
            await asyncio.sleep(0)  # let appends and everything else in between batches
        # Jobs' CPU and memory samples go with their logs.
        while True:
            samples = await self._logs.delete_samples_older_than(self._keep, SAMPLES_BATCH)
            if samples < SAMPLES_BATCH:
                return total
            await asyncio.sleep(0)
