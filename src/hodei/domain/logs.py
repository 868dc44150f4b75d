"""Log lines: streams, levels and how a level is read from a line's text."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import NamedTuple


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
_HINTS = re.compile(rb"err|warn|fatal|crit|panic|trace|exception|deprecat")
_WARN = re.compile(rb"\b(WARN|WARNING|DEPRECATED)\b|\bwarning:|^warn(\[|:)", re.IGNORECASE)


def classify_level(line: bytes) -> LogLevel:
    """Guess a line's level from common patterns: ``ERROR``, ``Traceback``, ``WARN``, ``warning:``.

    Only the first 512 bytes are looked at, so a huge line costs no more than a short one.
    """
    head = line[:512]
    if not _HINTS.search(head.lower()):
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
