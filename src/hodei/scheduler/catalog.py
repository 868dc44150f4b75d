"""Decides whether a job could ever run: fits a live worker or what an enabled provider starts."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from hodei.domain.jobs import JobSpec
from hodei.domain.placement import (
    PROCESS_RUNTIME,
    RuntimeMix,
    WorkerProfile,
    unschedulable_reason,
)
from hodei.store.workers import WorkerRepository

ProfileSource = Callable[[], list[WorkerProfile]]


class CapacityCatalog:
    """A short-lived cache of every worker shape that exists or can be started."""

    def __init__(
        self,
        workers: WorkerRepository,
        provider_profiles: ProfileSource,
        *,
        fresh: timedelta,
        ttl: float = 2.0,
    ) -> None:
        self._workers = workers
        self._fresh = fresh  # a worker silent for longer (a lease) does not count
        self._provider_profiles = provider_profiles
        self._ttl = ttl
        self._live: list[WorkerProfile] = []
        self._loaded_at = float("-inf")

    def invalidate(self) -> None:
        """Forget the cache (a worker registered or left)."""
        self._loaded_at = float("-inf")

    async def _profiles(self, *, fresh: bool) -> list[WorkerProfile]:
        if fresh or time.monotonic() - self._loaded_at > self._ttl:
            self._live = await self._workers.live_profiles(self._fresh)
            self._loaded_at = time.monotonic()
        return self._provider_profiles() + self._live

    async def unschedulable_reason(self, spec: JobSpec) -> str | None:
        """None when some worker or enabled provider can run the job, else why none can."""
        reason = unschedulable_reason(spec, await self._profiles(fresh=False))
        if reason is not None:
            # Never fail a job on stale knowledge: look again before saying no.
            reason = unschedulable_reason(spec, await self._profiles(fresh=True))
        return reason

    async def has_container_runtime(self) -> bool:
        """Whether any worker or enabled provider runs jobs in containers."""
        profiles = await self._profiles(fresh=False)
        return any(p.runtime != PROCESS_RUNTIME for p in profiles)

    async def runtime_mix(self) -> RuntimeMix:
        """Which kinds of worker exist or can be started."""
        return RuntimeMix.of(await self._profiles(fresh=False))
