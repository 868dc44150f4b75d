"""A small async gRPC client for the CLI (and anyone scripting Hodei in Python)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import grpc

from hodei.domain.logs import LogChunk
from hodei.tls import ClientTls
from hodei.tls import channel as tls_channel
from hodei.v1 import (
    jobs_pb2,
    jobs_pb2_grpc,
    logs_pb2,
    logs_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
)


class _Bearer(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
):
    """Adds ``authorization: Bearer TOKEN`` to every call."""

    def __init__(self, token: str) -> None:
        self._metadata = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), self._metadata]
        return details._replace(metadata=metadata)

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class HodeiClient:
    """Talks to one server's public gRPC API, with an API token when given one."""

    def __init__(
        self, address: str, token: str | None = None, tls: ClientTls | None = None
    ) -> None:
        self.address = address
        self._channel = tls_channel(
            address,
            tls,
            options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
            interceptors=[_Bearer(token)] if token else None,
        )
        self.jobs = jobs_pb2_grpc.JobExecutionServiceStub(self._channel)
        self.logs = logs_pb2_grpc.LogStreamServiceStub(self._channel)
        self.scheduler = scheduler_pb2_grpc.SchedulerServiceStub(self._channel)

    async def __aenter__(self) -> HodeiClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._channel.close()

    async def queue(self, definition: jobs_pb2.JobDefinition) -> str:
        response = await self.jobs.QueueJob(jobs_pb2.QueueJobRequest(job=definition))
        return response.job_id

    async def get(self, job_id: str) -> jobs_pb2.Job:
        return await self.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id))

    async def cancel(self, job_id: str) -> jobs_pb2.Job:
        return await self.jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=job_id))

    async def list(self, request: jobs_pb2.ListJobsRequest) -> jobs_pb2.ListJobsResponse:
        return await self.jobs.ListJobs(request)

    async def follow_logs(
        self, job_id: str, *, follow: bool, from_sequence: int = 1
    ) -> AsyncIterator[logs_pb2.LogLine]:
        """Every line of the job's log from ``from_sequence``; with ``follow``, until it ends."""
        request = logs_pb2.SubscribeLogsRequest(
            job_id=job_id, from_sequence=from_sequence, follow=follow
        )
        async for response in self.logs.SubscribeLogs(request):
            for line in response.lines:
                yield line

    async def follow_chunks(
        self, job_id: str, *, follow: bool, from_sequence: int = 1
    ) -> AsyncIterator[LogChunk]:
        """Like ``follow_logs``, in chunks of lines: far cheaper on a busy log."""
        request = logs_pb2.SubscribeLogsRequest(
            job_id=job_id, from_sequence=from_sequence, follow=follow, chunked=True
        )
        async for response in self.logs.SubscribeLogs(request):
            for chunk in response.chunks:
                yield LogChunk(
                    chunk.first_sequence, chunk.attempt, chunk.body, chunk.kinds, chunk.timestamps
                )

    async def workers(self) -> scheduler_pb2.ListWorkersResponse:
        return await self.scheduler.ListWorkers(scheduler_pb2.ListWorkersRequest())
