"""Log lines: streams, levels and how a level is read from a line's text."""

from __future__ import annotations

import re
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import NamedTuple

from hodei.domain.errors import ValidationError


class LogStream(IntEnum):
    STDOUT = 1
    STDERR = 2


class LogLevel(IntEnum):
    INFO = 1
    WARN = 2
    ERROR = 3


_ERROR = re.compile(
    rb"\b(ERROR|ERR|FATAL|CRITICAL|PANIC|Traceback \(most recent call last\)|Exception|"
    rb"[A-Za-z]*Error:)|^error(\[|:)|\berror:",
)
# Every line that either pattern could match contains one of these words, once lowercased.
LEVEL_HINTS = re.compile(rb"err|warn|fatal|crit|panic|trace|exception|deprecat")
_WARN = re.compile(rb"\b(WARN|WARNING|DEPRECATED)\b|\bwarning:|^warn(\[|:)", re.IGNORECASE)


def classify_level(line: bytes) -> LogLevel:
    """Guess a line's level from common patterns: ``ERROR``, ``Traceback``, ``WARN``, ``warning:``.

    Only the first 512 bytes are looked at, so a huge line costs no more than a short one.
    """
    head = line[:512]
    if not LEVEL_HINTS.search(head.lower()):
        return LogLevel.INFO  # most lines: one search for plain words, cheapest in practice
    if _ERROR.search(head):
        return LogLevel.ERROR
    if _WARN.search(head):
        return LogLevel.WARN
    return LogLevel.INFO


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ns(moment: datetime) -> int:
    """Nanoseconds since the Unix epoch (microsecond precision, as PostgreSQL keeps)."""
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


class LogRecord(NamedTuple):
    """One captured line of a job's output.

    A tuple with the time as integer nanoseconds: millions of these pass through a worker and
    a server, and building or converting anything richer per line costs more than the rest.
    """

    sequence: int
    epoch_ns: int
    stream: LogStream
    level: LogLevel
    line: str
    attempt: int = 0
    invalid_utf8: bool = False

    @property
    def timestamp(self) -> datetime:
        return _EPOCH + timedelta(microseconds=self.epoch_ns // 1000)


def line_matches(record: LogRecord, levels: tuple[LogLevel, ...], contains: str) -> bool:
    """The log viewer's filter: one of ``levels`` (all when empty), and ``contains`` as a
    case-insensitive substring (anything when empty)."""
    if levels and record.level not in levels:
        return False
    return not contains or contains.lower() in record.line.lower()


# A line's kind in one byte: bit 0 the stream (set: stderr), bits 1-2 the level (INFO 0, WARN 1,
# ERROR 2), bit 3 set when the raw bytes were not valid UTF-8.
_STDERR_BIT = 0x01
_INVALID_BIT = 0x08
_VALID_KINDS = bytes(
    stream | level << 1 | invalid
    for stream in (0, _STDERR_BIT)
    for level in (0, 1, 2)
    for invalid in (0, _INVALID_BIT)
)
_BIG_ENDIAN = sys.byteorder == "big"
_STREAM_BITS = bytes(kind & _STDERR_BIT for kind in range(256))
_MAX_EPOCH_US = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z


def kind_byte(stream: LogStream, level: LogLevel, invalid_utf8: bool = False) -> int:
    """The one-byte kind of a line (see ``LogChunk.kinds``)."""
    return (
        (_STDERR_BIT if stream == LogStream.STDERR else 0)
        | (level - 1) << 1
        | (_INVALID_BIT if invalid_utf8 else 0)
    )


def pack_timestamps(epoch_us: array[int]) -> bytes:
    """Microseconds since the epoch as big-endian int64s (what PostgreSQL can read back)."""
    if not _BIG_ENDIAN:
        epoch_us = array("q", epoch_us)
        epoch_us.byteswap()
    return epoch_us.tobytes()


def unpack_timestamps(packed: bytes) -> array[int]:
    values = array("q")
    values.frombytes(packed)
    if not _BIG_ENDIAN:
        values.byteswap()
    return values


@dataclass(frozen=True, slots=True)
class LogChunk:
    """Consecutive lines of one attempt, in columns.

    What a worker sends, the server stores as one row, and fast readers receive: building and
    parsing an object per line costs more than everything else a log line goes through, so
    lines travel as one text and two byte strings.
    """

    first_sequence: int
    attempt: int
    # The lines joined by "\n" (a line never holds one: output is split on newlines).
    body: str
    # One byte per line: see ``kind_byte``.
    kinds: bytes
    # One big-endian int64 per line: microseconds since the epoch.
    timestamps: bytes

    @property
    def count(self) -> int:
        return len(self.kinds)

    @property
    def last_sequence(self) -> int:
        return self.first_sequence + len(self.kinds) - 1

    def check(self) -> None:
        """Raises ValidationError if the columns do not describe the same lines."""
        count = len(self.kinds)
        problems = []
        if count == 0:
            problems.append("a log chunk holds at least one line")
        if self.first_sequence < 1:
            problems.append(f"first_sequence must be at least 1, got {self.first_sequence}")
        if len(self.timestamps) != 8 * count:
            problems.append(f"{len(self.timestamps)} timestamp bytes for {count} line(s)")
        elif count and not _plausible(unpack_timestamps(self.timestamps)):
            problems.append("a timestamp is before 1970 or after 9999")
        if self.body.count("\n") != count - 1:
            problems.append(f"{self.body.count(chr(10)) + 1} line(s) of text for {count} kind(s)")
        if "\x00" in self.body:
            problems.append("a log line cannot hold a NUL character")
        if self.kinds.translate(None, _VALID_KINDS):
            problems.append("unknown line kind")
        if problems:
            raise ValidationError.single("logs", "; ".join(problems))

    @property
    def all_stdout(self) -> bool:
        return b"\x01" not in self.kinds.translate(_STREAM_BITS)

    def lines(self) -> list[str]:
        return self.body.split("\n")

    def records(self) -> list[LogRecord]:
        """One record per line (slow: for readers that want lines one by one)."""
        first, attempt = self.first_sequence, self.attempt
        return [
            LogRecord(
                first + i,
                stamp * 1000,
                LogStream.STDERR if kind & _STDERR_BIT else LogStream.STDOUT,
                _LEVELS_BY_BITS[kind >> 1 & 3],
                line,
                attempt,
                bool(kind & _INVALID_BIT),
            )
            for i, (line, kind, stamp) in enumerate(
                zip(self.lines(), self.kinds, unpack_timestamps(self.timestamps), strict=True)
            )
        ]

    def after(self, sequence: int) -> LogChunk | None:
        """The lines after ``sequence``, or None if there are none."""
        if sequence < self.first_sequence:
            return self
        if sequence >= self.last_sequence:
            return None
        skip = sequence - self.first_sequence + 1
        return LogChunk(
            sequence + 1,
            self.attempt,
            self.body.split("\n", skip)[-1],
            self.kinds[skip:],
            self.timestamps[8 * skip :],
        )

    def head(self, count: int) -> LogChunk:
        """The first ``count`` lines."""
        if count >= len(self.kinds):
            return self
        return LogChunk(
            self.first_sequence,
            self.attempt,
            "\n".join(self.body.split("\n", count)[:count]),
            self.kinds[:count],
            self.timestamps[: 8 * count],
        )

    @classmethod
    def of(cls, records: Sequence[LogRecord]) -> LogChunk:
        """The chunk of consecutive records of one attempt."""
        first = records[0]
        for i, record in enumerate(records):
            if record.sequence != first.sequence + i or record.attempt != first.attempt:
                raise ValueError("a chunk's records are consecutive lines of one attempt")
        return cls(
            first.sequence,
            first.attempt,
            "\n".join(r.line for r in records),
            bytes(kind_byte(r.stream, r.level, r.invalid_utf8) for r in records),
            pack_timestamps(array("q", (r.epoch_ns // 1000 for r in records))),
        )


def _plausible(stamps: array[int]) -> bool:
    return min(stamps) >= 0 and max(stamps) <= _MAX_EPOCH_US


_LEVELS_BY_BITS = (LogLevel.INFO, LogLevel.WARN, LogLevel.ERROR, LogLevel.INFO)
