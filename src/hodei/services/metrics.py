"""What the dashboard, the job page's charts and the metrics page show."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import psutil

from hodei.domain.errors import ValidationError
from hodei.domain.workers import Worker
from hodei.store.metrics import MetricsRepository, Overview, ResourceSample, TrendBucket
from hodei.store.workers import WorkerRepository

# window -> (its length, the width of a trend bucket)
WINDOWS = {
    "day": (timedelta(days=1), timedelta(hours=1)),
    "week": (timedelta(days=7), timedelta(hours=6)),
}


@dataclass(frozen=True)
class HostLoad:
    cpu_count: int
    load_1: float
    load_5: float
    load_15: float
    cpu_percent: float
    memory_total_mb: int
    memory_used_mb: int


@dataclass(frozen=True)
class SystemHealth:
    host: HostLoad
    workers_by_state: dict[str, int]


@dataclass(frozen=True)
class ProviderUse:
    name: str
    workers: int
    cpu_cores: float
    used_cpu_cores: float
    memory_mb: int
    used_memory_mb: int
    running_jobs: int


@dataclass(frozen=True)
class Metrics:
    window: str
    overview: Overview
    providers: list[ProviderUse]
    trend: list[TrendBucket]


# The aggregates over a day or a week of jobs cost up to a few hundred ms with 100,000 jobs; a
# page that refreshes every few seconds gets them at most this old.
METRICS_MAX_AGE_SECONDS = 5.0


class MetricsService:
    def __init__(self, metrics: MetricsRepository, workers: WorkerRepository) -> None:
        self._metrics = metrics
        self._workers = workers
        self._cached: dict[str, tuple[float, Metrics]] = {}
        psutil.cpu_percent(None)  # the first call only starts the measurement

    async def samples(self, job_id: str) -> list[ResourceSample]:
        return await self._metrics.samples(job_id)

    async def system(self) -> SystemHealth:
        load = os.getloadavg()
        memory = psutil.virtual_memory()
        workers = await self._workers.list()
        return SystemHealth(
            HostLoad(
                cpu_count=os.cpu_count() or 1,
                load_1=load[0],
                load_5=load[1],
                load_15=load[2],
                cpu_percent=psutil.cpu_percent(None),
                memory_total_mb=memory.total // 2**20,
                memory_used_mb=(memory.total - memory.available) // 2**20,
            ),
            dict(Counter(w.state.value for w in workers)),
        )

    async def metrics(self, window: str) -> Metrics:
        if window not in WINDOWS:
            raise ValidationError.single("window", f"one of {', '.join(WINDOWS)}, got {window!r}")
        cached = self._cached.get(window)
        if cached is not None and time.monotonic() - cached[0] < METRICS_MAX_AGE_SECONDS:
            figures = cached[1]
        else:
            length, step = WINDOWS[window]
            overview = await self._metrics.overview(length)
            trend = await self._metrics.trend(step, int(length / step))
            figures = Metrics(window, overview, [], trend)
            self._cached[window] = (time.monotonic(), figures)
        # What workers hold is cheap and changes by the second: always fresh.
        workers = await self._workers.list()
        return Metrics(window, figures.overview, provider_use(workers), figures.trend)


def provider_use(workers: list[Worker]) -> list[ProviderUse]:
    """What the live workers of each provider offer and hold."""
    by_provider: dict[str, list[Worker]] = {}
    for worker in workers:
        by_provider.setdefault(worker.provider, []).append(worker)
    return [
        ProviderUse(
            name=name,
            workers=len(group),
            cpu_cores=sum(w.info.cpu_cores for w in group),
            used_cpu_cores=sum(w.used_cpu_cores for w in group),
            memory_mb=sum(w.info.memory_mb for w in group),
            used_memory_mb=sum(w.used_memory_mb for w in group),
            running_jobs=sum(w.running_jobs for w in group),
        )
        for name, group in sorted(by_provider.items())
    ]
