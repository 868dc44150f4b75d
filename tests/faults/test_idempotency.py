"""Idempotency: a duplicated result, log batch or start (as a worker resends after a reconnect)
changes nothing the second time, and is acknowledged again so that the worker can forget it."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from hodei.api.grpc.convert import chunk_to_proto
from hodei.domain.jobs import parse_job_spec
from hodei.domain.logs import LogChunk, LogLevel, LogRecord, LogStream
from hodei.domain.retries import AttemptOutcome
from hodei.domain.states import JobState
from hodei.domain.workers import WorkerInfo, WorkerState
from hodei.store.database import Database
from hodei.store.jobs import JobRepository
from hodei.store.logs import LogQuery, LogRepository
from hodei.store.workers import WorkerRepository
from hodei.v1 import jobs_pb2, worker_pb2, worker_pb2_grpc
from hodei.worker.agent import now_timestamp

from .harness import Platform, check_invariants, wait_for

pytestmark = pytest.mark.faults

LEASE = timedelta(seconds=30)


def record(sequence: int, text: str) -> LogRecord:
    return LogRecord(sequence, time.time_ns(), LogStream.STDOUT, LogLevel.INFO, text, attempt=1)


async def test_the_store_applies_a_duplicate_once(database_url: str) -> None:
    db = await Database.connect(database_url, min_size=1, max_size=2)
    try:
        jobs, logs, workers = JobRepository(db), LogRepository(db), WorkerRepository(db)
        otp = await workers.create_bootstrap_token("local", timedelta(minutes=1))
        info = WorkerInfo(
            hostname="h", arch="x86_64", runtime="process", cpu_cores=2, memory_mb=1024
        )
        worker = (await workers.register(otp, info)).worker_id
        await workers.set_state(worker, WorkerState.READY, event_type="WorkerConnected", actor="t")
        job_id, _ = await jobs.insert(parse_job_spec({"name": "twice", "script": "true"}), "t")
        assert await jobs.claim(worker, LEASE) is not None
        ref: dict[str, Any] = {"worker_id": worker, "job_id": job_id, "attempt": 1}
        started = datetime.now(UTC)
        for _ in range(2):
            await jobs.mark_running(**ref, started_at=started, pid=42, lease_ttl=LEASE)

        batch = [record(1, "one"), record(2, "two"), record(3, "three")]
        assert await logs.append(**ref, lines=batch) == 3
        assert await logs.append(**ref, lines=batch) == 0
        # A resend that overlaps what is stored adds only what is new.
        assert await logs.append(**ref, lines=[*batch[1:], record(4, "four")]) == 1

        result: dict[str, Any] = ref | {
            "outcome": AttemptOutcome.SUCCEEDED,
            "exit_code": 0,
            "error_message": "",
            "finished_at": datetime.now(UTC),
        }
        assert await jobs.finish(**result) is JobState.SUCCEEDED
        before = await jobs.get(job_id)
        events_before = await jobs.events(job_id)
        assert await jobs.finish(**result) is None
        # Not even a different result for the same attempt changes anything.
        other = result | {"outcome": AttemptOutcome.FAILED, "exit_code": 1, "error_message": "x"}
        assert await jobs.finish(**other) is None

        assert await jobs.get(job_id) == before
        assert await jobs.events(job_id) == events_before
        stored = await logs.read(LogQuery(job_id))
        assert [(line.sequence, line.line) for line in stored] == [
            (1, "one"),
            (2, "two"),
            (3, "three"),
            (4, "four"),
        ]
        changes = [(e.event_type, e.payload.get("to")) for e in events_before]
        assert changes == [
            ("JobCreated", None),
            ("JobAssigned", None),
            ("JobStatusChanged", "RUNNING"),
            ("JobStatusChanged", "SUCCEEDED"),
        ]
    finally:
        await db.close()


class FakeWorker:
    """A worker agent written by hand, to send exactly the messages a test wants."""

    def __init__(self, address: str, otp: str) -> None:
        self._channel = grpc.insecure_channel(address)
        stub = worker_pb2_grpc.WorkerAgentServiceStub(self._channel)
        info = worker_pb2.WorkerInfo(
            hostname="fake", arch="x86_64", runtime="process", cpu_cores=1, memory_mb=1024
        )
        registration = stub.Register(worker_pb2.RegisterRequest(otp=otp, info=info), timeout=10)
        self.worker_id = registration.worker_id
        self._outgoing: queue.Queue[worker_pb2.WorkerMessage | None] = queue.Queue()
        self.incoming: queue.Queue[worker_pb2.ServerMessage] = queue.Queue()
        self._call = stub.Connect(
            self._requests(),
            metadata=(("authorization", f"Session {registration.session_token}"),),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _requests(self) -> Iterator[worker_pb2.WorkerMessage]:
        while (message := self._outgoing.get()) is not None:
            yield message

    def _read(self) -> None:
        try:
            for message in self._call:
                self.incoming.put(message)
        except grpc.RpcError:
            pass

    def send(self, message: worker_pb2.WorkerMessage) -> None:
        self._outgoing.put(message)

    def expect(self, kind: str, timeout: float = 10) -> worker_pb2.ServerMessage:
        """The next message of this kind (heartbeat acks are skipped; a rejection fails)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {kind} from the server within {timeout} s"
            message = self.incoming.get(timeout=left)
            body = message.WhichOneof("body")
            assert body != "rejection", f"the server refused: {message.rejection.reason}"
            if body == kind and not message.ack.heartbeat:
                return message

    def close(self) -> None:
        self._outgoing.put(None)
        self._call.cancel()
        self._reader.join(5)
        self._channel.close()


@pytest.mark.timeout(60)
def test_the_server_acknowledges_duplicates_and_applies_them_once(platform: Platform) -> None:
    server = platform.server()
    worker = FakeWorker(server.address, platform.worker_tokens(1)[0])
    try:
        wait_for(lambda: platform.worker_state(worker.worker_id) == "READY", 10, "READY")
        job = platform.submit(server, "echo resent", name="resent")
        run = worker.expect("run").run
        assert run.ref.job_id == job
        ref = run.ref
        started = worker_pb2.WorkerMessage(
            started=worker_pb2.JobStarted(ref=ref, pid=4242, started_at=now_timestamp())
        )
        lines = [record(1, "resent"), record(2, "again")]
        batch = worker_pb2.WorkerMessage(
            logs=worker_pb2.LogBatch(ref=ref, chunk=chunk_to_proto(LogChunk.of(lines)))
        )
        result = worker_pb2.WorkerMessage(
            result=worker_pb2.JobResult(
                ref=ref,
                state=jobs_pb2.SUCCEEDED,
                exit_code=0,
                finished_at=now_timestamp(),
                last_sequence=2,
            )
        )
        for message, acked in ((started, "started"), (batch, "logs_through"), (result, "result")):
            for _ in range(2):
                worker.send(message)
                ack = worker.expect("ack").ack
                assert (ack.ref.job_id, ack.WhichOneof("what")) == (job, acked)
    finally:
        worker.close()

    assert platform.lines(job) == ["resent", "again"]
    [attempt] = platform.attempts(job)
    assert (attempt["state"], attempt["exit_code"]) == ("SUCCEEDED", 0)
    running = [
        e for e in platform.events(job, "JobStatusChanged") if e["payload"]["to"] == "RUNNING"
    ]
    assert len(running) == 1
    check_invariants(platform, {job: "SUCCEEDED"})


@pytest.mark.timeout(60)
def test_a_malformed_log_chunk_is_refused_and_stores_nothing(platform: Platform) -> None:
    server = platform.server()
    worker = FakeWorker(server.address, platform.worker_tokens(1)[0])
    try:
        wait_for(lambda: platform.worker_state(worker.worker_id) == "READY", 10, "READY")
        job = platform.submit(server, "echo never", name="malformed")
        ref = worker.expect("run").run.ref
        good = chunk_to_proto(LogChunk.of([record(1, "fine")]))
        worker.send(worker_pb2.WorkerMessage(logs=worker_pb2.LogBatch(ref=ref, chunk=good)))
        assert worker.expect("ack").ack.logs_through == 1
        # Two lines of text, one kind and one timestamp: the columns disagree.
        bad = chunk_to_proto(LogChunk(2, 1, "two\nlines", b"\x00", bytes(8)))
        worker.send(worker_pb2.WorkerMessage(logs=worker_pb2.LogBatch(ref=ref, chunk=bad)))
        deadline = time.monotonic() + 10
        while (message := worker.incoming.get(timeout=deadline - time.monotonic())).WhichOneof(
            "body"
        ) != "rejection":
            pass
        assert message.rejection.ref.job_id == job
        assert "malformed logs" in message.rejection.reason
        assert "2 line(s) of text for 1 kind(s)" in message.rejection.reason
        # The stream is still open: the worker goes on.
        worker.send(worker_pb2.WorkerMessage(logs=worker_pb2.LogBatch(ref=ref, chunk=good)))
        assert worker.expect("ack").ack.logs_through == 1
    finally:
        worker.close()
    assert platform.lines(job) == ["fine"]
