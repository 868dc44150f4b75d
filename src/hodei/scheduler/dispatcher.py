"""Hands PENDING jobs to connected workers as soon as something changes.

Woken in-process when this server stores a job or a worker frees capacity, by NOTIFY when another
server stores one, and by a slow poll as the safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from hodei.background import BackgroundLoop
from hodei.domain.errors import HodeiError
from hodei.domain.placement import NO_RUNTIMES, RuntimeMix
from hodei.scheduler.sessions import SessionRegistry, WorkerSession
from hodei.store.jobs import JobRepository

log = logging.getLogger(__name__)

# At most this many jobs are given to one worker by one claim (one statement).
CLAIM_BATCH = 8


class Dispatcher(BackgroundLoop):
    """Claims jobs for the sessions on this server; one claim is one SQL statement."""

    task_name = "hodei-dispatcher"

    def __init__(
        self,
        jobs: JobRepository,
        sessions: SessionRegistry,
        *,
        lease_ttl: timedelta,
        poll_interval: timedelta = timedelta(seconds=1),
        runtime_mix: Callable[[], Awaitable[RuntimeMix]] | None = None,
    ) -> None:
        self._jobs = jobs
        self._runtime_mix = runtime_mix
        self._sessions = sessions
        self._lease_ttl = lease_ttl
        self._poll = poll_interval.total_seconds()
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """Ask for a dispatch round soon. Cheap; many wakes coalesce into one round."""
        self._wakeup.set()

    def on_notification(self, origin: str) -> None:
        """A job became PENDING somewhere. This server woke itself already for its own."""
        if origin != self._jobs.origin:
            self._wakeup.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._poll)
            self._wakeup.clear()
            try:
                await self.dispatch_round()
            except HodeiError as exc:
                log.warning("dispatch round failed, will retry: %s", exc)

    async def dispatch_round(self) -> int:
        """Claim jobs for the workers in turn until no worker with room gets one.

        The first pass gives each worker at most one job, so that a few jobs spread over the
        workers; later passes (a queue longer than the workers) claim in batches.

        Returns:
            How many jobs were assigned.
        """
        assigned = 0
        exhausted: set[str] = set()
        limit = 1
        mix = await self._runtime_mix() if self._runtime_mix is not None else NO_RUNTIMES
        while True:
            progress = 0
            for session in self._sessions.with_room():
                if session.worker_id in exhausted:
                    continue
                got = await self._claim_for(session, limit, mix)
                if got:
                    progress += got
                else:
                    exhausted.add(session.worker_id)
            if not progress:
                return assigned
            assigned += progress
            limit = CLAIM_BATCH

    async def _claim_for(self, session: WorkerSession, limit: int, mix: RuntimeMix) -> int:
        claimed = await self._jobs.claim_many(
            session.worker_id, self._lease_ttl, limit=limit, runtimes=mix
        )
        if not claimed:
            return 0
        if self._sessions.get(session.worker_id) is not session:
            # The worker went away while we claimed; the leases will run out and free the jobs.
            log.warning(
                "worker %s left while %d job(s) were assigned", session.worker_id, len(claimed)
            )
            return 0
        for one in claimed:
            session.assign(one)
            log.debug(
                "job %s attempt %d assigned to worker %s",
                one.job.id,
                one.job.attempt,
                session.worker_id,
            )
        return len(claimed)
