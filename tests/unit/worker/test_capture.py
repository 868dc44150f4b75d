from __future__ import annotations

import asyncio

from hodei.domain.logs import LogLevel, LogRecord, LogStream
from hodei.worker.capture import (
    BatchLimits,
    LogBatcher,
    SecretMasker,
    pump_lines,
    terminal_view,
)


def test_carriage_returns_keep_the_last_rewrite() -> None:
    assert terminal_view(b"10%\r50%\r100%") == b"100%"
    assert terminal_view(b"done\r") == b"done"
    assert terminal_view(b"plain") == b"plain"


def test_secrets_are_masked_longest_first() -> None:
    masker = SecretMasker(["abc", "abcdef", ""])
    assert masker.mask("token=abcdef and abc") == "token=*** and ***"


class Collector:
    def __init__(self) -> None:
        self.batches: list[list[LogRecord]] = []

    async def __call__(self, batch: list[LogRecord]) -> None:
        self.batches.append(batch)

    @property
    def lines(self) -> list[LogRecord]:
        return [line for batch in self.batches for line in batch]


async def test_lines_are_numbered_levelled_masked_and_batched_by_size() -> None:
    sent = Collector()
    batcher = LogBatcher(
        sent,
        first_sequence=7,
        attempt=2,
        masker=SecretMasker(["hunter2"]),
        limits=BatchLimits(max_lines=2, max_bytes=1 << 20, max_delay=60),
    )
    await batcher.add(LogStream.STDOUT, b"password is hunter2")
    await batcher.add(LogStream.STDERR, b"ERROR boom")
    assert len(sent.batches) == 1  # full at two lines, sent without waiting for the delay
    await batcher.add(LogStream.STDOUT, b"\xff\xfe not utf-8")
    assert await batcher.close() == 9
    lines = sent.lines
    assert [line.sequence for line in lines] == [7, 8, 9]
    assert lines[0].line == "password is ***"
    assert lines[1].level is LogLevel.ERROR
    assert lines[1].stream is LogStream.STDERR
    assert lines[2].invalid_utf8
    assert lines[2].line.startswith("\ufffd\ufffd")
    assert {line.attempt for line in lines} == {2}


async def test_a_partial_batch_is_sent_after_the_delay() -> None:
    sent = Collector()
    batcher = LogBatcher(
        sent,
        first_sequence=1,
        attempt=1,
        masker=SecretMasker([]),
        limits=BatchLimits(max_lines=100, max_bytes=1 << 20, max_delay=0.01),
    )
    await batcher.add(LogStream.STDOUT, b"one")
    for _ in range(200):
        if sent.batches:
            break
        await asyncio.sleep(0.01)
    assert [line.line for line in sent.lines] == ["one"]
    await batcher.close()


async def feed(chunks: list[bytes]) -> list[bytes]:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    seen: list[bytes] = []

    async def sink(stream: LogStream, raws: list[bytes]) -> None:
        seen.extend(raws)

    await pump_lines(reader, LogStream.STDOUT, sink)
    return seen


async def test_lines_are_split_on_newlines_only_never_cut() -> None:
    huge = b"x" * (3 * 1024 * 1024)
    assert await feed([b"a\nb", b"c\n", huge[:1000], huge[1000:] + b"\n", b"tail"]) == [
        b"a",
        b"bc",
        huge,
        b"tail",
    ]


async def test_empty_lines_are_lines() -> None:
    assert await feed([b"\n\nx\n"]) == [b"", b"", b"x"]
