"""What a worker has to tell the server, kept until the server says it is stored.

Messages go out in order. Started, log batches and results stay here until acknowledged and are
sent again, first, after a reconnect; the server stores them idempotently. When too much waits,
``put`` blocks, and with it the jobs' output: nothing is dropped.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque

from hodei.v1 import worker_pb2

Key = tuple[str, str, int, int]


def ack_key(message: worker_pb2.WorkerMessage) -> Key | None:
    """The key under which a message waits for its acknowledgement (None: it needs none)."""
    kind = message.WhichOneof("body")
    if kind == "started":
        ref = message.started.ref
        return ("started", ref.job_id, ref.attempt, 0)
    if kind == "logs":
        ref = message.logs.ref
        chunk = message.logs.chunk
        return ("logs", ref.job_id, ref.attempt, chunk.first_sequence + len(chunk.kinds) - 1)
    if kind == "result":
        ref = message.result.ref
        return ("result", ref.job_id, ref.attempt, 0)
    return None


def log_bytes(message: worker_pb2.WorkerMessage) -> int:
    """About how much memory a message's log lines take (0 for other messages)."""
    if message.WhichOneof("body") != "logs":
        return 0
    chunk = message.logs.chunk
    return len(chunk.body) + len(chunk.kinds) + len(chunk.timestamps)


class Outbox:
    """An ordered queue of messages with acknowledgement tracking, bounded by count and by the
    bytes of log lines it holds."""

    def __init__(self, max_waiting: int = 512, max_log_bytes: int = 16 * 2**20) -> None:
        self._pending: deque[worker_pb2.WorkerMessage] = deque()
        self._unacked: OrderedDict[Key, worker_pb2.WorkerMessage] = OrderedDict()
        self._max_waiting = max_waiting
        self._max_log_bytes = max_log_bytes
        self._log_bytes = 0
        self._changed = asyncio.Condition()

    def __len__(self) -> int:
        return len(self._pending) + len(self._unacked)

    async def put(self, message: worker_pb2.WorkerMessage, *, urgent: bool = False) -> None:
        """Queue a message; waits while too many are unsent or unacknowledged. An urgent one
        (a heartbeat) goes before everything waiting."""
        weight = log_bytes(message)
        async with self._changed:
            if ack_key(message) is not None:
                await self._changed.wait_for(
                    lambda: len(self) < self._max_waiting and self._log_bytes < self._max_log_bytes
                )
            self._log_bytes += weight
            if urgent:
                self._pending.appendleft(message)
            else:
                self._pending.append(message)
            self._changed.notify_all()

    def unreported_attempts(self) -> set[tuple[str, int]]:
        """Attempts whose result the server has not acknowledged yet: still held."""
        keys = list(self._unacked) + [k for k in map(ack_key, self._pending) if k is not None]
        return {(k[1], k[2]) for k in keys if k[0] == "result"}

    async def take(self) -> worker_pb2.WorkerMessage:
        """The next message to write; it is kept for resending until acknowledged."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._pending))
            message = self._pending.popleft()
            key = ack_key(message)
            if key is not None:
                self._unacked[key] = message
            return message

    async def rewind(self) -> None:
        """After a reconnect: everything unacknowledged goes out again, first, in order."""
        async with self._changed:
            self._pending.extendleft(reversed(self._unacked.values()))
            self._unacked.clear()
            self._changed.notify_all()

    async def acknowledge(self, ack: worker_pb2.Ack) -> None:
        """Forget what the server says it stored."""
        what = ack.WhichOneof("what")
        ref = ack.ref
        async with self._changed:
            if what == "logs_through":
                for key in [
                    k
                    for k in self._unacked
                    if k[:3] == ("logs", ref.job_id, ref.attempt) and k[3] <= ack.logs_through
                ]:
                    self._log_bytes -= log_bytes(self._unacked.pop(key))
            elif what in ("started", "result"):
                self._unacked.pop((what, ref.job_id, ref.attempt, 0), None)
            self._changed.notify_all()

    async def forget(self, job_id: str, attempt: int) -> None:
        """Drop everything about an attempt the server refused as stale."""
        async with self._changed:
            for key in [k for k in self._unacked if k[1:3] == (job_id, attempt)]:
                self._log_bytes -= log_bytes(self._unacked.pop(key))
            kept: deque[worker_pb2.WorkerMessage] = deque()
            for message in self._pending:
                if (ack_key(message) or ("", "", 0, 0))[1:3] == (job_id, attempt):
                    self._log_bytes -= log_bytes(message)
                else:
                    kept.append(message)
            self._pending = kept
            self._changed.notify_all()

    async def delivered(self) -> None:
        """Until every message is written and acknowledged."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self) == 0)
