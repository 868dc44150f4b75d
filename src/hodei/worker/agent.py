"""The worker agent: register with a one-time token, hold one stream, run what it is sent.

It survives its server: while the stream is down, jobs keep running and what they produce waits
in the outbox; on reconnect (to any of its server addresses, with its session token) everything
unacknowledged is sent again. On SIGTERM it drains: no new jobs, running ones get a drain timeout
to finish, the rest are handed back for another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import shutil
import socket
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import psutil
from google.protobuf import timestamp_pb2

from hodei import __version__
from hodei.api.grpc import convert
from hodei.domain.jobs import CommandType, normalize_arch
from hodei.domain.logs import LogChunk
from hodei.domain.placement import PROCESS_RUNTIME
from hodei.domain.states import JobState
from hodei.tls import ClientTls
from hodei.tls import channel as tls_channel
from hodei.v1 import jobs_pb2, worker_pb2, worker_pb2_grpc
from hodei.worker.capture import BatchLimits, LogBatcher, SecretMasker
from hodei.worker.groups import GroupLedger
from hodei.worker.outbox import Outbox
from hodei.worker.runtime import (
    Execution,
    ExecutionResult,
    JobLaunch,
    LaunchCancelledError,
    LaunchError,
    Runtime,
    RuntimeUnavailableError,
    use_pidfd_child_watcher,
)
from hodei.worker.usage import GroupSampler

log = logging.getLogger(__name__)

HAND_BACK_GRACE_SECONDS = 2.0
GOODBYE_TIMEOUT_SECONDS = 5.0
STARTED_MEMORY = 100_000
USAGE_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True)
class AgentConfig:
    """How a worker presents itself and reaches its server(s)."""

    server_addresses: tuple[str, ...]
    otp: str
    cpu_cores: float
    memory_mb: int
    region: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    work_dir: Path = Path(tempfile.gettempdir())
    reconnect_delay: timedelta = timedelta(seconds=0.5)
    drain_timeout: timedelta = timedelta(seconds=10)
    # How long, when stopping, to wait for the server to take what is still undelivered.
    delivery_timeout: timedelta = timedelta(seconds=30)
    batch_limits: BatchLimits = field(default_factory=BatchLimits)
    # TLS to the server (its CA, our certificate for mutual TLS); None: plaintext.
    tls: ClientTls | None = None


def host_arch() -> str:
    return normalize_arch(platform.machine()) or platform.machine()


def now_timestamp() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(datetime.now(UTC))
    return ts


@dataclass
class Attempt:
    """One attempt this worker runs."""

    ref: worker_pb2.AttemptRef
    execution: Execution | None = None
    cancel_grace: float | None = None  # set when a cancel arrived
    hand_back: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    # Earlier attempts of the same job still running here: they end before this one starts.
    superseded: list[Attempt] = field(default_factory=list)


class WorkerAgent:
    """One worker: its registration, its stream and the attempts it runs."""

    def __init__(self, config: AgentConfig, runtime: Runtime) -> None:
        if not config.server_addresses:
            raise ValueError("a worker needs at least one server address")
        self._config = config
        self._runtime = runtime
        self._outbox = Outbox()
        self._attempts: dict[tuple[str, int], Attempt] = {}
        # Every attempt this worker started (the newest ones): an attempt runs at most once here.
        self._started: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._heartbeat_interval = 5.0
        self._stop_requested = asyncio.Event()
        self._draining = False
        self._leaving = False  # said goodbye: the server ends the stream, nothing reconnects
        self._connected = asyncio.Event()
        self._address_turn = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._groups: GroupLedger | None = None
        self._sampler = GroupSampler()
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
        """Drain and leave: no new jobs, a drain timeout for running ones, then hand back."""
        self._stop_requested.set()

    @property
    def running(self) -> int:
        return len(self._attempts)

    async def run(self) -> None:
        """Register, then serve until stopped and drained."""
        use_pidfd_child_watcher()
        registration = await self._register()
        self.worker_id = registration.worker_id
        self._heartbeat_interval = registration.heartbeat_interval_ms / 1000 or 5.0
        self._groups = GroupLedger(self._config.work_dir, self.worker_id)
        self._groups.sweep_dead_predecessors()
        log.info("registered as worker %s", self.worker_id)
        try:
            await self._runtime.prepare(self.worker_id)
        except BaseException:
            self._groups.close()
            raise
        connection = asyncio.create_task(self._stay_connected(registration.session_token))
        try:
            await self._stop_requested.wait()
            await self._drain()
            # The server ends the stream once it has stored the goodbye: wait for that.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(connection), GOODBYE_TIMEOUT_SECONDS)
        finally:
            connection.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connection
            await self._stop_everything()
            self._groups.close()
            await self._runtime.close()

    async def _register(self) -> worker_pb2.RegisterResponse:
        request = worker_pb2.RegisterRequest(otp=self._config.otp, info=self.info())
        last_error: grpc.aio.AioRpcError | None = None
        for address in self._config.server_addresses:
            async with tls_channel(address, self._config.tls) as channel:
                stub = worker_pb2_grpc.WorkerAgentServiceStub(channel)
                try:
                    return await stub.Register(request, timeout=30)
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                    last_error = error
        assert last_error is not None
        raise last_error

    def _next_address(self) -> str:
        addresses = self._config.server_addresses
        address = addresses[self._address_turn % len(addresses)]
        self._address_turn += 1
        return address

    async def _stay_connected(self, token: str) -> None:
        """Keep one stream open, to any server address, for as long as the worker lives."""
        while True:
            address = self._next_address()
            try:
                async with tls_channel(address, self._config.tls) as channel:
                    stub = worker_pb2_grpc.WorkerAgentServiceStub(channel)
                    await self._session(stub, token)
                if self._leaving:
                    return
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                    log.error("the server no longer knows this worker: %s", error.details())
                    self._stop_requested.set()
                    return
                log.warning("stream to %s ended (%s); reconnecting", address, error.code().name)
            self._connected.clear()
            await self._outbox.rewind()
            await asyncio.sleep(self._config.reconnect_delay.total_seconds())

    async def _session(self, stub: worker_pb2_grpc.WorkerAgentServiceAsyncStub, token: str) -> None:
        call = stub.Connect(metadata=(("authorization", f"Session {token}"),))
        if self._draining:
            await call.write(worker_pb2.WorkerMessage(drain=worker_pb2.Drain()))
        writer = asyncio.create_task(self._write(call))
        heartbeat = asyncio.create_task(self._heartbeat())
        usage = asyncio.create_task(self._report_usage())
        try:
            async for message in call:
                self._connected.set()
                await self._handle(message)
        finally:
            writer.cancel()
            heartbeat.cancel()
            usage.cancel()
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await writer

    async def _write(
        self, call: grpc.aio.StreamStreamCall[worker_pb2.WorkerMessage, worker_pb2.ServerMessage]
    ) -> None:
        while True:
            await call.write(await self._outbox.take())

    async def _heartbeat(self) -> None:
        psutil.cpu_percent(None)
        while True:
            held = {(a.ref.job_id, a.ref.attempt) for a in self._attempts.values()}
            held |= self._outbox.unreported_attempts()
            beat = worker_pb2.Heartbeat(
                running=[worker_pb2.AttemptRef(job_id=j, attempt=a) for j, a in sorted(held)],
                cpu_percent=psutil.cpu_percent(None),
                memory_used_mb=psutil.virtual_memory().used // (1024 * 1024),
            )
            # Ahead of any backlog: a heartbeat stuck behind a resend would let leases lapse.
            await self._outbox.put(worker_pb2.WorkerMessage(heartbeat=beat), urgent=True)
            await asyncio.sleep(self._heartbeat_interval)

    async def _report_usage(self) -> None:
        """Every second, each running job's CPU and memory (while connected: a sample that
        could not be sent at once is of no use later)."""
        while True:
            await asyncio.sleep(USAGE_INTERVAL_SECONDS)
            running = {
                a.execution.pid: a.ref for a in self._attempts.values() if a.execution is not None
            }
            if not running:
                continue
            sampled = await asyncio.to_thread(self._sampler.sample, set(running))
            at = now_timestamp()
            jobs = [
                worker_pb2.JobUsage(
                    ref=running[pgid],
                    sampled_at=at,
                    cpu_percent=usage.cpu_percent,
                    memory_bytes=usage.memory_bytes,
                )
                for pgid, usage in sampled.items()
                if pgid in running
            ]
            if jobs:
                usage_message = worker_pb2.ResourceUsage(jobs=jobs)
                await self._outbox.put(worker_pb2.WorkerMessage(usage=usage_message))

    async def _handle(self, message: worker_pb2.ServerMessage) -> None:
        kind = message.WhichOneof("body")
        if kind == "run":
            self._start(message.run)
        elif kind == "cancel":
            ref = message.cancel.ref
            attempt = self._attempts.get((ref.job_id, ref.attempt))
            if attempt is not None:
                log.info("cancelling job %s attempt %d", ref.job_id, ref.attempt)
                self._cancel(attempt, message.cancel.grace_ms / 1000)
        elif kind == "ack":
            await self._outbox.acknowledge(message.ack)
        elif kind == "rejection":
            ref = message.rejection.ref
            log.warning(
                "the server refused news of job %s attempt %d: %s",
                ref.job_id,
                ref.attempt,
                message.rejection.reason,
            )
            # Another attempt replaced this one: stop it, and forget what it still had to say.
            attempt = self._attempts.get((ref.job_id, ref.attempt))
            if attempt is not None:
                self._cancel(attempt, 0)
            await self._outbox.forget(ref.job_id, ref.attempt)

    def _start(self, run: worker_pb2.RunJob) -> None:
        key = (run.ref.job_id, run.ref.attempt)
        if key in self._started:
            return  # running or ran already: sent again after a reconnect
        self._started[key] = None
        while len(self._started) > STARTED_MEMORY:
            self._started.popitem(last=False)
        ref = worker_pb2.AttemptRef(job_id=run.ref.job_id, attempt=run.ref.attempt)
        # A newer attempt of a job means the server gave up on the older one this worker may
        # still run (it was reaped while the worker was away): never run both at once.
        superseded = [
            a
            for (job_id, number), a in self._attempts.items()
            if job_id == run.ref.job_id and number < run.ref.attempt
        ]
        for old in superseded:
            log.warning("job %s attempt %d is superseded; stopping it", *key[:1], old.ref.attempt)
            self._cancel(old, 0)
        self._attempts[key] = Attempt(ref, superseded=superseded)
        self._idle.clear()
        self._spawn_task(self._execute(run, self._attempts[key]))

    def _spawn_task(self, coroutine: object) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coroutine)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _cancel(self, attempt: Attempt, grace: float) -> None:
        attempt.cancel_grace = grace
        if attempt.execution is not None:
            self._spawn_task(attempt.execution.cancel(grace))

    async def _execute(self, run: worker_pb2.RunJob, attempt: Attempt) -> None:
        ref = attempt.ref
        definition = run.definition
        workdir = Path(
            tempfile.mkdtemp(prefix=f"hodei-job-{ref.job_id[:8]}-", dir=self._config.work_dir)
        )

        async def send(chunk: LogChunk) -> None:
            batch = worker_pb2.LogBatch(ref=ref, chunk=convert.chunk_to_proto(chunk))
            await self._outbox.put(worker_pb2.WorkerMessage(logs=batch))

        batcher = LogBatcher(
            send,
            first_sequence=run.first_sequence or 1,
            attempt=ref.attempt,
            masker=SecretMasker(definition.secret_env.values()),
            limits=self._config.batch_limits,
            max_bytes=run.log_limit_bytes,
        )
        try:
            try:
                result = await self._run_attempt(attempt, run, workdir, batcher)
            except Exception as exc:
                # Whatever went wrong here, the server must hear how the attempt ended.
                log.exception("job %s attempt %d failed in the worker", ref.job_id, ref.attempt)
                result = ExecutionResult(JobState.FAILED, None, f"the worker failed: {exc}")
            last_sequence = await batcher.close()
            message = worker_pb2.JobResult(
                ref=ref,
                state=convert.job_state_to_proto(result.state),
                error_message=result.error_message,
                finished_at=now_timestamp(),
                last_sequence=last_sequence,
                log_truncated=batcher.truncated,
            )
            if result.exit_code is not None:
                message.exit_code = result.exit_code
            await self._outbox.put(worker_pb2.WorkerMessage(result=message))
        finally:
            attempt.ended.set()
            self._attempts.pop((ref.job_id, ref.attempt), None)
            if not self._attempts:
                self._idle.set()
            shutil.rmtree(workdir, ignore_errors=True)

    async def _run_attempt(
        self,
        attempt: Attempt,
        run: worker_pb2.RunJob,
        workdir: Path,
        batcher: LogBatcher,
    ) -> ExecutionResult:
        launch = _launch_of(attempt, run, workdir)
        for old in attempt.superseded:
            await old.ended.wait()
        attempt.superseded.clear()
        if attempt.cancel_grace is not None:
            return ExecutionResult(JobState.CANCELLED, None, "cancelled before it started")
        try:
            execution = await self._runtime.start(launch, batcher.add_block)
        except LaunchCancelledError as exc:
            return ExecutionResult(JobState.CANCELLED, None, str(exc))
        except RuntimeUnavailableError as exc:
            self._runtime_failed(str(exc))
            return ExecutionResult(JobState.PENDING, None, f"handed back: {exc}")
        except LaunchError as exc:
            return ExecutionResult(JobState.FAILED, None, str(exc))
        attempt.execution = execution
        assert self._groups is not None
        if execution.pid:
            self._groups.record(execution.pid, attempt.ref.job_id)
        try:
            if attempt.cancel_grace is not None:
                self._cancel(attempt, attempt.cancel_grace)
            started = self._started_message(attempt, launch, execution)
            await self._outbox.put(worker_pb2.WorkerMessage(started=started))
            result = await execution.wait()
        finally:
            if execution.pid:
                self._groups.forget(execution.pid)
        if attempt.hand_back and result.state is JobState.CANCELLED:
            return ExecutionResult(JobState.PENDING, None, "handed back: its worker stopped")
        if result.state is JobState.PENDING:
            self._runtime_failed(result.error_message)  # the runtime lost it: not the job's doing
        return result

    def _started_message(
        self, attempt: Attempt, launch: JobLaunch, execution: Execution
    ) -> worker_pb2.JobStarted:
        """JobStarted, with the image's pull, or why the image was not applied."""
        started = worker_pb2.JobStarted(
            ref=attempt.ref, pid=execution.pid, started_at=now_timestamp()
        )
        if execution.image_pull is not None:
            started.image_pull.image = execution.image_pull.image
            started.image_pull.duration_ms = execution.image_pull.duration_ms
        elif launch.image and self._runtime.name == PROCESS_RUNTIME:
            started.image_not_applied = (
                "it ran as a process on the worker's host (no container provider is running)"
            )
        return started

    def _runtime_failed(self, reason: str) -> None:
        """The runtime cannot run jobs any more: hand back, take nothing new, leave."""
        if not self._stop_requested.is_set():
            log.error("the runtime is out of order (%s): draining", reason)
            self.stop()

    async def _drain(self) -> None:
        """Stop taking jobs, give running ones the drain timeout, hand back the rest, deliver."""
        self._draining = True
        await self._outbox.put(worker_pb2.WorkerMessage(drain=worker_pb2.Drain()))
        log.info("draining: %d job(s) running", len(self._attempts))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._until_idle(), self._config.drain_timeout.total_seconds())
        for attempt in list(self._attempts.values()):
            log.info("handing back job %s attempt %d", attempt.ref.job_id, attempt.ref.attempt)
            attempt.hand_back = True
            self._cancel(attempt, HAND_BACK_GRACE_SECONDS)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=HAND_BACK_GRACE_SECONDS + 5)
        try:
            await asyncio.wait_for(
                self._outbox.delivered(), self._config.delivery_timeout.total_seconds()
            )
        except TimeoutError:
            log.error("leaving with %d message(s) the server never took", len(self._outbox))
            return
        self._leaving = True
        await self._outbox.put(
            worker_pb2.WorkerMessage(goodbye=worker_pb2.Goodbye(reason="drained"))
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._outbox.delivered(), 2)

    async def _until_idle(self) -> None:
        await self._idle.wait()

    async def _stop_everything(self) -> None:
        """Last resort when leaving: no job process may outlive its worker."""
        for attempt in list(self._attempts.values()):
            attempt.cancel_grace = 0  # one not started yet (waiting for an older one) never will
            if attempt.execution is not None:
                await attempt.execution.cancel(grace=0)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)


def _launch_of(attempt: Attempt, run: worker_pb2.RunJob, workdir: Path) -> JobLaunch:
    """What the runtime needs to start the attempt."""
    definition = run.definition
    return JobLaunch(
        job_id=attempt.ref.job_id,
        attempt=attempt.ref.attempt,
        command_type=CommandType(jobs_pb2.CommandType.Name(definition.command_type))
        if definition.command_type
        else CommandType.SHELL,
        script=definition.script,
        image=definition.image,
        env=dict(definition.env) | dict(definition.secret_env),
        timeout_ms=definition.resources.timeout_ms,
        workdir=workdir,
        stop_grace=run.stop_grace_ms / 1000,
        cpu_cores=definition.resources.cpu_cores,
        memory_mb=definition.resources.memory_mb,
        arch=definition.resources.arch,
        cancelled=lambda: attempt.cancel_grace is not None,
    )


def orphan_watch(agent: WorkerAgent, parent_pid: int, interval: float = 1.0) -> asyncio.Task[None]:
    """For a worker its provider started: if that parent dies, drain and leave."""

    async def watch() -> None:
        # Nothing signals a parent's death to a process that did not ask the kernel for it.
        while os.getppid() == parent_pid:  # noqa: ASYNC110
            await asyncio.sleep(interval)
        log.warning("the process that started this worker is gone; draining")
        agent.stop()

    return asyncio.create_task(watch(), name="hodei-orphan-watch")
