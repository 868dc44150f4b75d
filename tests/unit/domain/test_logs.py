from __future__ import annotations

import pytest

from hodei.domain.logs import LogLevel, classify_level


@pytest.mark.parametrize(
    ("line", "level"),
    [
        (b"Processing batch 1/60...", LogLevel.INFO),
        (b"Step 1/5 completed", LogLevel.INFO),
        (b"ERROR: disk full", LogLevel.ERROR),
        (b"2024-01-01 12:00:00 ERROR something broke", LogLevel.ERROR),
        (b"Traceback (most recent call last):", LogLevel.ERROR),
        (b"ValueError: bad value", LogLevel.ERROR),
        (b"error: could not compile", LogLevel.ERROR),
        (b"FATAL: out of memory", LogLevel.ERROR),
        (b"WARN low disk", LogLevel.WARN),
        (b"[WARNING] deprecated option", LogLevel.WARN),
        (b"warning: unused variable", LogLevel.WARN),
        (b"no warnings here", LogLevel.INFO),
        (b"errors=0 reported", LogLevel.INFO),
    ],
)
def test_level_is_read_from_common_patterns(line: bytes, level: LogLevel) -> None:
    assert classify_level(line) is level


def test_only_the_head_of_a_huge_line_is_read() -> None:
    assert classify_level(b"x" * 10_000 + b" ERROR") is LogLevel.INFO
