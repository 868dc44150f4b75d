"""LogChunk: lines in columns, checked, sliced and turned back into records."""

from __future__ import annotations

import re

import pytest

from hodei.domain.errors import ValidationError
from hodei.domain.logs import LogChunk, LogLevel, LogRecord, LogStream


def records(first: int, *lines: str) -> list[LogRecord]:
    return [
        LogRecord(
            first + i,
            1_700_000_000_123_456_000 + i * 1000,
            LogStream.STDERR if i % 2 else LogStream.STDOUT,
            (LogLevel.INFO, LogLevel.WARN, LogLevel.ERROR)[i % 3],
            line,
            2,
            i == 1,
        )
        for i, line in enumerate(lines)
    ]


def test_records_survive_the_round_trip() -> None:
    original = records(10, "a", "", "tab\there", "ünïcode")
    chunk = LogChunk.of(original)
    chunk.check()
    assert (chunk.first_sequence, chunk.last_sequence, chunk.count) == (10, 13, 4)
    assert chunk.records() == original


def test_one_empty_line_is_a_line() -> None:
    chunk = LogChunk.of(records(1, ""))
    assert chunk.body == ""
    assert chunk.lines() == [""]
    assert [r.line for r in chunk.records()] == [""]


def test_after_and_head_slice_by_sequence() -> None:
    chunk = LogChunk.of(records(10, "a", "b", "c", "d"))
    assert chunk.after(9) is chunk
    tail = chunk.after(11)
    assert tail is not None
    assert [r.sequence for r in tail.records()] == [12, 13]
    assert tail.records() == chunk.records()[2:]
    assert chunk.after(13) is None
    assert chunk.head(2).records() == chunk.records()[:2]
    assert chunk.head(9) is chunk


@pytest.mark.parametrize(
    ("chunk", "problem"),
    [
        (LogChunk(1, 1, "a\nb", b"\x00", bytes(8)), "2 line(s) of text for 1 kind(s)"),
        (LogChunk(1, 1, "a", b"\x00", bytes(7)), "7 timestamp bytes for 1 line(s)"),
        (LogChunk(0, 1, "a", b"\x00", bytes(8)), "first_sequence must be at least 1"),
        (LogChunk(1, 1, "", b"", b""), "at least one line"),
        (LogChunk(1, 1, "a\x00", b"\x00", bytes(8)), "NUL"),
        (LogChunk(1, 1, "a", b"\x06", bytes(8)), "unknown line kind"),
    ],
)
def test_inconsistent_chunks_are_refused_with_the_reason(chunk: LogChunk, problem: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(problem)):
        chunk.check()


def test_all_stdout() -> None:
    assert LogChunk.of(records(1, "a")).all_stdout
    assert not LogChunk.of(records(1, "a", "b")).all_stdout


def test_an_impossible_timestamp_is_refused() -> None:
    far = (2**62).to_bytes(8, "big")
    with pytest.raises(ValidationError, match="before 1970 or after 9999"):
        LogChunk(1, 1, "a", b"\x00", far).check()
    with pytest.raises(ValidationError, match="before 1970 or after 9999"):
        LogChunk(1, 1, "a", b"\x00", (-1).to_bytes(8, "big", signed=True)).check()
