"""Ends attempts nobody will report on: the lease ran out (worker lost) or the deadline passed.

Safe with several servers: each reap is one SKIP LOCKED statement.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from hodei.background import BackgroundLoop
from hodei.domain.errors import HodeiError
from hodei.domain.retries import AttemptOutcome
from hodei.scheduler.dispatcher import Dispatcher
from hodei.scheduler.sessions import CancelCommand, SessionRegistry
from hodei.store.jobs import JobRepository

log = logging.getLogger(__name__)


class Reaper(BackgroundLoop):
    """Looks for lost and overdue attempts every ``interval``."""

    task_name = "hodei-reaper"

    def __init__(
        self,
        jobs: JobRepository,
        sessions: SessionRegistry,
        dispatcher: Dispatcher,
        *,
        lease_ttl: timedelta,
        timeout_grace: timedelta,
        interval: timedelta = timedelta(seconds=1),
    ) -> None:
        self._jobs = jobs
        self._sessions = sessions
        self._dispatcher = dispatcher
        self._lease_ttl = lease_ttl
        self._timeout_grace = timeout_grace
        self._interval = interval.total_seconds()
        # True while PostgreSQL is unreachable: nobody could renew a lease meanwhile.
        self._outage = True
        self._last_pass = time.monotonic()

    async def _run(self) -> None:
        while True:
            try:
                await self.reap_once()
            except HodeiError as exc:
                if not self._outage:
                    log.warning("cannot look for lost attempts: %s", exc)
                self._outage = True
            await asyncio.sleep(self._interval)

    async def reap_once(self) -> int:
        """One pass; returns how many attempts were ended."""
        await self._jobs.ping()
        # A pass that could not run on time means PostgreSQL was away (the pool may wait for a
        # connection instead of failing): treat it as an outage too.
        if time.monotonic() - self._last_pass > 2 * self._interval + 1:
            self._outage = True
        if self._outage:
            # Workers could not renew their leases while no server reached PostgreSQL (this
            # one starting, or the database away): give every attempt a full lease first.
            await self._jobs.extend_leases(self._lease_ttl)
            self._outage = False
        reaped = await self._jobs.reap(timeout_grace=self._timeout_grace)
        self._last_pass = time.monotonic()
        for attempt in reaped:
            log.warning(
                "job %s attempt %d on worker %s: %s; the job is now %s",
                attempt.job_id,
                attempt.attempt,
                attempt.worker_id,
                "lost (lease expired)" if attempt.outcome is AttemptOutcome.LOST else "overdue",
                attempt.state.value,
            )
            session = self._sessions.get(attempt.worker_id)
            if session is not None:
                session.release(attempt.job_id, attempt.attempt)
                # If the worker is still there, it must stop the attempt: it is no longer current.
                session.send(CancelCommand(attempt.job_id, attempt.attempt, timedelta(0)))
        if reaped:
            self._dispatcher.wake()
        return len(reaped)
