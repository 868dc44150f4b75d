"""The workers connected to this server, each with its outbound queue and what it holds."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from hodei.store.jobs import ClaimedJob


@dataclass(frozen=True)
class RunCommand:
    claimed: ClaimedJob


@dataclass(frozen=True)
class CancelCommand:
    job_id: str
    attempt: int
    grace: timedelta


@dataclass(frozen=True)
class AckCommand:
    """What the server stored; exactly one of the fields after ``attempt`` is set."""

    job_id: str = ""
    attempt: int = 0
    logs_through: int | None = None
    result: bool = False
    started: bool = False
    heartbeat: bool = False


@dataclass(frozen=True)
class RejectCommand:
    job_id: str
    attempt: int
    reason: str


Command = RunCommand | CancelCommand | AckCommand | RejectCommand


@dataclass(frozen=True)
class Reservation:
    attempt: int
    cpu_cores: float
    memory_mb: int


@dataclass
class WorkerSession:
    """One worker's live stream on this server."""

    worker_id: str
    provider: str
    cpu_cores: float
    memory_mb: int
    # None tells the stream writer to stop.
    outbox: asyncio.Queue[Command | None] = field(default_factory=asyncio.Queue)
    active: dict[str, Reservation] = field(default_factory=dict)
    draining: bool = False
    gone: bool = False  # said goodbye: terminated, not merely disconnected

    @property
    def free_cpu(self) -> float:
        return self.cpu_cores - sum(r.cpu_cores for r in self.active.values())

    @property
    def free_memory(self) -> int:
        return self.memory_mb - sum(r.memory_mb for r in self.active.values())

    def has_room(self) -> bool:
        """Whether any job at all could still fit (the claim decides which)."""
        return not self.draining and self.free_cpu > 1e-9 and self.free_memory > 0

    def assign(self, claimed: ClaimedJob) -> None:
        """Reserve capacity for a claimed job and queue it for the worker."""
        job = claimed.job
        self.active[job.id] = Reservation(
            job.attempt, job.spec.resources.cpu_cores, job.spec.resources.memory_mb
        )
        self.outbox.put_nowait(RunCommand(claimed))

    def release(self, job_id: str, attempt: int) -> None:
        """Free what an attempt reserved once it ended."""
        reservation = self.active.get(job_id)
        if reservation is not None and reservation.attempt == attempt:
            del self.active[job_id]

    def send(self, command: Command) -> None:
        self.outbox.put_nowait(command)

    def close(self) -> None:
        """Ask the stream writer to end the stream."""
        self.draining = True
        self.outbox.put_nowait(None)


class SessionRegistry:
    """Every worker session on this server, by worker id."""

    def __init__(self) -> None:
        self._sessions: dict[str, WorkerSession] = {}
        self._turn = 0

    def add(self, session: WorkerSession) -> WorkerSession | None:
        """Register a session; returns the one it replaces (a reconnect), if any."""
        previous = self._sessions.get(session.worker_id)
        self._sessions[session.worker_id] = session
        return previous

    def remove(self, session: WorkerSession) -> None:
        """Forget a session unless a newer one for the same worker replaced it."""
        if self._sessions.get(session.worker_id) is session:
            del self._sessions[session.worker_id]

    def get(self, worker_id: str) -> WorkerSession | None:
        return self._sessions.get(worker_id)

    def __len__(self) -> int:
        return len(self._sessions)

    def with_room(self) -> Iterator[WorkerSession]:
        """Sessions that may take a job, starting at a rotating offset to spread the load."""
        sessions = list(self._sessions.values())
        if not sessions:
            return
        self._turn = (self._turn + 1) % len(sessions)
        for session in sessions[self._turn :] + sessions[: self._turn]:
            if session.has_room():
                yield session
