"""REST for what the UI charts: a job's timeline and resources, the system, the metrics."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from hodei.api.http.models import (
    EventOut,
    HostOut,
    MetricsOut,
    Problem,
    ProviderUseOut,
    ResourcesOut,
    SampleOut,
    SystemOut,
    TrendOut,
)
from hodei.services.metrics import ProviderUse
from hodei.services.registry import Services
from hodei.store.jobs import parse_job_id

_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": Problem, "description": "No such job"},
    503: {"model": Problem, "description": "PostgreSQL is unavailable"},
}


def metric_routes(services: Services) -> APIRouter:
    router = APIRouter(responses=_ERRORS)

    @router.get("/api/v1/jobs/{job_id}/events", tags=["jobs"])
    async def job_events(job_id: str) -> list[EventOut]:
        """The job's audit trail, oldest first: its timeline."""
        events = await services.jobs.events(parse_job_id(job_id))
        return [
            EventOut(
                id=e.id,
                occurred_at=e.occurred_at,
                event_type=e.event_type,
                actor=e.actor,
                payload=e.payload,
            )
            for e in events
        ]

    @router.get("/api/v1/jobs/{job_id}/resources", tags=["jobs"])
    async def job_resources(job_id: str) -> ResourcesOut:
        """CPU and memory of the job's processes, sampled every second by its worker."""
        job = await services.jobs.get(parse_job_id(job_id))
        samples = await services.metrics.samples(job.id)
        return ResourcesOut(
            samples=[
                SampleOut(
                    at=s.sampled_at,
                    attempt=s.attempt,
                    cpu_percent=round(s.cpu_percent, 1),
                    memory_mb=round(s.memory_mb, 1),
                )
                for s in samples
            ],
            job_finished=job.state.is_final,
        )

    @router.get("/api/v1/system", tags=["metrics"])
    async def system() -> SystemOut:
        """The server host's load and the workers by state."""
        health = await services.metrics.system()
        host = health.host
        return SystemOut(
            host=HostOut(
                cpu_count=host.cpu_count,
                load_1=host.load_1,
                load_5=host.load_5,
                load_15=host.load_15,
                cpu_percent=host.cpu_percent,
                memory_total_mb=host.memory_total_mb,
                memory_used_mb=host.memory_used_mb,
            ),
            workers_by_state=health.workers_by_state,
        )

    @router.get("/api/v1/metrics", tags=["metrics"])
    async def metrics(
        window: Annotated[Literal["day", "week"], Query()] = "day",
    ) -> MetricsOut:
        """Jobs by state, average duration, resources per provider and trends."""
        figures = await services.metrics.metrics(window)
        providers = {
            view.stored.config.name: view.stored.config for view in await services.providers.list()
        }
        use = {u.name: u for u in figures.providers}
        overview = figures.overview
        rows = []
        for name in sorted(set(providers) | set(use)):
            held = use.get(name) or ProviderUse(name, 0, 0.0, 0.0, 0, 0, 0)
            config = providers.get(name)
            rows.append(
                ProviderUseOut(
                    name=name,
                    type=config.type.value if config else "",
                    enabled=config.enabled if config else False,
                    workers=held.workers,
                    cpu_cores=held.cpu_cores,
                    used_cpu_cores=held.used_cpu_cores,
                    memory_mb=held.memory_mb,
                    used_memory_mb=held.used_memory_mb,
                    running_jobs=held.running_jobs,
                )
            )
        return MetricsOut(
            window=window,
            jobs_by_state=overview.jobs_by_state,
            total_jobs=overview.total_jobs,
            finished_jobs=overview.finished_jobs,
            avg_duration_ms=overview.avg_duration_ms,
            providers=rows,
            trend=[
                TrendOut(
                    bucket_start=b.bucket_start,
                    jobs=b.jobs,
                    succeeded=b.succeeded,
                    failed=b.failed,
                    avg_duration_ms=b.avg_duration_ms,
                )
                for b in figures.trend
            ],
        )

    return router
