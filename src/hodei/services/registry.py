"""The application services a server exposes, handed to both API layers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hodei.services.auth import Authenticator
from hodei.services.jobs import JobService
from hodei.services.logs import LogService
from hodei.services.metrics import MetricsService
from hodei.services.providers import ProviderService
from hodei.services.scheduler import SchedulerService
from hodei.services.workers import WorkerService


@dataclass(frozen=True)
class Services:
    jobs: JobService
    logs: LogService
    scheduler: SchedulerService
    workers: WorkerService
    providers: ProviderService
    metrics: MetricsService
    # Raises when the server cannot serve (e.g. PostgreSQL does not answer).
    check_ready: Callable[[], Awaitable[None]]
    auth: Authenticator
