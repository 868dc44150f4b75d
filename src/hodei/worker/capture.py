"""Turning a job's output into numbered, levelled log lines, sent in bounded batches.

A line is never cut or merged: output is split on newlines only, however long a line is.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

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
        max_bytes: int = 0,
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
        self._max_bytes = max_bytes
        self._kept_bytes = 0
        self.truncated = False

    @property
    def last_sequence(self) -> int:
        """The sequence of the last line numbered so far (first_sequence - 1 if none)."""
        return self._next - 1

    async def add(self, stream: LogStream, raw: bytes) -> None:
        """Number one line of output and queue it for sending."""
        await self.add_lines(stream, [raw])

    async def add_lines(self, stream: LogStream, raws: list[bytes]) -> None:
        """Number lines read together (they share a timestamp) and queue them for sending.

        Past ``max_bytes`` (when set) lines are read and dropped, and one last line says so.
        """
        now = time.time_ns()
        records: list[LogRecord] = []
        size = 0
        for raw in raws:
            if self.truncated:
                break
            record = self._record(stream, terminal_view(raw), now)
            records.append(record)
            size += len(record.line)
        async with self._lock:
            self._batch.extend(records)
            self._bytes += size
            full = (
                len(self._batch) >= self._limits.max_lines or self._bytes >= self._limits.max_bytes
            )
            if full:
                await self._flush_locked()
            elif self._timer is None and self._batch:
                self._timer = asyncio.create_task(self._flush_later())

    def _record(self, stream: LogStream, raw: bytes, now: int) -> LogRecord:
        if self._max_bytes and self._kept_bytes + len(raw) > self._max_bytes:
            self.truncated = True
            stream = LogStream.STDERR
            raw = (
                f"[hodei] WARNING: this job's log reached its limit of {self._max_bytes} "
                "bytes; later output is not kept"
            ).encode()
        self._kept_bytes += len(raw)
        try:
            text, invalid = raw.decode("utf-8"), False
        except UnicodeDecodeError:
            text, invalid = raw.decode("utf-8", errors="replace"), True
        if "\x00" in text:
            # PostgreSQL text cannot hold NUL: show it as the replacement character.
            text, invalid = text.replace("\x00", "\ufffd"), True
        self._next += 1
        return LogRecord(
            self._next - 1,
            now,
            stream,
            classify_level(raw),
            self._masker.mask(text),
            self._attempt,
            invalid,
        )

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


LineSink = Callable[[LogStream, list[bytes]], Awaitable[None]]


async def pump_lines(reader: asyncio.StreamReader, stream: LogStream, sink: LineSink) -> None:
    """Read a pipe to its end, handing the complete lines of each read (without their newlines)
    to ``sink``. A line is never cut, however long."""
    parts: list[bytes] = []
    while chunk := await reader.read(READ_CHUNK):
        parts.append(chunk)
        if b"\n" not in chunk:
            continue  # a long line still coming: nothing complete yet
        *lines, rest = b"".join(parts).split(b"\n")
        parts = [rest] if rest else []
        await sink(stream, lines)
    if parts:
        await sink(stream, [b"".join(parts)])
