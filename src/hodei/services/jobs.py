"""Submitting, reading, listing, cancelling and watching jobs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hodei.domain.errors import ConflictError, FailedPreconditionError, ValidationError
from hodei.domain.jobs import Job, parse_job_spec
from hodei.domain.states import JobState
from hodei.scheduler.catalog import CapacityCatalog
from hodei.scheduler.dispatcher import Dispatcher
from hodei.scheduler.sessions import CancelCommand, SessionRegistry
from hodei.store.jobs import AuditEvent, JobFilter, JobRepository, PageCursor, parse_job_id
from hodei.store.notify import JOB_EVENTS_CHANNEL, Notifier

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# How often a follower looks again even without a notification (the safety net).
FOLLOW_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_page_token: str


def encode_page_token(job: Job) -> str:
    raw = json.dumps([job.created_at.isoformat(), job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> PageCursor:
    """The cursor inside a page token, or a ValidationError naming ``page_token``."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created_at, job_id = json.loads(raw)
        return PageCursor(datetime.fromisoformat(created_at), parse_job_id(job_id))
    except (ValueError, TypeError, ValidationError):
        raise ValidationError.single("page_token", "is not a token from a previous page") from None


def state_after(event: AuditEvent) -> JobState | None:
    """The job's state right after one of its audit events, when the event says."""
    if event.event_type == "JobCreated":
        return JobState.PENDING
    if event.event_type == "JobAssigned":
        return JobState.ASSIGNED
    target = event.payload.get("to")
    if event.event_type in ("JobStatusChanged", "JobRetried") and isinstance(target, str):
        return JobState(target)
    return None


class JobService:
    """The job use cases. Callers pass the acting identity as ``actor``."""

    def __init__(
        self,
        jobs: JobRepository,
        catalog: CapacityCatalog,
        dispatcher: Dispatcher,
        sessions: SessionRegistry,
        notifier: Notifier,
        *,
        cancel_grace: timedelta = timedelta(seconds=10),
    ) -> None:
        self._jobs = jobs
        self._catalog = catalog
        self._dispatcher = dispatcher
        self._sessions = sessions
        self._notifier = notifier
        self._cancel_grace = cancel_grace

    async def submit(self, definition: Mapping[str, Any], actor: str) -> str:
        """Validate and queue a job; returns its id.

        A job that no worker or enabled provider could ever run is stored and failed at once,
        with the reason, rather than left waiting forever.

        Raises:
            ValidationError: the definition breaks a rule (nothing is stored).
            FailedPreconditionError: the job needs something this installation lacks.
        """
        spec = parse_job_spec(definition)
        if spec.command_type.needs_container and not await self._catalog.has_container_runtime():
            raise FailedPreconditionError(
                "command_type: DOCKER_EXEC needs a container provider (docker or kubernetes) "
                "and none is enabled; use SHELL, PYTHON or NODE"
            )
        job_id, _ = await self._jobs.insert(spec, actor)
        reason = await self._catalog.unschedulable_reason(spec)
        if reason is not None:
            await self._jobs.end_pending(job_id, JobState.FAILED, actor="system", reason=reason)
        else:
            self._dispatcher.wake()
        return job_id

    async def get(self, job_id: str) -> Job:
        """The job, or NotFoundError."""
        return await self._jobs.get(job_id)

    async def history(
        self, job_filter: JobFilter, page_size: int = 0, page_token: str = ""
    ) -> JobPage:
        """A page of the history, newest first."""
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            raise ValidationError.single(
                "page_size", f"must be between 1 and {MAX_PAGE_SIZE}, got {page_size}"
            )
        size = page_size or DEFAULT_PAGE_SIZE
        after = decode_page_token(page_token) if page_token else None
        jobs = await self._jobs.page(job_filter, size + 1, after)
        token = encode_page_token(jobs[size - 1]) if len(jobs) > size else ""
        return JobPage(jobs[:size], token)

    async def cancel(self, job_id: str, actor: str) -> Job:
        """Cancel a job: a PENDING one at once, an active one by telling its worker.

        Raises:
            NotFoundError: no such job.
            ConflictError: the job already ended.
        """
        job = await self._jobs.get(job_id)
        if job.state == JobState.PENDING and await self._jobs.end_pending(
            job.id, JobState.CANCELLED, actor=actor, request_event="JobCancelled"
        ):
            return await self._jobs.get(job.id)
        held = await self._jobs.request_cancel(job.id, actor)
        if held is None:
            job = await self._jobs.get(job.id)
            if job.state.is_final:
                raise ConflictError(f"job {job.id} already ended: it is {job.state.value}")
            return await self.cancel(job.id, actor)  # it went back to PENDING meanwhile
        # The request is stored: the server that holds the worker's stream (told by NOTIFY, or
        # this one) sends it on, and a worker that reconnects later gets it then.
        attempt, worker_id = held
        self.forward_cancel(job.id, attempt, worker_id)
        return await self._jobs.get(job.id)

    def forward_cancel(self, job_id: str, attempt: int, worker_id: str) -> None:
        """Tell the worker to stop the attempt, if its stream is on this server."""
        session = self._sessions.get(worker_id)
        if session is not None:
            session.send(CancelCommand(job_id, attempt, self._cancel_grace))

    def on_cancel_notification(self, payload: str) -> None:
        """A cancel request stored by any server: ``job_id:attempt:worker_id``."""
        job_id, _, rest = payload.partition(":")
        attempt, _, worker_id = rest.partition(":")
        if attempt.isdigit():
            self.forward_cancel(job_id, int(attempt), worker_id)

    async def events(self, job_id: str) -> list[AuditEvent]:
        """The job's audit trail, oldest first.

        Raises:
            NotFoundError: no such job.
        """
        job = await self._jobs.get(job_id)
        return await self._jobs.events(job.id)

    async def watch(self, job_id: str) -> AsyncIterator[tuple[AuditEvent, JobState | None]]:
        """The job's events so far, then each new one, until the job is in a final state."""
        job = await self._jobs.get(job_id)
        last_id = 0
        with self._notifier.watch(JOB_EVENTS_CHANNEL, job.id) as changed:
            while True:
                changed.clear()
                finished = False
                for event in await self._jobs.events(job.id, last_id):
                    last_id = event.id
                    state = state_after(event)
                    finished = finished or (state is not None and state.is_final)
                    yield event, state
                if finished:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), FOLLOW_POLL_SECONDS)
