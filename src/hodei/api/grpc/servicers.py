"""The public gRPC services: thin adapters from hodei.v1 messages to the application services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc

from hodei.api.grpc import convert
from hodei.api.grpc.errors import streaming, unary
from hodei.api.principal import current_actor
from hodei.domain.errors import ValidationError, storable
from hodei.domain.logs import LogLevel
from hodei.services.jobs import JobService
from hodei.services.logs import LogService, selected
from hodei.services.scheduler import SchedulerService
from hodei.store.jobs import JobFilter, parse_job_id
from hodei.store.logs import LogQuery
from hodei.v1 import (
    jobs_pb2,
    jobs_pb2_grpc,
    logs_pb2,
    logs_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
)

Context = grpc.aio.ServicerContext[Any, Any]


class JobExecutionServicer(jobs_pb2_grpc.JobExecutionServiceServicer):
    def __init__(self, jobs: JobService) -> None:
        self._jobs = jobs

    @unary
    async def QueueJob(
        self, request: jobs_pb2.QueueJobRequest, context: Context
    ) -> jobs_pb2.QueueJobResponse:
        job_id = await self._jobs.submit(convert.definition_to_dict(request.job), current_actor())
        return jobs_pb2.QueueJobResponse(job_id=job_id)

    @unary
    async def GetJob(self, request: jobs_pb2.GetJobRequest, context: Context) -> jobs_pb2.Job:
        return convert.job_to_proto(await self._jobs.get(parse_job_id(request.job_id)))

    @unary
    async def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: Context
    ) -> jobs_pb2.ListJobsResponse:
        job_filter = JobFilter(
            states=tuple(convert.job_state_from_proto(s) for s in request.states if s != 0),
            name=storable("name", request.name).strip(),
            created_after=convert.optional_timestamp(request, "created_after"),
            created_before=convert.optional_timestamp(request, "created_before"),
        )
        page = await self._jobs.history(job_filter, request.page_size, request.page_token)
        return jobs_pb2.ListJobsResponse(
            jobs=[convert.job_to_proto(job) for job in page.jobs],
            next_page_token=page.next_page_token,
        )

    @unary
    async def CancelJob(self, request: jobs_pb2.CancelJobRequest, context: Context) -> jobs_pb2.Job:
        job = await self._jobs.cancel(parse_job_id(request.job_id), current_actor())
        return convert.job_to_proto(job)

    @streaming
    async def WatchJob(
        self, request: jobs_pb2.WatchJobRequest, context: Context
    ) -> AsyncIterator[jobs_pb2.JobEvent]:
        async for event, state in self._jobs.watch(parse_job_id(request.job_id)):
            yield convert.event_to_proto(event, state)


def _levels(values: Iterable[int]) -> tuple[LogLevel, ...]:
    """Raises ValidationError for a value that is not a log level."""
    try:
        return tuple(LogLevel(level) for level in values if level != 0)
    except ValueError:
        raise ValidationError.single("levels", "must be INFO, WARN or ERROR") from None


class LogStreamServicer(logs_pb2_grpc.LogStreamServiceServicer):
    def __init__(self, logs: LogService) -> None:
        self._logs = logs

    @unary
    async def GetLogs(
        self, request: logs_pb2.GetLogsRequest, context: Context
    ) -> logs_pb2.GetLogsResponse:
        query = LogQuery(
            job_id=parse_job_id(request.job_id),
            after_sequence=max(request.after_sequence, 0),
            limit=request.limit,
        )
        lines, finished = await self._logs.page(query)
        return logs_pb2.GetLogsResponse(
            lines=[convert.log_line_to_proto(line) for line in lines],
            last_sequence=lines[-1].sequence if lines else query.after_sequence,
            job_finished=finished,
        )

    @streaming
    async def SubscribeLogs(
        self, request: logs_pb2.SubscribeLogsRequest, context: Context
    ) -> AsyncIterator[logs_pb2.SubscribeLogsResponse]:
        query = LogQuery(
            job_id=parse_job_id(request.job_id),
            after_sequence=max(request.from_sequence - 1, 0),
            levels=_levels(request.levels),
            contains=storable("contains", request.contains),
        )
        chunked = request.chunked and not query.filtered
        async for chunk in self._logs.follow(query, follow=request.follow):
            if chunked:
                yield logs_pb2.SubscribeLogsResponse(chunks=[convert.chunk_to_proto(chunk)])
            elif lines := selected(chunk, query):
                yield logs_pb2.SubscribeLogsResponse(
                    lines=[convert.log_line_to_proto(line) for line in lines]
                )


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServiceServicer):
    def __init__(self, scheduler: SchedulerService) -> None:
        self._scheduler = scheduler

    @unary
    async def GetQueueStatus(
        self, request: scheduler_pb2.GetQueueStatusRequest, context: Context
    ) -> scheduler_pb2.GetQueueStatusResponse:
        status = await self._scheduler.queue_status()
        return scheduler_pb2.GetQueueStatusResponse(
            jobs_by_state=status.jobs_by_state,
            queue_depth=status.queue_depth,
            delayed=status.delayed,
            ready_workers=status.ready_workers,
        )

    @unary
    async def ListWorkers(
        self, request: scheduler_pb2.ListWorkersRequest, context: Context
    ) -> scheduler_pb2.ListWorkersResponse:
        workers = await self._scheduler.workers(request.include_terminated)
        return scheduler_pb2.ListWorkersResponse(
            workers=[convert.worker_to_proto(w) for w in workers]
        )
