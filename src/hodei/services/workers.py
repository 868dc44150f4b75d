"""The server's side of the worker protocol (DESIGN.md section 5)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hodei.domain.errors import HodeiError
from hodei.domain.logs import LogChunk
from hodei.domain.retries import AttemptOutcome
from hodei.domain.workers import WorkerInfo, WorkerState
from hodei.scheduler.catalog import CapacityCatalog
from hodei.scheduler.dispatcher import Dispatcher
from hodei.scheduler.sessions import (
    AckCommand,
    CancelCommand,
    Reservation,
    RunCommand,
    SessionRegistry,
    WorkerSession,
)
from hodei.services.loghub import LogHub
from hodei.store.jobs import JobRepository
from hodei.store.logs import LogRepository
from hodei.store.metrics import MetricsRepository, ResourceSample
from hodei.store.workers import Registration, WorkerRepository

log = logging.getLogger(__name__)

# What a worker says about an image is cut to this length before it is stored.
MAX_NOTE_CHARS = 500


@dataclass(frozen=True)
class WorkerProtocolConfig:
    """Timings of the worker protocol."""

    heartbeat_interval: timedelta = timedelta(seconds=5)
    lease_ttl: timedelta = timedelta(seconds=30)
    otp_ttl: timedelta = timedelta(minutes=5)
    cancel_grace: timedelta = field(default=timedelta(seconds=10))
    # Keep at most this much of one attempt's output (0: everything); the log says so at the cap.
    log_limit_bytes: int = 0


@dataclass(frozen=True)
class JobOutcome:
    """What a worker reports when an attempt ends."""

    job_id: str
    attempt: int
    outcome: AttemptOutcome
    exit_code: int | None
    error_message: str
    finished_at: datetime
    log_truncated: bool = False


class WorkerService:
    """Registration, sessions and every message a worker sends."""

    def __init__(
        self,
        workers: WorkerRepository,
        jobs: JobRepository,
        logs: LogRepository,
        sessions: SessionRegistry,
        dispatcher: Dispatcher,
        catalog: CapacityCatalog,
        config: WorkerProtocolConfig,
        hub: LogHub,
        metrics: MetricsRepository,
    ) -> None:
        self._workers = workers
        self._jobs = jobs
        self._logs = logs
        self._sessions = sessions
        self._dispatcher = dispatcher
        self._catalog = catalog
        self.config = config
        self._hub = hub
        self._metrics = metrics

    async def register(self, otp: str, info: WorkerInfo) -> Registration:
        """Trade a one-time token for a worker id and session token."""
        registration = await self._workers.register(otp, info)
        self._catalog.invalidate()
        log.info(
            "worker %s registered (provider %s, %s, %g CPU, %d MB)",
            registration.worker_id,
            registration.provider,
            info.hostname,
            info.cpu_cores,
            info.memory_mb,
        )
        return registration

    async def open_session(self, session_token: str) -> WorkerSession:
        """Authenticate a stream and make its worker READY to take jobs.

        A worker that comes back after a break keeps the attempts it holds; cancels asked for
        while it was away are sent to it now.
        """
        worker = await self._workers.authenticate(session_token)
        session = WorkerSession(
            worker_id=worker.worker_id,
            provider=worker.provider,
            cpu_cores=worker.cpu_cores,
            memory_mb=worker.memory_mb,
        )
        for held in worker.active:
            session.active[held.job_id] = Reservation(held.attempt, held.cpu_cores, held.memory_mb)
        # A RunJob may have been lost with the previous stream; the worker ignores a repeat.
        for claimed in await self._jobs.assigned_to(worker.worker_id):
            session.send(RunCommand(claimed))
        for held in worker.active:
            if held.cancel_requested:
                session.send(CancelCommand(held.job_id, held.attempt, self.config.cancel_grace))
        previous = self._sessions.add(session)
        if previous is not None:
            previous.close()
        await self._workers.set_state(
            worker.worker_id,
            WorkerState.READY,
            event_type="WorkerConnected",
            actor=f"worker:{worker.worker_id}",
        )
        self._dispatcher.wake()
        return session

    async def close_session(self, session: WorkerSession, reason: str) -> None:
        """The stream ended: the worker is DISCONNECTED until it comes back (or its leases end)."""
        self._sessions.remove(session)
        if self._sessions.get(session.worker_id) is None and not session.gone:
            await self._workers.set_state(
                session.worker_id,
                WorkerState.DISCONNECTED,
                event_type="WorkerDisconnected",
                actor=f"worker:{session.worker_id}",
                reason=reason,
            )
        self._catalog.invalidate()

    async def report_refused(
        self, session: WorkerSession, job_id: str, attempt: int, kind: str, reason: str
    ) -> None:
        """Audit a report the worker had no right to make (an attempt not, or no longer, its
        own): WorkerReportRefused, with the job as its correlation id."""
        try:
            await self._workers.audit_refusal(
                session.worker_id, job_id, attempt, kind, reason[:MAX_NOTE_CHARS]
            )
        except HodeiError as error:  # the refusal stands; only its record is missing
            log.warning("could not audit a refused %s: %s", kind, error)

    async def drain(self, session: WorkerSession) -> None:
        """The worker takes no new job; it finishes or hands back what it runs."""
        session.draining = True
        await self._workers.set_state(
            session.worker_id,
            WorkerState.DRAINING,
            event_type="WorkerDraining",
            actor=f"worker:{session.worker_id}",
        )

    async def goodbye(self, session: WorkerSession, reason: str) -> None:
        """The worker delivered everything and leaves for good."""
        session.gone = True
        await self._workers.set_state(
            session.worker_id,
            WorkerState.TERMINATED,
            event_type="WorkerTerminated",
            actor=f"worker:{session.worker_id}",
            reason=reason or "the worker left",
        )
        self._catalog.invalidate()
        session.close()

    async def heartbeat(
        self,
        session: WorkerSession,
        *,
        cpu_percent: float,
        memory_used_mb: int,
        held: Sequence[tuple[str, int]],
    ) -> None:
        """Renew the leases of the attempts the worker holds; any of them that is no longer its
        own (reaped while it was away, given to another worker) it must stop at once."""
        superseded = await self._workers.heartbeat(
            session.worker_id,
            lease_ttl=self.config.lease_ttl,
            cpu_percent=cpu_percent,
            memory_used_mb=memory_used_mb,
            held=held,
        )
        session.send(AckCommand(heartbeat=True))
        for job_id, attempt in superseded:
            session.send(CancelCommand(job_id, attempt, timedelta(0)))

    async def job_started(
        self,
        session: WorkerSession,
        job_id: str,
        attempt: int,
        pid: int,
        started_at: datetime,
        *,
        image_pulled: str = "",
        pull_ms: int = 0,
        image_not_applied: str = "",
    ) -> None:
        """ASSIGNED -> RUNNING (fenced by attempt), with the pull of its image or the reason
        its image was not applied."""
        await self._jobs.mark_running(
            worker_id=session.worker_id,
            job_id=job_id,
            attempt=attempt,
            started_at=started_at,
            pid=pid,
            lease_ttl=self.config.lease_ttl,
            image_pulled=image_pulled[:MAX_NOTE_CHARS],
            pull_ms=max(0, pull_ms),
            image_not_applied=image_not_applied[:MAX_NOTE_CHARS],
        )
        session.send(AckCommand(job_id, attempt, started=True))

    async def logs_received(
        self, session: WorkerSession, job_id: str, attempt: int, chunk: LogChunk
    ) -> None:
        """Store a chunk (idempotently), hand it to live readers and acknowledge it."""
        await self._logs.append_chunk(
            worker_id=session.worker_id, job_id=job_id, attempt=attempt, chunk=chunk
        )
        self._hub.publish(job_id, chunk)
        session.send(AckCommand(job_id, attempt, logs_through=chunk.last_sequence))

    async def usage_received(
        self, session: WorkerSession, samples: Sequence[ResourceSample]
    ) -> None:
        """Store CPU and memory samples of the worker's running jobs (not acknowledged)."""
        await self._metrics.store_samples(session.worker_id, samples)

    async def job_finished(self, session: WorkerSession, outcome: JobOutcome) -> None:
        """Record the end of an attempt, free its capacity and acknowledge it."""
        state = await self._jobs.finish(
            worker_id=session.worker_id,
            job_id=outcome.job_id,
            attempt=outcome.attempt,
            outcome=outcome.outcome,
            exit_code=outcome.exit_code,
            error_message=outcome.error_message,
            finished_at=outcome.finished_at,
            log_truncated=outcome.log_truncated,
        )
        session.release(outcome.job_id, outcome.attempt)
        session.send(AckCommand(outcome.job_id, outcome.attempt, result=True))
        self._dispatcher.wake()
        log.debug(
            "job %s attempt %d ended %s (exit code %s)%s",
            outcome.job_id,
            outcome.attempt,
            outcome.outcome.value,
            outcome.exit_code,
            f"; the job is now {state.value}" if state and state.value != outcome.outcome else "",
        )
