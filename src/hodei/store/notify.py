"""One LISTEN connection per process that wakes in-process waiters on PostgreSQL NOTIFY.

Notifications only say "look again": every waiter re-reads the database, so a notification that
is lost (for example while reconnecting) costs latency, never correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

JOBS_CHANNEL = "hodei_jobs"
JOB_EVENTS_CHANNEL = "hodei_job_events"
LOGS_CHANNEL = "hodei_logs"
CANCELS_CHANNEL = "hodei_cancels"
PROVIDERS_CHANNEL = "hodei_providers"
TOKENS_CHANNEL = "hodei_tokens"  # a token was revoked: servers forget what they cached
CHANNELS = (
    JOBS_CHANNEL,
    JOB_EVENTS_CHANNEL,
    LOGS_CHANNEL,
    CANCELS_CHANNEL,
    PROVIDERS_CHANNEL,
    TOKENS_CHANNEL,
)


class Watch:
    """Set whenever its channel carries its key; ``payload`` is the latest full payload."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.payload = ""

    def notify(self, payload: str) -> None:
        self.payload = payload
        self._event.set()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()


class Notifier:
    """Listens on the Hodei channels and wakes whoever waits on a (channel, payload)."""

    def __init__(self, conninfo: str, *, reconnect_delay: float = 0.5) -> None:
        self._conninfo = conninfo
        self._reconnect_delay = reconnect_delay
        self._events: defaultdict[tuple[str, str], set[Watch]] = defaultdict(set)
        self._callbacks: defaultdict[str, list[Callable[[str], None]]] = defaultdict(list)
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def start(self) -> None:
        """Start listening; returns once the first LISTEN is in place (or after 10 s)."""
        self._task = asyncio.create_task(self._run(), name="hodei-notifier")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout=10)

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def on(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(payload)`` for every notification on ``channel`` (and on reconnect)."""
        self._callbacks[channel].append(callback)

    @contextlib.contextmanager
    def watch(self, channel: str, key: str) -> Iterator[Watch]:
        """Set whenever ``channel`` carries ``key`` (a payload ``key`` or ``key:detail``), and
        after a reconnect."""
        event = Watch()
        self._events[(channel, key)].add(event)
        try:
            yield event
        finally:
            waiters = self._events.get((channel, key))
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._events[(channel, key)]

    def _deliver(self, channel: str, payload: str) -> None:
        key = payload.partition(":")[0]
        for watch in self._events.get((channel, key), ()):
            watch.notify(payload)
        for callback in self._callbacks.get(channel, ()):
            callback(payload)

    def _wake_everyone(self) -> None:
        for waiters in self._events.values():
            for event in waiters:
                event.set()
        for callbacks in self._callbacks.values():
            for callback in callbacks:
                callback("")

    async def _run(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                ) as conn:
                    for channel in CHANNELS:
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self._connected.set()
                    self._wake_everyone()
                    async for notification in conn.notifies():
                        self._deliver(notification.channel, notification.payload)
            except psycopg.Error as exc:
                log.warning("LISTEN connection lost (%s); reconnecting", exc)
            self._connected.clear()
            await asyncio.sleep(self._reconnect_delay)
