"""The worker agent: register with a one-time token, hold one stream, run what it is sent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import psutil
from google.protobuf import timestamp_pb2

from hodei import __version__
from hodei.api.grpc import convert
from hodei.domain.jobs import CommandType, normalize_arch
from hodei.domain.logs import LogRecord
from hodei.domain.states import JobState
from hodei.v1 import jobs_pb2, worker_pb2, worker_pb2_grpc
from hodei.worker.capture import BatchLimits, LogBatcher, SecretMasker
from hodei.worker.runtime import (
    Execution,
    ExecutionResult,
    JobLaunch,
    LaunchError,
    Runtime,
    use_pidfd_child_watcher,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentConfig:
    """How a worker presents itself and reaches its server."""

    server_address: str
    otp: str
    cpu_cores: float
    memory_mb: int
    region: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    work_dir: Path = Path(tempfile.gettempdir())
    reconnect_delay: timedelta = timedelta(seconds=1)
    batch_limits: BatchLimits = field(default_factory=BatchLimits)


def host_arch() -> str:
    return normalize_arch(platform.machine()) or platform.machine()


def now_timestamp() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(datetime.now(UTC))
    return ts


class WorkerAgent:
    """One worker: its registration, its stream and the attempts it runs."""

    def __init__(self, config: AgentConfig, runtime: Runtime) -> None:
        self._config = config
        self._runtime = runtime
        # Bounded: when the server is slow, senders wait, and so do the jobs' pipes.
        self._outbound: asyncio.Queue[worker_pb2.WorkerMessage] = asyncio.Queue(maxsize=256)
        self._running: dict[tuple[str, int], Execution | None] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._heartbeat_interval = 5.0
        self._stopping = asyncio.Event()
        self.worker_id = ""

    def info(self) -> worker_pb2.WorkerInfo:
        cfg = self._config
        return worker_pb2.WorkerInfo(
            hostname=socket.gethostname(),
            arch=host_arch(),
            region=cfg.region,
            runtime=self._runtime.name,
            cpu_cores=cfg.cpu_cores,
            memory_mb=cfg.memory_mb,
            labels=cfg.labels,
            version=__version__,
        )

    def stop(self) -> None:
        """Stop taking jobs and end (running jobs are stopped)."""
        self._stopping.set()

    async def run(self) -> None:
        """Register, then keep a stream to the server until stopped."""
        use_pidfd_child_watcher()
        async with grpc.aio.insecure_channel(self._config.server_address) as channel:
            stub = worker_pb2_grpc.WorkerAgentServiceStub(channel)
            registration = await stub.Register(
                worker_pb2.RegisterRequest(otp=self._config.otp, info=self.info())
            )
            self.worker_id = registration.worker_id
            self._heartbeat_interval = registration.heartbeat_interval_ms / 1000 or 5.0
            log.info("registered as worker %s", self.worker_id)
            stop = asyncio.create_task(self._stopping.wait())
            try:
                while not self._stopping.is_set():
                    session = asyncio.create_task(self._session(stub, registration.session_token))
                    await asyncio.wait({session, stop}, return_when=asyncio.FIRST_COMPLETED)
                    if not session.done():
                        session.cancel()
                    with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                        await session
                    if not self._stopping.is_set():
                        log.warning("stream to the server ended; reconnecting")
                        await asyncio.sleep(self._config.reconnect_delay.total_seconds())
            finally:
                stop.cancel()
                await self._stop_all()

    async def _session(self, stub: worker_pb2_grpc.WorkerAgentServiceAsyncStub, token: str) -> None:
        call = stub.Connect(metadata=(("authorization", f"Session {token}"),))
        writer = asyncio.create_task(self._write(call))
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            async for message in call:
                self._handle(message)
        finally:
            writer.cancel()
            heartbeat.cancel()
            call.cancel()

    async def _write(
        self, call: grpc.aio.StreamStreamCall[worker_pb2.WorkerMessage, worker_pb2.ServerMessage]
    ) -> None:
        while True:
            message = await self._outbound.get()
            await call.write(message)

    async def _heartbeat(self) -> None:
        psutil.cpu_percent(None)
        while True:
            running = [
                worker_pb2.AttemptRef(job_id=job_id, attempt=attempt)
                for job_id, attempt in self._running
            ]
            beat = worker_pb2.Heartbeat(
                running=running,
                cpu_percent=psutil.cpu_percent(None),
                memory_used_mb=psutil.virtual_memory().used // (1024 * 1024),
            )
            await self._outbound.put(worker_pb2.WorkerMessage(heartbeat=beat))
            await asyncio.sleep(self._heartbeat_interval)

    def _handle(self, message: worker_pb2.ServerMessage) -> None:
        kind = message.WhichOneof("body")
        if kind == "run":
            key = (message.run.ref.job_id, message.run.ref.attempt)
            if key in self._running:
                return  # already running: a resend after a reconnect
            self._running[key] = None
            task = asyncio.create_task(self._execute(message.run))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif kind == "cancel":
            ref = message.cancel.ref
            execution = self._running.get((ref.job_id, ref.attempt))
            if execution is not None:
                log.info("cancelling job %s attempt %d", ref.job_id, ref.attempt)
                task = asyncio.create_task(execution.cancel(message.cancel.grace_ms / 1000))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        elif kind == "rejection":
            ref = message.rejection.ref
            log.warning(
                "server refused a message about job %s attempt %d: %s",
                ref.job_id,
                ref.attempt,
                message.rejection.reason,
            )

    async def _send_logs(self, ref: worker_pb2.AttemptRef, lines: list[LogRecord]) -> None:
        batch = worker_pb2.LogBatch(
            ref=ref, lines=[convert.log_line_to_proto(line) for line in lines]
        )
        await self._outbound.put(worker_pb2.WorkerMessage(logs=batch))

    async def _execute(self, run: worker_pb2.RunJob) -> None:
        ref = worker_pb2.AttemptRef(job_id=run.ref.job_id, attempt=run.ref.attempt)
        key = (ref.job_id, ref.attempt)
        definition = run.definition
        workdir = Path(
            tempfile.mkdtemp(prefix=f"hodei-job-{ref.job_id[:8]}-", dir=self._config.work_dir)
        )

        async def send(lines: list[LogRecord]) -> None:
            await self._send_logs(ref, lines)

        batcher = LogBatcher(
            send,
            first_sequence=run.first_sequence or 1,
            attempt=ref.attempt,
            masker=SecretMasker(definition.secret_env.values()),
            limits=self._config.batch_limits,
        )
        launch = JobLaunch(
            job_id=ref.job_id,
            attempt=ref.attempt,
            command_type=CommandType(jobs_pb2.CommandType.Name(definition.command_type))
            if definition.command_type
            else CommandType.SHELL,
            script=definition.script,
            image=definition.image,
            env=dict(definition.env) | dict(definition.secret_env),
            timeout_ms=definition.resources.timeout_ms,
            workdir=workdir,
        )
        try:
            try:
                execution = await self._runtime.start(launch, batcher.add)
            except LaunchError as exc:
                result = ExecutionResult(JobState.FAILED, None, str(exc))
            else:
                self._running[key] = execution
                started = worker_pb2.JobStarted(
                    ref=ref, pid=execution.pid, started_at=now_timestamp()
                )
                await self._outbound.put(worker_pb2.WorkerMessage(started=started))
                result = await execution.wait()
            last_sequence = await batcher.close()
            message = worker_pb2.JobResult(
                ref=ref,
                state=convert.job_state_to_proto(result.state),
                error_message=result.error_message,
                finished_at=now_timestamp(),
                last_sequence=last_sequence,
            )
            if result.exit_code is not None:
                message.exit_code = result.exit_code
            await self._outbound.put(worker_pb2.WorkerMessage(result=message))
        finally:
            self._running.pop(key, None)
            shutil.rmtree(workdir, ignore_errors=True)

    async def _stop_all(self) -> None:
        """Stop every running attempt and wait for them to end."""
        for execution in list(self._running.values()):
            if execution is not None:
                await execution.cancel(grace=2.0)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=15)
