"""Log lines: streams, levels and how a level is read from a line's text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum


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
_WARN = re.compile(rb"\b(WARN|WARNING|DEPRECATED)\b|\bwarning:|^warn(\[|:)", re.IGNORECASE)


def classify_level(line: bytes) -> LogLevel:
    """Guess a line's level from common patterns: ``ERROR``, ``Traceback``, ``WARN``, ``warning:``.

    Only the first 512 bytes are looked at, so a huge line costs no more than a short one.
    """
    head = line[:512]
    if _ERROR.search(head):
        return LogLevel.ERROR
    if _WARN.search(head):
        return LogLevel.WARN
    return LogLevel.INFO


@dataclass(frozen=True)
class LogRecord:
    """One captured line of a job's output."""

    sequence: int
    timestamp: datetime
    stream: LogStream
    level: LogLevel
    line: str
    attempt: int = 0
    invalid_utf8: bool = False
