from __future__ import annotations

import asyncio

from hodei.domain.logs import LogChunk, LogLevel, LogRecord, LogStream
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
        self.batches: list[LogChunk] = []

    async def __call__(self, chunk: LogChunk) -> None:
        chunk.check()
        self.batches.append(chunk)

    @property
    def lines(self) -> list[LogRecord]:
        return [line for chunk in self.batches for line in chunk.records()]


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

    async def sink(stream: LogStream, block: bytes) -> None:
        seen.extend(block.split(b"\n"))

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


def batcher_for(sent: Collector, **options: object) -> LogBatcher:
    limits = BatchLimits(max_lines=1000, max_bytes=1 << 20, max_delay=60)
    return LogBatcher(
        sent,
        first_sequence=1,
        attempt=1,
        masker=SecretMasker(options.pop("secrets", [])),  # type: ignore[arg-type]
        limits=limits,
        **options,  # type: ignore[arg-type]
    )


async def test_a_block_is_classified_line_by_line_only_where_a_level_word_appears() -> None:
    sent = Collector()
    batcher = batcher_for(sent)
    block = b"\n".join(
        [b"plain", b"WARNING: disk", b"ok", b"Traceback (most recent call last):", b"error-free"]
    )
    await batcher.add_block(LogStream.STDOUT, block)
    await batcher.close()
    levels = [line.level for line in sent.lines]
    assert levels == [LogLevel.INFO, LogLevel.WARN, LogLevel.INFO, LogLevel.ERROR, LogLevel.INFO]


async def test_bad_bytes_nul_and_carriage_returns_are_handled_per_line_within_a_block() -> None:
    sent = Collector()
    batcher = batcher_for(sent)
    await batcher.add_block(LogStream.STDERR, b"good\n\xffbad\nnul\x00here\n10%\r100%")
    await batcher.close()
    lines = sent.lines
    assert [line.line for line in lines] == ["good", "\ufffdbad", "nul\ufffdhere", "100%"]
    assert [line.invalid_utf8 for line in lines] == [False, True, True, False]
    assert {line.stream for line in lines} == {LogStream.STDERR}
    assert [line.sequence for line in lines] == [1, 2, 3, 4]


async def test_a_secret_of_several_lines_is_masked_line_by_line() -> None:
    sent = Collector()
    batcher = batcher_for(sent, secrets=["first-half\nsecond-half"])
    await batcher.add_block(LogStream.STDOUT, b"a first-half\nsecond-half b")
    await batcher.close()
    assert [line.line for line in sent.lines] == ["a ***", "*** b"]


async def test_the_size_cap_keeps_whole_lines_and_says_so() -> None:
    sent = Collector()
    batcher = batcher_for(sent, max_bytes=10)
    await batcher.add_block(LogStream.STDOUT, b"12345\n1234\n123")
    await batcher.add_block(LogStream.STDOUT, b"dropped")
    await batcher.close()
    lines = sent.lines
    assert [line.line for line in lines[:2]] == ["12345", "1234"]
    assert "reached its limit of 10 bytes" in lines[2].line
    assert (lines[2].stream, lines[2].level) == (LogStream.STDERR, LogLevel.WARN)
    assert len(lines) == 3
    assert batcher.truncated


async def test_many_blocks_make_one_chunk_until_a_limit() -> None:
    sent = Collector()
    batcher = LogBatcher(
        sent,
        first_sequence=5,
        attempt=3,
        masker=SecretMasker([]),
        limits=BatchLimits(max_lines=4, max_bytes=1 << 20, max_delay=60),
    )
    await batcher.add_block(LogStream.STDOUT, b"a\nb")
    await batcher.add_block(LogStream.STDERR, b"c")
    assert sent.batches == []
    await batcher.add_block(LogStream.STDOUT, b"d\ne")
    [chunk] = sent.batches
    assert (chunk.first_sequence, chunk.last_sequence, chunk.attempt) == (5, 9, 3)
    assert chunk.lines() == ["a", "b", "c", "d", "e"]
    assert [r.stream for r in chunk.records()][2] is LogStream.STDERR
    assert await batcher.close() == 9


def test_a_multi_line_secret_is_masked_where_it_appears_not_its_short_lines_elsewhere() -> None:
    masker = SecretMasker(['{\n  "type": "sa",\n  "key": "s3cr3t"\n}'])
    text = '{\n  "type": "sa",\n  "key": "s3cr3t"\n}\nother {\n}'
    assert masker.mask(text) == "***\n***\n***\n***\nother {\n}"
    assert masker.mask('  "key": "s3cr3t"') == "***"  # a long enough line of it, alone


def test_a_secret_with_windows_line_ends_is_masked_in_output_without_them() -> None:
    masker = SecretMasker(["-----BEGIN KEY-----\r\nMIIabcdef\r\n-----END KEY-----"])
    assert masker.mask("MIIabcdef") == "***"
    assert masker.mask("-----BEGIN KEY-----\nMIIabcdef\n-----END KEY-----") == "***\n***\n***"
