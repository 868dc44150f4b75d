"""Turning a job's output into numbered, levelled log lines, sent in bounded batches.

A line is never cut or merged: output is split on newlines only, however long a line is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from hodei.domain.logs import LogRecord, LogStream, classify_level

SECRET_MASK = "***"
READ_CHUNK = 256 * 1024


@dataclass(frozen=True)
class BatchLimits:
    """A batch is sent when it holds this many lines or bytes, or this long after its first."""

    max_lines: int = 1000
    max_bytes: int = 512 * 1024
    max_delay: float = 0.05


def terminal_view(raw: bytes) -> bytes:
    """What a terminal ends up showing for a line with carriage returns: the last rewrite."""
    if b"\r" not in raw:
        return raw
    stripped = raw.rstrip(b"\r")
    return stripped.rsplit(b"\r", 1)[-1]


class SecretMasker:
    """Replaces secret values with ``***`` in text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._values = sorted({s for s in secrets if s}, key=len, reverse=True)

    def mask(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, SECRET_MASK)
        return text


SendBatch = Callable[[list[LogRecord]], Awaitable[None]]


class LogBatcher:
    """Numbers lines from ``first_sequence`` on and sends them in batches.

    ``send`` may block (the server is slow): ``add`` then blocks too, the pipe readers stop
    reading, and the job blocks on its writes. Nothing is dropped.
    """

    def __init__(
        self,
        send: SendBatch,
        *,
        first_sequence: int,
        attempt: int,
        masker: SecretMasker,
        limits: BatchLimits = BatchLimits(),
    ) -> None:
        self._send = send
        self._next = first_sequence
        self._attempt = attempt
        self._masker = masker
        self._limits = limits
        self._batch: list[LogRecord] = []
        self._bytes = 0
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None

    @property
    def last_sequence(self) -> int:
        """The sequence of the last line numbered so far (first_sequence - 1 if none)."""
        return self._next - 1

    async def add(self, stream: LogStream, raw: bytes) -> None:
        """Number one line of output and queue it for sending."""
        raw = terminal_view(raw)
        try:
            text, invalid = raw.decode("utf-8"), False
        except UnicodeDecodeError:
            text, invalid = raw.decode("utf-8", errors="replace"), True
        record = LogRecord(
            sequence=self._next,
            timestamp=datetime.now(UTC),
            stream=stream,
            level=classify_level(raw),
            line=self._masker.mask(text),
            attempt=self._attempt,
            invalid_utf8=invalid,
        )
        self._next += 1
        async with self._lock:
            self._batch.append(record)
            self._bytes += len(raw)
            full = (
                len(self._batch) >= self._limits.max_lines or self._bytes >= self._limits.max_bytes
            )
            if full:
                await self._flush_locked()
            elif self._timer is None:
                self._timer = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._limits.max_delay)
        async with self._lock:
            self._timer = None
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        if self._timer is not None and self._timer is not asyncio.current_task():
            self._timer.cancel()
            self._timer = None
        if not self._batch:
            return
        batch, self._batch, self._bytes = self._batch, [], 0
        await self._send(batch)

    async def close(self) -> int:
        """Send what is left; returns the last sequence used."""
        async with self._lock:
            await self._flush_locked()
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        return self.last_sequence


LineSink = Callable[[LogStream, bytes], Awaitable[None]]


async def pump_lines(reader: asyncio.StreamReader, stream: LogStream, sink: LineSink) -> None:
    """Read a pipe to its end, handing each complete line (without its newline) to ``sink``."""
    pending = bytearray()
    while chunk := await reader.read(READ_CHUNK):
        pending += chunk
        start = 0
        while (newline := pending.find(b"\n", start)) != -1:
            await sink(stream, bytes(pending[start:newline]))
            start = newline + 1
        del pending[:start]
    if pending:
        await sink(stream, bytes(pending))
