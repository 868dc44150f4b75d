"""Logs end to end: line-exact capture, levels, filters, downloads, live streams that resume,
slow readers, a per-job cap, retention, and no loss across a server restart."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import websockets

from hodei.domain.logs import LogLevel, LogRecord, LogStream, epoch_ns
from hodei.services.workers import WorkerProtocolConfig
from hodei.store.database import Database
from hodei.store.jobs import JobRepository
from hodei.store.logs import LogQuery, LogRepository
from hodei.v1 import jobs_pb2, logs_pb2

from .harness import Running, running_hodei, shell

pytestmark = pytest.mark.integration

PYTHON = jobs_pb2.PYTHON


async def all_lines(hodei: Running, job_id: str, **request: object) -> list[logs_pb2.LogLine]:
    stream = hodei.client.logs.SubscribeLogs(
        logs_pb2.SubscribeLogsRequest(job_id=job_id, **request)  # type: ignore[arg-type]
    )
    return [line async for response in stream for line in response.lines]


async def test_lines_are_kept_exactly(database_url: str) -> None:
    script = "\n".join(
        [
            "import sys",
            "sys.stdout.write('x' * 1_000_000 + '\\n')",
            "sys.stdout.flush()",
            "sys.stdout.buffer.write(b'bad \\xff\\xfe bytes\\n')",
            "sys.stdout.write('10%\\r50%\\r100%\\n')",
            "print('WARN disk almost full')",
            "print('Traceback (most recent call last):', file=sys.stderr)",
            "print('', flush=True)",
            "sys.stdout.write('no newline at the end')",
        ]
    )
    async with running_hodei(database_url) as hodei:
        job_id = await hodei.client.queue(shell(script, command_type=PYTHON))
        assert (await hodei.wait_final(job_id)).state == jobs_pb2.SUCCEEDED
        lines = await all_lines(hodei, job_id)
        # The same log in chunks (what `hodei logs` asks for) and through the SQL view.
        chunks = [c async for c in hodei.client.follow_chunks(job_id, follow=False)]
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cursor = await conn.execute(
                "SELECT sequence, line, level, stream, invalid_utf8 FROM job_logs"
                " WHERE job_id = %s ORDER BY sequence",
                (job_id,),
            )
            rows = await cursor.fetchall()
    assert [r for chunk in chunks for r in chunk.records()] == [
        LogRecord(
            line.sequence,
            line.timestamp.seconds * 10**9 + line.timestamp.nanos,
            LogStream(line.stream),
            LogLevel(line.level),
            line.line,
            line.attempt,
            line.invalid_utf8,
        )
        for line in lines
    ]
    assert rows == [
        (
            line.sequence,
            line.line,
            LogLevel(line.level).name,
            LogStream(line.stream).name.lower(),
            line.invalid_utf8,
        )
        for line in lines
    ]
    by_text = {line.line: line for line in lines[1:]}
    assert [line.sequence for line in lines] == list(range(1, 8))
    assert len(lines[0].line) == 1_000_000  # one line, never cut
    bad = by_text["bad \ufffd\ufffd bytes"]
    assert bad.invalid_utf8
    assert "100%" in by_text
    assert by_text["WARN disk almost full"].level == logs_pb2.WARN
    traceback = next(line for line in lines if line.line.startswith("Traceback"))
    assert (traceback.level, traceback.stream) == (logs_pb2.ERROR, logs_pb2.STDERR)
    assert "" in [line.line for line in lines]
    assert lines[-1].line == "no newline at the end"


async def test_filters_download_and_resume(database_url: str) -> None:
    async with running_hodei(database_url) as hodei:
        job_id = await hodei.client.queue(
            shell("for i in $(seq 1 30); do echo INFO step $i; done; echo ERROR boom; echo done")
        )
        await hodei.wait_final(job_id)
        errors = await all_lines(hodei, job_id, levels=[logs_pb2.ERROR])
        assert [line.line for line in errors] == ["ERROR boom"]
        step = await all_lines(hodei, job_id, contains="STEP 3")
        assert [line.line for line in step] == ["INFO step 3", "INFO step 30"]
        resumed = await all_lines(hodei, job_id, from_sequence=30)
        assert [line.sequence for line in resumed] == [30, 31, 32]
        page = (
            await hodei.http.get(
                f"/api/v1/jobs/{job_id}/logs", params={"level": "ERROR", "q": "boom"}
            )
        ).json()
        assert [line["line"] for line in page["lines"]] == ["ERROR boom"]
        paged = (
            await hodei.http.get(f"/api/v1/jobs/{job_id}/logs", params={"after": 5, "limit": 2})
        ).json()
        assert [line["sequence"] for line in paged["lines"]] == [6, 7]
        download = await hodei.http.get(f"/api/v1/jobs/{job_id}/logs.txt")
        assert download.status_code == 200
        assert "attachment" in download.headers["content-disposition"]
        assert download.text.splitlines()[0] == "INFO step 1"
        assert download.text.splitlines()[-2:] == ["ERROR boom", "done"]


async def test_websocket_streams_live_and_resumes(database_url: str) -> None:
    async with running_hodei(database_url) as hodei:
        job_id = await hodei.client.queue(
            shell("for i in $(seq 1 20); do echo line $i; sleep 0.05; done")
        )
        base = str(hodei.http.base_url).replace("http://", "ws://")
        url = f"{base}/api/v1/jobs/{job_id}/logs/stream"
        seen: list[int] = []
        async with websockets.connect(url) as socket:
            while len(seen) < 5:
                message = json.loads(await socket.recv())
                seen += [line["sequence"] for line in message["lines"]]
        # The connection dropped; resume from the last sequence seen.
        async with websockets.connect(f"{url}?from_sequence={seen[-1] + 1}") as socket:
            while (message := json.loads(await socket.recv()))["type"] == "lines":
                seen += [line["sequence"] for line in message["lines"]]
        assert message == {"type": "end", "state": "SUCCEEDED"}
        assert seen == list(range(1, 21))


@pytest.mark.timeout(120)
async def test_a_slow_reader_slows_nobody_and_misses_nothing(database_url: str) -> None:
    lines = 30_000
    async with running_hodei(database_url) as hodei:
        job_id = await hodei.client.queue(
            shell(f"import sys\nfor i in range({lines}): print(i)", command_type=PYTHON)
        )
        fast_done = asyncio.Event()

        async def read(stalled: bool) -> list[int]:
            request = logs_pb2.SubscribeLogsRequest(job_id=job_id, follow=True)
            got: list[int] = []
            async for response in hodei.client.logs.SubscribeLogs(request):
                got += [int(line.line) for line in response.lines]
                if stalled:
                    # Reads nothing more until the other reader has everything: if it could
                    # hold up ingestion or the other reader, this would never end.
                    await fast_done.wait()
            if not stalled:
                fast_done.set()
            return got

        fast, slow = await asyncio.gather(read(stalled=False), read(stalled=True))
        assert fast == list(range(lines))
        assert slow == list(range(lines))


async def test_a_log_cap_is_said_never_silent(database_url: str) -> None:
    protocol = WorkerProtocolConfig(heartbeat_interval=timedelta(seconds=1), log_limit_bytes=2000)
    async with running_hodei(database_url, protocol=protocol) as hodei:
        job_id = await hodei.client.queue(shell("for i in $(seq 1 1000); do echo line $i; done"))
        job = await hodei.wait_final(job_id)
        assert job.state == jobs_pb2.SUCCEEDED
        assert job.log_truncated
        lines = await all_lines(hodei, job_id)
        assert lines[-1].level == logs_pb2.WARN
        assert "reached its limit of 2000 bytes" in lines[-1].line
        assert sum(len(line.line) for line in lines[:-1]) <= 2000
        rest = (await hodei.http.get(f"/api/v1/jobs/{job_id}")).json()
        assert rest["log_truncated"] is True


async def test_retention_deletes_old_chunks_only(db: Database) -> None:
    jobs, logs = JobRepository(db), LogRepository(db)
    from .test_store import ready_worker, spec

    worker = await ready_worker(db)
    job_id, _ = await jobs.insert(spec(), "t")
    await jobs.claim(worker, timedelta(seconds=30))

    def lines(first: int, count: int) -> list[LogRecord]:
        now = epoch_ns(datetime.now(UTC))
        return [
            LogRecord(i, now, LogStream.STDOUT, LogLevel.INFO, f"{i}", attempt=1)
            for i in range(first, first + count)
        ]

    for first in (1, 3, 5):
        await logs.append(worker_id=worker, job_id=job_id, attempt=1, lines=lines(first, 2))
    # The first two chunks were stored 40 days ago.
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE job_log_chunks SET stored_at = clock_timestamp() - interval '40 days'"
            " WHERE first_sequence < 5"
        )
    assert await logs.delete_older_than(timedelta(days=30), batch=1) == (1, 2)
    assert await logs.delete_older_than(timedelta(days=30), batch=5) == (1, 2)
    assert await logs.delete_older_than(timedelta(days=30), batch=5) == (0, 0)
    kept = await logs.read(LogQuery(job_id))
    assert [line.sequence for line in kept] == [5, 6]


@pytest.mark.timeout(120)
async def test_no_line_is_lost_or_repeated_across_a_server_restart(database_url: str) -> None:
    async with running_hodei(database_url) as hodei:
        job_id = await hodei.client.queue(
            shell("for i in $(seq 1 60); do echo line $i; sleep 0.05; done")
        )

        async def started() -> bool:
            return (await hodei.client.get(job_id)).state == jobs_pb2.RUNNING

        deadline = time.monotonic() + 15
        while not await started():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        await hodei.restart_server(down_for=1.0)
        job = await hodei.wait_final(job_id, seconds=60)
        assert job.state == jobs_pb2.SUCCEEDED
        lines = await all_lines(hodei, job_id)
        assert [line.line for line in lines] == [f"line {i}" for i in range(1, 61)]
        assert [line.sequence for line in lines] == list(range(1, 61))


async def test_a_page_of_one_line_chunks_is_read_whole_and_in_order(db: Database) -> None:
    jobs, logs = JobRepository(db), LogRepository(db)
    from .test_store import ready_worker, spec

    worker = await ready_worker(db)
    job_id, _ = await jobs.insert(spec(), "t")
    await jobs.claim(worker, timedelta(seconds=30))
    now = epoch_ns(datetime.now(UTC))
    for sequence in range(1, 2501):  # a slow job: one line per chunk
        line = LogRecord(sequence, now, LogStream.STDOUT, LogLevel.INFO, f"{sequence}", 1)
        await logs.append(worker_id=worker, job_id=job_id, attempt=1, lines=[line])
    chunks = await logs.read_chunks(job_id, 700, 1000)
    lines = [r.sequence for chunk in chunks for r in chunk.records()]
    assert lines == list(range(701, 1701))
    assert [r.sequence for r in await logs.read(LogQuery(job_id, 2400, 1000))] == list(
        range(2401, 2501)
    )
