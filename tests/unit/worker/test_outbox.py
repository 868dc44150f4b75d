"""The outbox keeps what the server has not acknowledged, and holds the jobs back when too
much of it is waiting (by count and by bytes of log lines)."""

from __future__ import annotations

import asyncio

from hodei.api.grpc.convert import chunk_to_proto
from hodei.domain.logs import LogChunk, LogLevel, LogRecord, LogStream
from hodei.v1 import worker_pb2
from hodei.worker.outbox import Outbox, log_bytes

JOB = "00000000-0000-0000-0000-000000000001"


def logs(first: int, text: str) -> worker_pb2.WorkerMessage:
    record = LogRecord(first, 0, LogStream.STDOUT, LogLevel.INFO, text, 1)
    chunk = chunk_to_proto(LogChunk.of([record]))
    ref = worker_pb2.AttemptRef(job_id=JOB, attempt=1)
    return worker_pb2.WorkerMessage(logs=worker_pb2.LogBatch(ref=ref, chunk=chunk))


async def test_put_waits_while_too_many_log_bytes_wait_and_resumes_on_ack() -> None:
    outbox = Outbox(max_log_bytes=1000)
    await outbox.put(logs(1, "x" * 600))
    await outbox.put(logs(2, "y" * 600))  # the bound is checked before adding: admitted
    third = asyncio.create_task(outbox.put(logs(3, "z")))
    await asyncio.sleep(0.05)
    assert not third.done()  # 1,218 bytes wait: the job's output is held back
    for _ in range(2):
        await outbox.take()
    await outbox.acknowledge(
        worker_pb2.Ack(ref=worker_pb2.AttemptRef(job_id=JOB, attempt=1), logs_through=2)
    )
    await asyncio.wait_for(third, 1)
    assert len(outbox) == 1


async def test_a_resend_after_a_reconnect_keeps_the_order_and_the_byte_count() -> None:
    outbox = Outbox()
    first, second = logs(1, "one"), logs(2, "two")
    await outbox.put(first)
    await outbox.put(second)
    assert await outbox.take() == first
    await outbox.rewind()
    assert [await outbox.take(), await outbox.take()] == [first, second]
    await outbox.forget(JOB, 1)
    assert len(outbox) == 0
    assert outbox._log_bytes == 0
    assert log_bytes(first) == 3 + 1 + 8
