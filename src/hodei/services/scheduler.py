"""What the queue and the workers look like right now."""

from __future__ import annotations

from hodei.domain.states import JobState
from hodei.domain.workers import Worker
from hodei.store.workers import QueueStatus, WorkerRepository


class SchedulerService:
    """Read-only views of the scheduler."""

    def __init__(self, workers: WorkerRepository) -> None:
        self._workers = workers

    async def queue_status(self) -> QueueStatus:
        """Counts per state (every state present), queue depth, delayed jobs, ready workers."""
        status = await self._workers.queue_status()
        by_state = {state.value: 0 for state in JobState} | status.jobs_by_state
        return QueueStatus(by_state, status.queue_depth, status.delayed, status.ready_workers)

    async def workers(self, include_terminated: bool = False) -> list[Worker]:
        """Registered workers, oldest first."""
        return await self._workers.list(include_terminated)
