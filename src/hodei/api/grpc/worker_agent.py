"""WorkerAgentService: registration and the one bidirectional stream per worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from hodei.api.grpc import convert
from hodei.api.grpc.errors import abort_with, unary
from hodei.domain.errors import (
    AuthenticationError,
    HodeiError,
    StaleAttemptError,
    ValidationError,
)
from hodei.domain.retries import AttemptOutcome
from hodei.scheduler.sessions import (
    AckCommand,
    CancelCommand,
    Command,
    RejectCommand,
    RunCommand,
    WorkerSession,
)
from hodei.services.workers import JobOutcome, WorkerProtocolConfig, WorkerService
from hodei.store.jobs import is_job_id
from hodei.store.metrics import ResourceSample
from hodei.v1 import jobs_pb2, worker_pb2, worker_pb2_grpc

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
SESSION_SCHEME = "session "


def session_token_from(context: Context) -> str:
    """The session token in ``authorization: Session <token>`` metadata."""
    for key, value in context.invocation_metadata() or ():
        if (
            key == "authorization"
            and isinstance(value, str)
            and value.lower().startswith(SESSION_SCHEME)
        ):
            return value[len(SESSION_SCHEME) :].strip()
    raise AuthenticationError("the stream carries no 'authorization: Session <token>' metadata")


def command_to_proto(command: Command, protocol: WorkerProtocolConfig) -> worker_pb2.ServerMessage:
    """A command for the worker, on the wire."""
    match command:
        case RunCommand(claimed):
            job = claimed.job
            return worker_pb2.ServerMessage(
                run=worker_pb2.RunJob(
                    ref=worker_pb2.AttemptRef(job_id=job.id, attempt=job.attempt),
                    definition=convert.definition_to_proto(job, reveal_secrets=True),
                    first_sequence=claimed.first_sequence,
                    log_limit_bytes=protocol.log_limit_bytes,
                    stop_grace_ms=int(protocol.cancel_grace.total_seconds() * 1000),
                )
            )
        case CancelCommand(job_id, attempt, grace):
            return worker_pb2.ServerMessage(
                cancel=worker_pb2.CancelJobCommand(
                    ref=worker_pb2.AttemptRef(job_id=job_id, attempt=attempt),
                    grace_ms=int(grace.total_seconds() * 1000),
                )
            )
        case AckCommand(job_id, attempt, logs_through, result, started, heartbeat):
            ack = worker_pb2.Ack(ref=worker_pb2.AttemptRef(job_id=job_id, attempt=attempt))
            if logs_through is not None:
                ack.logs_through = logs_through
            elif result:
                ack.result = True
            elif started:
                ack.started = True
            elif heartbeat:
                ack.heartbeat = True
            return worker_pb2.ServerMessage(ack=ack)
        case RejectCommand(job_id, attempt, reason):
            return worker_pb2.ServerMessage(
                rejection=worker_pb2.Rejection(
                    ref=worker_pb2.AttemptRef(job_id=job_id, attempt=attempt), reason=reason
                )
            )


class WorkerAgentServicer(worker_pb2_grpc.WorkerAgentServiceServicer):
    def __init__(self, workers: WorkerService) -> None:
        self._workers = workers

    @unary
    async def Register(
        self, request: worker_pb2.RegisterRequest, context: Context
    ) -> worker_pb2.RegisterResponse:
        registration = await self._workers.register(
            request.otp, convert.worker_info_from_proto(request.info)
        )
        interval = self._workers.config.heartbeat_interval
        return worker_pb2.RegisterResponse(
            worker_id=registration.worker_id,
            session_token=registration.session_token,
            heartbeat_interval_ms=int(interval.total_seconds() * 1000),
            lease_ttl_ms=int(self._workers.config.lease_ttl.total_seconds() * 1000),
        )

    async def Connect(
        self, request_iterator: AsyncIterator[worker_pb2.WorkerMessage], context: Context
    ) -> AsyncIterator[worker_pb2.ServerMessage]:
        try:
            session = await self._workers.open_session(session_token_from(context))
        except HodeiError as error:
            await abort_with(context, error)
        reader = asyncio.create_task(self._read(session, request_iterator))
        reason = "stream closed"
        try:
            while (command := await session.outbox.get()) is not None:
                yield command_to_proto(command, self._workers.config)
            reason = "replaced by a newer stream"
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            try:
                await self._workers.close_session(session, reason)
            except HodeiError as error:  # PostgreSQL away: the worker's state is fixed later
                log.warning("worker %s: cannot record its disconnect: %s", session.worker_id, error)

    async def _read(
        self, session: WorkerSession, messages: AsyncIterator[worker_pb2.WorkerMessage]
    ) -> None:
        try:
            async for message in messages:
                await self._handle(session, message)
        except HodeiError as error:
            # Typically PostgreSQL away: end the stream; the worker reconnects and sends again
            # whatever was not acknowledged.
            log.warning("stream of worker %s ends: %s", session.worker_id, error)
        except Exception:
            log.exception("stream of worker %s failed", session.worker_id)
        finally:
            session.close()

    async def _handle(self, session: WorkerSession, message: worker_pb2.WorkerMessage) -> None:
        kind = message.WhichOneof("body")
        if kind is None:
            return
        try:
            if kind == "heartbeat":
                beat = message.heartbeat
                await self._workers.heartbeat(
                    session,
                    cpu_percent=beat.cpu_percent,
                    memory_used_mb=beat.memory_used_mb,
                    held=[(ref.job_id, ref.attempt) for ref in beat.running],
                )
            elif kind == "started":
                started = message.started
                await self._workers.job_started(
                    session,
                    started.ref.job_id,
                    started.ref.attempt,
                    started.pid,
                    convert.from_timestamp(started.started_at),
                    image_pulled=started.image_pull.image,
                    pull_ms=started.image_pull.duration_ms,
                    image_not_applied=started.image_not_applied,
                )
            elif kind == "logs":
                ref = message.logs.ref
                chunk = convert.chunk_from_proto(message.logs.chunk, ref.attempt)
                await self._workers.logs_received(session, ref.job_id, ref.attempt, chunk)
            elif kind == "usage":
                samples = [
                    ResourceSample(
                        job.ref.job_id,
                        job.ref.attempt,
                        convert.from_timestamp(job.sampled_at),
                        max(job.cpu_percent, 0.0),
                        max(job.memory_bytes, 0) / 2**20,
                    )
                    for job in message.usage.jobs
                    if is_job_id(job.ref.job_id)
                ]
                await self._workers.usage_received(session, samples)
            elif kind == "result":
                await self._workers.job_finished(session, _outcome(message.result))
            elif kind == "drain":
                await self._workers.drain(session)
            elif kind == "goodbye":
                await self._workers.goodbye(session, message.goodbye.reason)
        except StaleAttemptError as error:
            ref = getattr(getattr(message, kind), "ref", worker_pb2.AttemptRef())
            log.info("refused %s from worker %s: %s", kind, session.worker_id, error)
            session.send(RejectCommand(ref.job_id, ref.attempt, str(error)))
            await self._workers.report_refused(session, ref.job_id, ref.attempt, kind, str(error))
        except ValidationError as error:
            # A worker that breaks the protocol: refuse the message, so that it does not send
            # it again for ever; the attempt stops and, unreported, ends when its lease does.
            ref = getattr(getattr(message, kind), "ref", worker_pb2.AttemptRef())
            log.error("malformed %s from worker %s: %s", kind, session.worker_id, error)
            session.send(RejectCommand(ref.job_id, ref.attempt, f"malformed {kind}: {error}"))


_OUTCOMES = {
    jobs_pb2.SUCCEEDED: AttemptOutcome.SUCCEEDED,
    jobs_pb2.FAILED: AttemptOutcome.FAILED,
    jobs_pb2.TIMEOUT: AttemptOutcome.TIMEOUT,
    jobs_pb2.CANCELLED: AttemptOutcome.CANCELLED,
    jobs_pb2.PENDING: AttemptOutcome.RELEASED,
}


def _outcome(result: worker_pb2.JobResult) -> JobOutcome:
    outcome = _OUTCOMES.get(result.state)
    if outcome is None:
        raise ValidationError.single(
            "result.state", f"a result cannot be {jobs_pb2.JobState.Name(result.state)}"
        )
    return JobOutcome(
        job_id=result.ref.job_id,
        attempt=result.ref.attempt,
        outcome=outcome,
        exit_code=result.exit_code if result.HasField("exit_code") else None,
        error_message=result.error_message,
        finished_at=convert.from_timestamp(result.finished_at),
        log_truncated=result.log_truncated,
    )
