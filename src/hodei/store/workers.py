"""Workers in PostgreSQL: one-time tokens, registration, sessions, heartbeats and states."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from psycopg.types.json import Jsonb

from hodei.domain.errors import AuthenticationError
from hodei.domain.placement import RuntimeMix, WorkerProfile
from hodei.domain.providers import ProviderLoad
from hodei.domain.workers import Worker, WorkerInfo, WorkerState
from hodei.store.database import Database

# 32 random bytes: well over the 128 bits a guessable token would need.
_TOKEN_BYTES = 32


def hash_token(token: str) -> bytes:
    """Tokens are stored only as hashes; they are random enough that SHA-256 suffices."""
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Registration:
    worker_id: str
    session_token: str
    provider: str


@dataclass(frozen=True)
class ActiveAttempt:
    """An attempt a worker holds, what it reserves, and whether someone asked to cancel it."""

    job_id: str
    attempt: int
    cpu_cores: float
    memory_mb: int
    cancel_requested: bool


@dataclass(frozen=True)
class SessionWorker:
    """A worker that proved who it is, with the attempts it holds."""

    worker_id: str
    provider: str
    cpu_cores: float
    memory_mb: int
    active: list[ActiveAttempt]


@dataclass(frozen=True)
class QueueStatus:
    jobs_by_state: dict[str, int]
    queue_depth: int
    delayed: int
    ready_workers: int


class WorkerRepository:
    """Reads and writes ``workers`` and ``worker_bootstrap_tokens``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_bootstrap_token(
        self, provider: str, ttl: timedelta, worker_id: str | None = None
    ) -> str:
        """A single-use token a provider passes to the worker it starts (as ``worker_id``)."""
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        await self._db.fetch_all(
            "create_bootstrap_token",
            {
                "token_hash": hash_token(token),
                "provider": provider,
                "worker_id": worker_id,
                "ttl": ttl,
            },
        )
        return token

    async def register(self, otp: str, info: WorkerInfo) -> Registration:
        """Trade a one-time token for a worker id and a session token.

        Raises:
            AuthenticationError: the token is unknown, already used or expired.
        """
        token_hash = hash_token(otp)
        row = await self._db.fetch_one(
            "consume_bootstrap_token", {"token_hash": token_hash, "worker_id": str(uuid.uuid4())}
        )
        if row is None:
            state = await self._db.fetch_one("bootstrap_token_state", {"token_hash": token_hash})
            if state is None:
                raise AuthenticationError("the one-time token is not valid")
            if state["used"]:
                raise AuthenticationError("the one-time token was already used")
            raise AuthenticationError("the one-time token has expired")
        provider, worker_id = row["provider"], str(row["worker_id"])
        secret = secrets.token_urlsafe(_TOKEN_BYTES)
        await self._db.fetch_all(
            "insert_worker",
            {
                "id": worker_id,
                "provider": provider,
                "hostname": info.hostname,
                "arch": info.arch,
                "region": info.region,
                "runtime": info.runtime,
                "cpu_cores": info.cpu_cores,
                "memory_mb": info.memory_mb,
                "gpus": info.gpus,
                "labels": Jsonb(dict(info.labels)),
                "version": info.version,
                "session_token_hash": hash_token(secret),
                "audit_payload": Jsonb(
                    {
                        "provider": provider,
                        "hostname": info.hostname,
                        "runtime": info.runtime,
                        "arch": info.arch,
                        "cpu_cores": info.cpu_cores,
                        "memory_mb": info.memory_mb,
                    }
                ),
            },
        )
        return Registration(worker_id, f"{worker_id}.{secret}", provider)

    async def authenticate(self, session_token: str) -> SessionWorker:
        """The worker a session token belongs to.

        Raises:
            AuthenticationError: the token is malformed, wrong, or its worker was terminated.
        """
        worker_id, _, secret = session_token.partition(".")
        try:
            worker_id = str(uuid.UUID(worker_id))
        except ValueError:
            raise AuthenticationError("the session token is malformed") from None
        row = await self._db.fetch_one(
            "worker_session", {"id": worker_id, "session_token_hash": hash_token(secret)}
        )
        if row is None:
            raise AuthenticationError("the session token is not valid")
        active = await self._db.fetch_all("worker_active_jobs", {"id": worker_id})
        return SessionWorker(
            worker_id=worker_id,
            provider=row["provider"],
            cpu_cores=row["cpu_cores"],
            memory_mb=row["memory_mb"],
            active=[
                ActiveAttempt(
                    str(r["id"]),
                    r["attempt"],
                    r["cpu_cores"],
                    r["memory_mb"],
                    r["cancel_requested"],
                )
                for r in active
            ],
        )

    async def set_state(
        self, worker_id: str, state: WorkerState, *, event_type: str, actor: str, reason: str = ""
    ) -> None:
        """Change a worker's state and audit it."""
        await self._db.fetch_all(
            "set_worker_state",
            {
                "id": worker_id,
                "state": state.value,
                "event_type": event_type,
                "actor": actor,
                "reason": reason,
            },
        )

    async def heartbeat(
        self,
        worker_id: str,
        *,
        lease_ttl: timedelta,
        cpu_percent: float,
        memory_used_mb: int,
        held: Sequence[tuple[str, int]],
    ) -> list[tuple[str, int]]:
        """Record a heartbeat and renew the leases of the attempts the worker says it holds.

        Returns the ones among them that are no longer the worker's to run.
        """
        valid = [(job_id, attempt) for job_id, attempt in held if _is_uuid(job_id)]
        rows = await self._db.fetch_all(
            "worker_heartbeat",
            {
                "id": worker_id,
                "lease_ttl": lease_ttl,
                "cpu_percent": cpu_percent,
                "memory_used_mb": memory_used_mb,
                "running_jobs": len(held),
                "job_ids": [job_id for job_id, _ in valid],
                "attempts": [attempt for _, attempt in valid],
            },
        )
        return [(row["job_id"], row["attempt"]) for row in rows]

    async def live_profiles(self, fresh: timedelta) -> list[WorkerProfile]:
        """The shape of every worker that is not terminated and was heard from within
        ``fresh``."""
        rows = await self._db.fetch_all("live_worker_profiles", {"fresh": fresh})
        return [
            WorkerProfile(
                source=f"worker {row['id']}",
                provider=row["provider"],
                runtime=row["runtime"],
                arch=row["arch"],
                region=row["region"],
                cpu_cores=row["cpu_cores"],
                memory_mb=row["memory_mb"],
                gpus=row["gpus"],
            )
            for row in rows
        ]

    async def provider_load(
        self,
        profile: WorkerProfile,
        worker_ids: Sequence[str],
        *,
        runtimes: RuntimeMix,
        settle: timedelta = timedelta(milliseconds=300),
    ) -> ProviderLoad:
        """What waits for a provider's kind of worker and fits its shape (jobs that waited at
        least ``settle``), and how busy the given workers of it are."""
        rows = await self._db.fetch_all(
            "provider_load",
            {
                "provider": profile.provider,
                "cpu_cores": profile.cpu_cores,
                "memory_mb": profile.memory_mb,
                "gpus": profile.gpus,
                "arch": profile.arch,
                "region": profile.region,
                "ids": [i for i in worker_ids if _is_uuid(i)],
                "process_shapes": Jsonb(runtimes.process_shapes()),
                "settle": settle,
            },
        )
        pending = next((row["jobs"] for row in rows if row["worker_id"] is None), 0)
        workers = [row for row in rows if row["worker_id"] is not None]
        return ProviderLoad(
            pending=pending,
            active={str(row["worker_id"]): row["jobs"] for row in workers},
            ready=frozenset(str(row["worker_id"]) for row in workers if row["state"] == "READY"),
        )

    async def audit_refusal(
        self, worker_id: str, job_id: str, attempt: int, kind: str, reason: str
    ) -> None:
        """WorkerReportRefused: the worker reported on an attempt that is not its own."""
        await self._db.fetch_all(
            "audit_worker_refusal",
            {
                "worker_id": worker_id,
                "job_id": job_id[:64],
                "attempt": attempt,
                "kind": kind,
                "reason": reason,
            },
        )

    async def release_idle(self, worker_id: str, reason: str) -> bool:
        """READY -> DRAINING with WorkerReleased, if the worker holds no job right now."""
        rows = await self._db.fetch_all("release_idle_worker", {"id": worker_id, "reason": reason})
        return bool(rows)

    async def list(self, include_terminated: bool = False) -> list[Worker]:
        """Workers with what they hold right now."""
        rows = await self._db.fetch_all("list_workers", {"include_terminated": include_terminated})
        return [
            Worker(
                id=str(row["id"]),
                provider=row["provider"],
                state=WorkerState(row["state"]),
                info=WorkerInfo(
                    hostname=row["hostname"],
                    arch=row["arch"],
                    runtime=row["runtime"],
                    cpu_cores=row["cpu_cores"],
                    memory_mb=row["memory_mb"],
                    region=row["region"],
                    gpus=row["gpus"],
                    labels=row["labels"],
                    version=row["version"],
                ),
                used_cpu_cores=float(row["used_cpu_cores"]),
                used_memory_mb=int(row["used_memory_mb"]),
                running_jobs=int(row["running_jobs"]),
                registered_at=row["registered_at"],
                last_heartbeat_at=row["last_heartbeat_at"],
                cpu_percent=row["cpu_percent"],
                memory_used_mb=row["memory_used_mb"],
            )
            for row in rows
        ]

    async def queue_status(self) -> QueueStatus:
        """Counts per job state, the runnable queue depth and the ready workers."""
        row = await self._db.fetch_one("queue_status")
        assert row is not None
        return QueueStatus(
            jobs_by_state={k: int(v) for k, v in row["by_state"].items()},
            queue_depth=int(row["queue_depth"]),
            delayed=int(row["delayed"]),
            ready_workers=int(row["ready_workers"]),
        )


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
