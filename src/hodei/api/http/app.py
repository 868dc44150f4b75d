"""The FastAPI application: REST under /api/v1 mirroring the gRPC services, and probes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, StreamingResponse

from hodei.api.http.auth import AuthMiddleware
from hodei.api.http.metrics import metric_routes
from hodei.api.http.models import (
    JobDefinition,
    JobList,
    JobOut,
    LevelName,
    LogLineOut,
    LogPage,
    Problem,
    QueueJobResponse,
    QueueStatusOut,
    StateName,
    WorkerOut,
)
from hodei.api.http.providers import provider_routes
from hodei.api.http.session import session_routes
from hodei.api.http.web import mount_web
from hodei.api.principal import current_actor
from hodei.domain.errors import (
    AuthenticationError,
    ConflictError,
    FailedPreconditionError,
    HodeiError,
    NotFoundError,
    UnavailableError,
    ValidationError,
    storable,
)
from hodei.domain.logs import LogLevel, LogRecord
from hodei.domain.states import JobState
from hodei.services.logs import selected
from hodei.services.registry import Services
from hodei.store.jobs import JobFilter, parse_job_id
from hodei.store.logs import LogQuery

_STATUS: list[tuple[type[HodeiError], int]] = [
    (ValidationError, 422),
    (NotFoundError, 404),
    (ConflictError, 409),
    (FailedPreconditionError, 409),
    (AuthenticationError, 401),
    (UnavailableError, 503),
]

# RFC 6455: the endpoint refuses a message or request that breaks its rules.
WS_POLICY_VIOLATION = 1008

# Any operation: a request FastAPI cannot read (a JSON body that is not UTF-8) is answered 400.
_UNREADABLE: dict[int | str, dict[str, object]] = {
    400: {"model": Problem, "description": "The request could not be read, e.g. not UTF-8"},
}

_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": Problem, "description": "No such job"},
    409: {"model": Problem, "description": "Not possible in the job's current state"},
    503: {"model": Problem, "description": "PostgreSQL is unavailable"},
}


def http_status_for(error: HodeiError) -> int:
    """The HTTP status for a domain error: the one place that decides it."""
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500


def _error_response(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HodeiError)
    status = http_status_for(error)
    if isinstance(error, ValidationError):
        details = [
            {"loc": ["body", *v.field.split(".")], "msg": v.message, "type": "value_error"}
            for v in error.violations
        ]
        return JSONResponse({"detail": details}, status_code=status)
    headers = {"Retry-After": "1"} if error.retryable else None
    return JSONResponse({"detail": str(error)}, status_code=status, headers=headers)


def _stamped_line(line: LogRecord) -> str:
    return f"{line.timestamp.isoformat()} {line.level.name:5} {line.line}\n"


def probe_routes(services: Services) -> APIRouter:
    """/healthz and /readyz."""
    router = APIRouter()

    @router.get("/healthz", tags=["probes"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @router.get("/readyz", tags=["probes"], responses={503: {"model": Problem}})
    async def readyz() -> dict[str, str]:
        """The server can serve: PostgreSQL answers."""
        await services.check_ready()
        return {"status": "ready"}

    return router


def job_routes(services: Services) -> APIRouter:
    """QueueJob, GetJob, ListJobs and CancelJob over REST."""
    router = APIRouter()

    @router.post("/api/v1/jobs", status_code=201, tags=["jobs"], responses=_ERRORS)
    async def queue_job(definition: JobDefinition) -> QueueJobResponse:
        """Queue a job (QueueJob)."""
        job_id = await services.jobs.submit(definition.model_dump(), current_actor())
        return QueueJobResponse(job_id=job_id)

    @router.get("/api/v1/jobs", tags=["jobs"], responses=_ERRORS)
    async def list_jobs(
        state: Annotated[list[StateName] | None, Query()] = None,
        name: str = "",
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: Annotated[int, Query(ge=0, le=500)] = 0,
        page_token: str = "",
    ) -> JobList:
        """The job history, newest first (ListJobs)."""
        job_filter = JobFilter(
            states=tuple(JobState(s) for s in state or ()),
            name=storable("name", name).strip(),
            created_after=created_after,
            created_before=created_before,
        )
        page = await services.jobs.history(job_filter, page_size, page_token)
        return JobList(
            jobs=[JobOut.from_job(job) for job in page.jobs],
            next_page_token=page.next_page_token,
        )

    @router.get("/api/v1/jobs/{job_id}", tags=["jobs"], responses=_ERRORS)
    async def get_job(job_id: str) -> JobOut:
        """One job with its state (GetJob)."""
        return JobOut.from_job(await services.jobs.get(parse_job_id(job_id)))

    @router.post("/api/v1/jobs/{job_id}/cancel", tags=["jobs"], responses=_ERRORS)
    async def cancel_job(job_id: str) -> JobOut:
        """Cancel a job (CancelJob)."""
        return JobOut.from_job(await services.jobs.cancel(parse_job_id(job_id), current_actor()))

    return router


def log_routes(services: Services) -> APIRouter:
    """A job's log: pages, a download and a live WebSocket."""
    router = APIRouter()

    @router.get("/api/v1/jobs/{job_id}/logs", tags=["logs"], responses=_ERRORS)
    async def get_logs(
        job_id: str,
        after: Annotated[int, Query(ge=0, description="lines after this sequence")] = 0,
        limit: Annotated[int, Query(ge=0, le=10_000)] = 0,
        level: Annotated[list[LevelName] | None, Query(description="repeatable")] = None,
        q: Annotated[str, Query(max_length=1000, description="case-insensitive text")] = "",
    ) -> LogPage:
        """A page of the job's log after a sequence number, filtered (GetLogs)."""
        query = LogQuery(
            job_id=parse_job_id(job_id),
            after_sequence=after,
            limit=limit,
            levels=tuple(LogLevel[name] for name in level or ()),
            contains=storable("q", q),
        )
        lines, finished = await services.logs.page(query)
        return LogPage(
            lines=[LogLineOut.from_record(line) for line in lines],
            last_sequence=lines[-1].sequence if lines else after,
            job_finished=finished,
        )

    @router.get(
        "/api/v1/jobs/{job_id}/logs.txt",
        tags=["logs"],
        responses=_ERRORS | {200: {"content": {"text/plain": {}}}},
        response_class=StreamingResponse,
    )
    async def download_logs(job_id: str, timestamps: bool = False) -> StreamingResponse:
        """The whole log as a text file, one line per line of output."""
        job = await services.jobs.get(parse_job_id(job_id))
        query = LogQuery(job_id=job.id, limit=10_000)

        async def body() -> AsyncIterator[str]:
            async for chunk in services.logs.follow(query, follow=False):
                if timestamps:
                    yield "".join(_stamped_line(line) for line in chunk.records())
                else:
                    yield chunk.body + "\n"

        return StreamingResponse(
            body(),
            media_type="text/plain; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="hodei-job-{job.id}.log"'},
        )

    @router.websocket("/api/v1/jobs/{job_id}/logs/stream")
    async def stream_logs(
        websocket: WebSocket,
        job_id: str,
        from_sequence: Annotated[int, Query(ge=0)] = 0,
        level: Annotated[list[LevelName] | None, Query()] = None,
        q: Annotated[str, Query(max_length=1000)] = "",
    ) -> None:
        """History from ``from_sequence``, then live lines: ``{"type": "lines", "lines": […]}``
        messages, and ``{"type": "end", "state": …}`` once the job has ended. To resume after a
        dropped connection, reconnect with ``from_sequence`` = the last sequence seen + 1."""
        await websocket.accept()
        try:
            query = LogQuery(
                job_id=parse_job_id(job_id),
                after_sequence=max(from_sequence - 1, 0),
                levels=tuple(LogLevel[name] for name in level or ()),
                contains=storable("q", q),
            )
            async for chunk in services.logs.follow(query, follow=True):
                if batch := selected(chunk, query):
                    lines = [LogLineOut.from_record(line).model_dump(mode="json") for line in batch]
                    await websocket.send_json({"type": "lines", "lines": lines})
            job = await services.jobs.get(query.job_id)
            await websocket.send_json({"type": "end", "state": job.state.value})
            await websocket.close()
        except HodeiError as error:
            await websocket.close(code=WS_POLICY_VIOLATION, reason=str(error)[:120])
        except WebSocketDisconnect:
            return

    return router


def scheduler_routes(services: Services) -> APIRouter:
    """The queue and the workers."""
    router = APIRouter()

    @router.get("/api/v1/queue", tags=["scheduler"], responses=_ERRORS)
    async def queue_status() -> QueueStatusOut:
        """Jobs per state and the queue depth (GetQueueStatus)."""
        status = await services.scheduler.queue_status()
        return QueueStatusOut(
            jobs_by_state=status.jobs_by_state,
            queue_depth=status.queue_depth,
            delayed=status.delayed,
            ready_workers=status.ready_workers,
        )

    @router.get("/api/v1/workers", tags=["scheduler"], responses=_ERRORS)
    async def list_workers(include_terminated: bool = False) -> list[WorkerOut]:
        """Registered workers (ListWorkers)."""
        workers = await services.scheduler.workers(include_terminated)
        return [WorkerOut.from_worker(w) for w in workers]

    return router


def create_app(services: Services) -> FastAPI:
    """The HTTP application for one server."""
    app = FastAPI(
        title="Hodei Jobs",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        responses=_UNREADABLE,
    )
    app.add_exception_handler(HodeiError, _error_response)
    for routes in (
        probe_routes,
        job_routes,
        log_routes,
        scheduler_routes,
        provider_routes,
        metric_routes,
        session_routes,
    ):
        app.include_router(routes(services))
    mount_web(app)
    app.add_middleware(AuthMiddleware, authenticator=services.auth)
    return app
