"""Jobs in PostgreSQL: submit, read, list, claim and move through the lifecycle."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from hodei.domain.errors import (
    FailedPreconditionError,
    InvalidTransitionError,
    NotFoundError,
    StaleAttemptError,
    ValidationError,
)
from hodei.domain.jobs import CommandType, Job, JobSpec, Preferences, Priority, Resources
from hodei.domain.placement import NO_RUNTIMES, RuntimeMix
from hodei.domain.retries import AttemptOutcome, RetryPolicy
from hodei.domain.states import JobState, ensure_transition
from hodei.store.database import Database, Row
from hodei.store.secrets import KEY_SETTING, SecretBox, SecretUnreadableError, open_all

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobFilter:
    """What ListJobs narrows the history to."""

    states: tuple[JobState, ...] = ()
    name: str = ""
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True)
class PageCursor:
    """The last job of the previous page (keyset pagination)."""

    created_at: datetime
    job_id: str


@dataclass(frozen=True)
class ClaimedJob:
    """A job just assigned to a worker, with where its log sequence continues."""

    job: Job
    first_sequence: int


@dataclass(frozen=True)
class ReapedAttempt:
    """An attempt the server ended because its worker went silent or missed its deadline."""

    job_id: str
    attempt: int
    worker_id: str
    outcome: AttemptOutcome
    state: JobState


@dataclass(frozen=True)
class AuditEvent:
    id: int
    occurred_at: datetime
    event_type: str
    actor: str
    payload: dict[str, Any]


def parse_job_id(value: str) -> str:
    """A canonical job id, or a ValidationError naming ``job_id``."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise ValidationError.single("job_id", f"is not a job id (a UUID): {value!r}") from None


def is_job_id(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def job_from_row(row: Row) -> Job:
    """Turn a ``jobs`` row into the domain's Job."""
    spec = JobSpec(
        name=row["name"],
        command_type=CommandType(row["command_type"]),
        script=row["script"],
        image=row["image"],
        env=row["env"],
        secret_env=row["secret_env"],
        resources=Resources(
            cpu_cores=row["cpu_cores"],
            memory_mb=row["memory_mb"],
            storage_mb=row["storage_mb"],
            timeout_ms=row["timeout_ms"],
            gpu_required=row["gpu_required"],
            arch=row["arch"],
        ),
        preferences=Preferences(
            provider=row["provider"],
            region=row["region"],
            priority=Priority(row["priority"]),
            allow_retry=row["allow_retry"],
            max_attempts=row["max_attempts"],
        ),
        labels=row["labels"],
    )
    worker_id = row["worker_id"]
    return Job(
        id=str(row["id"]),
        spec=spec,
        state=JobState(row["state"]),
        attempt=row["attempt"],
        worker_id=str(worker_id) if worker_id else None,
        created_at=row["created_at"],
        assigned_at=row["assigned_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        exit_code=row["exit_code"],
        error_message=row["error_message"],
        log_truncated=row["log_truncated"],
        notice=row["notice"],
    )


def _spec_params(spec: JobSpec, secret_env: dict[str, str]) -> dict[str, Any]:
    res, prefs = spec.resources, spec.preferences
    return {
        "name": spec.name,
        "command_type": spec.command_type.value,
        "script": spec.script,
        "image": spec.image,
        "env": Jsonb(dict(spec.env)),
        "secret_env": Jsonb(secret_env),
        "cpu_cores": res.cpu_cores,
        "memory_mb": res.memory_mb,
        "storage_mb": res.storage_mb,
        "timeout_ms": res.timeout_ms,
        "gpu_required": res.gpu_required,
        "arch": res.arch,
        "provider": prefs.provider,
        "region": prefs.region,
        "priority": int(prefs.priority),
        "allow_retry": prefs.allow_retry,
        "max_attempts": prefs.max_attempts,
        "labels": Jsonb(dict(spec.labels)),
    }


class JobRepository:
    """Every read and write of jobs, attempts and their audit events."""

    def __init__(
        self,
        db: Database,
        retry: RetryPolicy | None = None,
        *,
        origin: str = "",
        secrets: SecretBox | None = None,
    ) -> None:
        self._db = db
        self._retry = retry or RetryPolicy()
        # Seals secret values on insert and opens them only for the worker that runs the job.
        self._secrets = secrets
        # Who is writing: the payload of the wake-ups it sends, so it can ignore its own.
        self.origin = origin or str(uuid.uuid4())

    async def insert(self, spec: JobSpec, actor: str) -> tuple[str, datetime]:
        """Store a PENDING job with its JobCreated event; returns (id, created_at).

        Raises:
            FailedPreconditionError: the job has secret variables and there is no key to seal
                them with (they are never stored in clear).
        """
        job_id = str(uuid.uuid4())
        if spec.secret_env and self._secrets is None:
            raise FailedPreconditionError(
                f"secret_env: secret variables need {KEY_SETTING} set on the server "
                "(`hodei up` keeps one in its data directory)"
            )
        sealed = self._secrets.seal_all(job_id, spec.secret_env) if self._secrets else {}
        payload = {
            "name": spec.name,
            "command_type": spec.command_type.value,
            "priority": spec.preferences.priority.name,
            "image": spec.image,
            # Names only: secret values never reach the audit log.
            "secret_env": sorted(spec.secret_env),
        }
        params = _spec_params(spec, sealed) | {
            "id": job_id,
            "actor": actor,
            "audit_payload": Jsonb(payload),
            "origin": self.origin,
        }
        row = await self._db.fetch_one("insert_job", params)
        assert row is not None
        return job_id, row["created_at"]

    async def get(self, job_id: str) -> Job:
        """The job, or NotFoundError."""
        row = await self._db.fetch_one("get_job", {"id": parse_job_id(job_id)})
        if row is None:
            raise NotFoundError(f"job {job_id} does not exist")
        return job_from_row(row)

    async def page(
        self, job_filter: JobFilter, limit: int, after: PageCursor | None = None
    ) -> list[Job]:
        """A page of jobs, newest first."""
        rows = await self._db.fetch_all(
            "list_jobs",
            {
                "states": [s.value for s in job_filter.states] or None,
                "name": job_filter.name or None,
                "created_after": job_filter.created_after,
                "created_before": job_filter.created_before,
                "after_created_at": after.created_at if after else None,
                "after_id": after.job_id if after else None,
                "limit": limit,
            },
        )
        return [job_from_row(row) for row in rows]

    async def end_pending(
        self,
        job_id: str,
        target: JobState,
        *,
        actor: str,
        reason: str = "",
        request_event: str | None = None,
    ) -> bool:
        """Move a PENDING job to CANCELLED or FAILED; False when it was no longer PENDING."""
        ensure_transition(JobState.PENDING, target)
        row = await self._db.fetch_one(
            "end_pending_job",
            {
                "id": parse_job_id(job_id),
                "to": target.value,
                "error_message": reason,
                "actor": actor,
                "request_event": request_event,
                "request_payload": Jsonb({"state": "PENDING"}),
            },
        )
        return row is not None

    async def claim(self, worker_id: str, lease_ttl: timedelta) -> ClaimedJob | None:
        """Assign the best PENDING job that fits the worker, or None when none fits."""
        claimed = await self.claim_many(worker_id, lease_ttl, limit=1)
        return claimed[0] if claimed else None

    async def claim_many(
        self,
        worker_id: str,
        lease_ttl: timedelta,
        *,
        limit: int,
        runtimes: RuntimeMix = NO_RUNTIMES,
    ) -> list[ClaimedJob]:
        """Assign up to ``limit`` of the best PENDING jobs that fit the worker together, in
        queue order (highest priority, then oldest); empty when none fits. ``runtimes`` says
        which kinds of worker exist, for the jobs that prefer one (see ``placement``)."""
        rows = await self._db.fetch_all(
            "claim_jobs",
            {
                "worker_id": worker_id,
                "lease_ttl": lease_ttl,
                "limit": limit,
                "containers_exist": runtimes.containers,
                "process_shapes": Jsonb(runtimes.process_shapes()),
            },
        )
        return await self._revealed(worker_id, rows)

    async def assigned_to(self, worker_id: str) -> list[ClaimedJob]:
        """Attempts given to the worker that it has not reported started."""
        rows = await self._db.fetch_all("worker_assigned_jobs", {"id": worker_id})
        return await self._revealed(worker_id, rows)

    async def _revealed(self, worker_id: str, rows: list[Row]) -> list[ClaimedJob]:
        """The attempts for the worker with their secret values in clear: the one place they
        are opened. An attempt whose secrets do not open fails with the reason instead."""
        claimed = []
        for row in rows:
            job = job_from_row(row)
            try:
                secret_env = open_all(self._secrets, job.id, job.spec.secret_env)
            except SecretUnreadableError as error:
                log.warning("job %s attempt %d: %s", job.id, job.attempt, error)
                await self._fail_attempt(worker_id, job, str(error))
                continue
            spec = dataclasses.replace(job.spec, secret_env=secret_env)
            claimed.append(
                ClaimedJob(
                    job=dataclasses.replace(job, spec=spec),
                    first_sequence=row["last_log_sequence"] + 1,
                )
            )
        return claimed

    async def _fail_attempt(self, worker_id: str, job: Job, reason: str) -> None:
        """End an attempt the worker was never sent; retried or failed as the job allows."""
        await self._finish_attempt(
            worker_id=worker_id,
            job_id=job.id,
            attempt=job.attempt,
            outcome=AttemptOutcome.FAILED,
            exit_code=None,
            error_message=reason,
            finished_at=datetime.now(UTC),
            log_truncated=False,
            actor="system",
        )

    async def mark_running(
        self,
        *,
        worker_id: str,
        job_id: str,
        attempt: int,
        started_at: datetime,
        pid: int,
        lease_ttl: timedelta,
        image_pulled: str = "",
        pull_ms: int = 0,
        image_not_applied: str = "",
    ) -> None:
        """ASSIGNED -> RUNNING. A repeat for the same attempt is a no-op.

        ``image_pulled`` names the image the worker pulled to start it; ``image_not_applied``
        says why the job's image was not used (it ran as a process on the worker's host).

        Raises:
            StaleAttemptError: the attempt is not this worker's current one.
        """
        ensure_transition(JobState.ASSIGNED, JobState.RUNNING)
        row = await self._db.fetch_one(
            "mark_job_running",
            {
                "job_id": job_id,
                "attempt": attempt,
                "worker_id": worker_id,
                "started_at": started_at,
                "pid": pid,
                "lease_ttl": lease_ttl,
                "actor": f"worker:{worker_id}",
                "image_pulled": image_pulled,
                "pull_ms": pull_ms,
                "image_not_applied": image_not_applied,
            },
        )
        if row is None:
            await self._explain_refusal(worker_id, job_id, attempt, started=True)

    async def finish(
        self,
        *,
        worker_id: str,
        job_id: str,
        attempt: int,
        outcome: AttemptOutcome,
        exit_code: int | None,
        error_message: str,
        finished_at: datetime,
        log_truncated: bool = False,
    ) -> JobState | None:
        """Record how this worker's current attempt ended. The job is retried, handed back or
        ended as the retry rule decides; returns its new state, or None for a harmless repeat.

        Raises:
            StaleAttemptError: the attempt is not this worker's current one.
        """
        if outcome is AttemptOutcome.LOST:
            raise InvalidTransitionError("a worker cannot report its own attempt as lost")
        row = await self._finish_attempt(
            worker_id=worker_id,
            job_id=job_id,
            attempt=attempt,
            outcome=outcome,
            exit_code=exit_code,
            error_message=error_message,
            finished_at=finished_at,
            log_truncated=log_truncated,
            actor=f"worker:{worker_id}",
        )
        if row is None:
            await self._explain_refusal(worker_id, job_id, attempt, started=False)
            return None
        return JobState(row["state"])

    async def _finish_attempt(
        self,
        *,
        worker_id: str,
        job_id: str,
        attempt: int,
        outcome: AttemptOutcome,
        exit_code: int | None,
        error_message: str,
        finished_at: datetime,
        log_truncated: bool,
        actor: str,
    ) -> Row | None:
        return await self._db.fetch_one(
            "finish_job",
            {
                "job_id": job_id,
                "attempt": attempt,
                "worker_id": worker_id,
                "outcome": outcome.value,
                "exit_code": exit_code,
                "error_message": error_message,
                "finished_at": finished_at,
                "log_truncated": log_truncated,
                "origin": self.origin,
                "actor": actor,
                "retry_base_s": self._retry.base.total_seconds(),
                "retry_cap_s": self._retry.cap.total_seconds(),
            },
        )

    async def _explain_refusal(
        self, worker_id: str, job_id: str, attempt: int, *, started: bool
    ) -> None:
        """Decide whether an unapplied update was a harmless repeat or a stale attempt.

        A repeat is a message about this worker's attempt that was already applied: a start
        for an attempt that runs or ended, a result for one that ended (except a lost one,
        which another attempt replaced: the worker must hear that it is stale).
        """
        row = await self._db.fetch_one("job_fencing_state", {"job_id": job_id, "attempt": attempt})
        if row is None:
            raise NotFoundError(f"job {job_id} does not exist")
        mine = row["attempt_worker_id"] is not None and str(row["attempt_worker_id"]) == worker_id
        attempt_state = row["attempt_state"]
        already_applied = attempt_state not in ("ASSIGNED", AttemptOutcome.LOST.value) and (
            started or attempt_state != "RUNNING"
        )
        if mine and already_applied:
            return
        raise StaleAttemptError(
            f"attempt {attempt} of job {job_id} is not current on worker {worker_id} "
            f"(the job is {row['state']}, attempt {row['attempt']})"
        )

    async def reap(self, *, timeout_grace: timedelta, limit: int = 100) -> list[ReapedAttempt]:
        """End attempts whose lease ran out or whose deadline passed without a result."""
        rows = await self._db.fetch_all(
            "reap_attempts",
            {
                "timeout_grace_ms": int(timeout_grace.total_seconds() * 1000),
                "origin": self.origin,
                "limit": limit,
                "retry_base_s": self._retry.base.total_seconds(),
                "retry_cap_s": self._retry.cap.total_seconds(),
            },
        )
        return [
            ReapedAttempt(
                job_id=str(row["id"]),
                attempt=row["attempt"],
                worker_id=str(row["lost_worker_id"]),
                outcome=AttemptOutcome(row["outcome"]),
                state=JobState(row["state"]),
            )
            for row in rows
        ]

    async def ping(self) -> None:
        """Wait for PostgreSQL to answer."""
        await self._db.ping()

    async def extend_leases(self, lease_ttl: timedelta) -> None:
        """Give every active attempt a full lease again (after a restart or an outage)."""
        await self._db.fetch_all("extend_leases", {"lease_ttl": lease_ttl})

    async def request_cancel(self, job_id: str, actor: str) -> tuple[int, str] | None:
        """Record a cancel request for an active job: (attempt, worker id), or None when the job
        is not active."""
        row = await self._db.fetch_one(
            "request_cancel", {"id": parse_job_id(job_id), "actor": actor}
        )
        if row is None:
            return None
        return row["attempt"], str(row["worker_id"])

    async def events(self, job_id: str, after_id: int = 0) -> list[AuditEvent]:
        """The job's audit trail after ``after_id``, oldest first."""
        rows = await self._db.fetch_all(
            "job_events", {"job_id": parse_job_id(job_id), "after_id": after_id}
        )
        return [AuditEvent(**row) for row in rows]
