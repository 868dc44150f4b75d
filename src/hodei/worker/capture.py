"""Turning a job's output into numbered, levelled log lines, sent in bounded chunks.

A line is never cut or merged: output is split on newlines only, however long a line is.
Output is handled a block of lines at a time (what one read of the pipe brought): decoding,
masking and the search for level words run over the whole block in C, and only the rare line
that needs it (invalid UTF-8, a carriage return, a level word) is looked at alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

from hodei.domain.logs import (
    LEVEL_HINTS,
    LogChunk,
    LogLevel,
    LogStream,
    classify_level,
    kind_byte,
    pack_timestamps,
)

SECRET_MASK = "***"
# Lines of a multi-line secret shorter than this ("{", "}", "==") are masked only within it.
MIN_SECRET_PART = 4
READ_CHUNK = 256 * 1024
_INVALID = kind_byte(LogStream.STDOUT, LogLevel.INFO, invalid_utf8=True)


@dataclass(frozen=True)
class BatchLimits:
    """A chunk is sent once it holds this many lines or bytes, or this long after its first
    line. (A single read of a pipe, at most READ_CHUNK plus one line, is never split.)"""

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
    """Replaces secret values with ``***`` in text (a block of lines joined by newlines)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # A secret of several lines (a key file) is masked line for line where it appears
        # whole, so that the text keeps its lines; its lines of at least MIN_PART characters
        # are masked alone too (it may be cut across two reads). Longest first, so a secret
        # that contains another is masked whole.
        wholes: dict[str, str] = {}
        for secret in secrets:
            lines = [line.rstrip("\r") for line in secret.replace("\r\n", "\n").split("\n")]
            if len(lines) == 1:
                if lines[0]:
                    wholes[lines[0]] = SECRET_MASK
                continue
            wholes["\n".join(lines)] = "\n".join(SECRET_MASK if line else "" for line in lines)
            for line in lines:
                if len(line) >= MIN_SECRET_PART:
                    wholes.setdefault(line, SECRET_MASK)
        self._replacements = sorted(wholes.items(), key=lambda item: len(item[0]), reverse=True)

    def mask(self, text: str) -> str:
        for value, mask in self._replacements:
            if value in text:
                text = text.replace(value, mask)
        return text


SendChunk = Callable[[LogChunk], Awaitable[None]]


class LogBatcher:
    """Numbers lines from ``first_sequence`` on and sends them in chunks.

    ``send`` may block (the server is slow): ``add_block`` then blocks too, the pipe readers stop
    reading, and the job blocks on its writes. Nothing is dropped.
    """

    def __init__(
        self,
        send: SendChunk,
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
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._max_bytes = max_bytes
        self._kept_bytes = 0
        self.truncated = False
        # The chunk being filled.
        self._first = first_sequence
        self._texts: list[str] = []
        self._kinds = bytearray()
        self._stamps = array("q")
        self._bytes = 0

    @property
    def last_sequence(self) -> int:
        """The sequence of the last line numbered so far (first_sequence - 1 if none)."""
        return self._next - 1

    async def add(self, stream: LogStream, raw: bytes) -> None:
        """Number one line of output and queue it for sending."""
        await self.add_block(stream, raw)

    async def add_lines(self, stream: LogStream, raws: list[bytes]) -> None:
        """Number lines read together and queue them for sending."""
        if raws:
            await self.add_block(stream, b"\n".join(raws))

    async def add_block(self, stream: LogStream, block: bytes) -> None:
        """Number the lines of ``block`` (complete lines joined by newlines, without the last
        one; they were read together and share a timestamp) and queue them for sending.

        Past ``max_bytes`` (when set) lines are read and dropped, and one last line says so.
        """
        if self.truncated:
            return
        now_us = time.time_ns() // 1000
        kept, notice = self._cap(block) if self._max_bytes else (block, None)
        pieces = []
        if kept is not None:
            if b"\r" in kept:
                kept = b"\n".join(terminal_view(line) for line in kept.split(b"\n"))
            pieces.append(self._encode(stream, kept))
            self._bytes += len(kept)
        if notice is not None:
            pieces.append(self._encode(LogStream.STDERR, notice))
        if not pieces:
            return
        text = "\n".join(text for text, _ in pieces)
        kinds = b"".join(kinds for _, kinds in pieces)
        count = len(kinds)
        async with self._lock:
            self._texts.append(text)
            self._kinds += kinds
            self._stamps.extend(array("q", (now_us,)) * count)
            self._next += count
            limits = self._limits
            if len(self._kinds) >= limits.max_lines or self._bytes >= limits.max_bytes:
                await self._flush_locked()
            elif self._timer is None:
                self._timer = asyncio.create_task(self._flush_later())

    def _cap(self, block: bytes) -> tuple[bytes | None, bytes | None]:
        """The lines of ``block`` the per-job cap leaves (None: none), and the notice line
        once the cap is hit."""
        lines = block.split(b"\n")
        kept = 0
        for line in lines:
            if self._kept_bytes + len(line) > self._max_bytes:
                break
            self._kept_bytes += len(line)
            kept += 1
        if kept == len(lines):
            return block, None
        self.truncated = True
        notice = (
            f"[hodei] WARNING: this job's log reached its limit of {self._max_bytes} "
            "bytes; later output is not kept"
        ).encode()
        return (b"\n".join(lines[:kept]) if kept else None), notice

    def _encode(self, stream: LogStream, block: bytes) -> tuple[str, bytes]:
        """The text of ``block`` and the kind of each of its lines."""
        count = block.count(b"\n") + 1
        base = kind_byte(stream, LogLevel.INFO)
        kinds = bytearray((base,)) * count
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError:
            texts = []
            for i, line in enumerate(block.split(b"\n")):
                try:
                    texts.append(line.decode("utf-8"))
                except UnicodeDecodeError:
                    texts.append(line.decode("utf-8", errors="replace"))
                    kinds[i] |= _INVALID
            text = "\n".join(texts)
        if "\x00" in text:
            # PostgreSQL text cannot hold NUL: show it as the replacement character.
            lines = text.split("\n")
            for i, decoded in enumerate(lines):
                if "\x00" in decoded:
                    lines[i] = decoded.replace("\x00", "\ufffd")
                    kinds[i] |= _INVALID
            text = "\n".join(lines)
        _classify(block, kinds, stream)
        return self._masker.mask(text), bytes(kinds)

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._limits.max_delay)
        async with self._lock:
            self._timer = None
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        if self._timer is not None and self._timer is not asyncio.current_task():
            self._timer.cancel()
            self._timer = None
        if not self._kinds:
            return
        chunk = LogChunk(
            self._first,
            self._attempt,
            "\n".join(self._texts),
            bytes(self._kinds),
            pack_timestamps(self._stamps),
        )
        self._first = self._next
        self._texts, self._kinds, self._stamps, self._bytes = [], bytearray(), array("q"), 0
        await self._send(chunk)

    async def close(self) -> int:
        """Send what is left; returns the last sequence used."""
        async with self._lock:
            await self._flush_locked()
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        return self.last_sequence


def _classify(block: bytes, kinds: bytearray, stream: LogStream) -> None:
    """Set the level of each line of ``block`` that has one besides INFO.

    One search over the whole block finds the lines that could; only those are read alone.
    """
    lowered = block.lower()
    line_index, counted_to, done = 0, 0, -1
    for match in LEVEL_HINTS.finditer(lowered):
        position = match.start()
        line_index += lowered.count(b"\n", counted_to, position)
        counted_to = position
        if line_index == done:
            continue
        done = line_index
        start = lowered.rfind(b"\n", 0, position) + 1
        end = lowered.find(b"\n", position)
        level = classify_level(block[start : end if end >= 0 else len(block)])
        if level is not LogLevel.INFO:
            invalid = kinds[line_index] & _INVALID
            kinds[line_index] = kind_byte(stream, level) | invalid


LineSink = Callable[[LogStream, bytes], Awaitable[None]]


async def pump_lines(reader: asyncio.StreamReader, stream: LogStream, sink: LineSink) -> None:
    """Read a pipe to its end, handing the complete lines of each read to ``sink`` as one block
    (joined by newlines, without the last). A line is never cut, however long."""

    async def chunks() -> AsyncIterator[bytes]:
        while chunk := await reader.read(READ_CHUNK):
            yield chunk

    await pump_chunks(chunks(), stream, sink)


async def pump_chunks(chunks: AsyncIterable[bytes], stream: LogStream, sink: LineSink) -> None:
    """Hand the complete lines of each chunk of a byte stream to ``sink`` as one block (joined by
    newlines, without the last); a line split over chunks is joined first, never cut."""
    parts: list[bytes] = []
    async for chunk in chunks:
        parts.append(chunk)
        if b"\n" not in chunk:
            continue  # a long line still coming: nothing complete yet
        data = b"".join(parts)
        cut = data.rfind(b"\n")
        rest = data[cut + 1 :]
        parts = [rest] if rest else []
        await sink(stream, data[:cut])
    if parts:
        await sink(stream, b"".join(parts))
