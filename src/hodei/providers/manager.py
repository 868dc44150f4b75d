"""Starts the enabled providers from the ``providers`` table and answers for all of them."""

from __future__ import annotations

import asyncio
import logging

from hodei.domain.placement import WorkerProfile
from hodei.domain.providers import ProviderConfig, ProviderType
from hodei.providers.base import Provider, ProviderContext, ProviderUnavailableError
from hodei.providers.docker import DockerProvider
from hodei.providers.local import LocalProvider
from hodei.store.providers import ProviderRepository

log = logging.getLogger(__name__)


class ProviderManager:
    """The running providers of this server."""

    def __init__(self, repository: ProviderRepository, context: ProviderContext) -> None:
        self._repository = repository
        self._context = context
        self._providers: list[Provider] = []
        self._lock = asyncio.Lock()
        self._stopped = False

    async def start(self) -> None:
        """Start every enabled provider this server knows how to run."""
        await self.reconcile()

    async def reconcile(self) -> None:
        """Run what the ``providers`` table says: start the providers enabled since, stop the
        ones disabled or deleted, restart the ones whose settings changed."""
        async with self._lock:
            if self._stopped:
                return  # the server is stopping: a late notification must not start anything
            wanted = {c.name: c for c in await self._repository.list() if c.enabled}
            for current in list(self._providers):
                if not _runs_as(current.config, wanted.get(current.config.name)):
                    log.info("stopping provider %s", current.config.name)
                    await current.stop()
                    self._providers.remove(current)
            running = {p.config.name for p in self._providers}
            for config in wanted.values():
                if config.name in running:
                    continue
                provider: Provider
                if config.type is ProviderType.LOCAL:
                    provider = LocalProvider(config, self._context)
                elif config.type is ProviderType.DOCKER:
                    provider = DockerProvider(config, self._context)
                else:
                    log.warning(
                        "provider %s of type %s is enabled but this server cannot run it yet",
                        config.name,
                        config.type.value,
                    )
                    continue
                try:
                    await provider.start()
                except ProviderUnavailableError as exc:
                    log.error("%s; its jobs go to other workers until it answers", exc)
                    continue
                self._providers.append(provider)

    async def stop(self) -> None:
        """Stop every provider (and so every worker they started), for good."""
        async with self._lock:
            self._stopped = True
            for provider in reversed(self._providers):
                await provider.stop()
            self._providers.clear()

    def profiles(self) -> list[WorkerProfile]:
        """The shape of the workers each running provider starts."""
        return [provider.worker_profile() for provider in self._providers]


def _runs_as(running: ProviderConfig, wanted: ProviderConfig | None) -> bool:
    """Whether a running provider can go on as ``wanted`` says (None: disabled or deleted).
    Only what shapes its workers matters: restarting stops every worker and hands their jobs
    back, so a change of priority or idle timeout must not."""
    return wanted is not None and (
        running.type,
        running.min_workers,
        running.max_workers,
        dict(running.config),
    ) == (wanted.type, wanted.min_workers, wanted.max_workers, dict(wanted.config))
