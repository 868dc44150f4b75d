"""Live fan-out of log lines to the subscribers on this server.

Each subscriber has a bounded queue. Publishing never waits: when a subscriber's queue is full,
it is marked as lagging and gets nothing more until it has caught up from PostgreSQL, where
every line already is. So a slow reader never slows ingestion or the other readers, and never
misses a line.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterator

from hodei.domain.logs import LogChunk

DEFAULT_QUEUE_BATCHES = 256


class Subscription:
    """One reader's view of a job's live lines."""

    def __init__(self, capacity: int) -> None:
        self.queue: asyncio.Queue[LogChunk] = asyncio.Queue(capacity)
        self.lagging = False

    def offer(self, batch: LogChunk) -> None:
        if self.lagging:
            return
        try:
            self.queue.put_nowait(batch)
        except asyncio.QueueFull:
            self.lagging = True

    def drain(self) -> list[LogChunk]:
        """Everything queued now; clears the lagging mark (the reader catches up itself)."""
        batches = []
        while not self.queue.empty():
            batches.append(self.queue.get_nowait())
        self.lagging = False
        return batches


class LogHub:
    """Subscriptions by job id."""

    def __init__(self, capacity: int = DEFAULT_QUEUE_BATCHES) -> None:
        self._capacity = capacity
        self._subscriptions: defaultdict[str, set[Subscription]] = defaultdict(set)

    def publish(self, job_id: str, batch: LogChunk) -> None:
        """Hand a stored batch to every live reader of the job. Never blocks."""
        for subscription in self._subscriptions.get(job_id, ()):
            subscription.offer(batch)

    @contextlib.contextmanager
    def subscribe(self, job_id: str) -> Iterator[Subscription]:
        subscription = Subscription(self._capacity)
        self._subscriptions[job_id].add(subscription)
        try:
            yield subscription
        finally:
            subscribers = self._subscriptions.get(job_id)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscriptions[job_id]

    def subscriber_count(self, job_id: str) -> int:
        return len(self._subscriptions.get(job_id, ()))
