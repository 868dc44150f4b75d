"""Starts the enabled providers from the ``providers`` table and answers for all of them."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from hodei.domain.placement import WorkerProfile
from hodei.domain.providers import ProviderConfig, ProviderType
from hodei.providers.base import Provider, ProviderContext, ProviderUnavailableError
from hodei.providers.docker import DockerProvider
from hodei.providers.local import LocalProvider
from hodei.store.providers import ProviderRepository

log = logging.getLogger(__name__)

# A provider that could not start (its engine did not answer) is tried again after this long,
# doubled each time up to the maximum.
RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 60.0


class ProviderManager:
    """The running providers of this server."""

    def __init__(self, repository: ProviderRepository, context: ProviderContext) -> None:
        self._repository = repository
        self._context = context
        self._providers: list[Provider] = []
        self._lock = asyncio.Lock()
        self._stopped = False
        self._unavailable: dict[str, str] = {}  # provider name -> why it could not start
        self._retry: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start every enabled provider this server knows how to run."""
        await self.reconcile()

    async def reconcile(self) -> None:
        """Run what the ``providers`` table says: start the providers enabled since, stop the
        ones disabled or deleted, restart the ones whose workers must change, and let the
        others take their new scaling settings as they run."""
        async with self._lock:
            if self._stopped:
                return  # the server is stopping: a late notification must not start anything
            wanted = {c.name: c for c in await self._repository.list() if c.enabled}
            for current in list(self._providers):
                config = wanted.get(current.config.name)
                if (
                    config is not None
                    and _same_workers(current.config, config)
                    and (current.config == config or current.reconfigure(config))
                ):
                    continue
                log.info("stopping provider %s", current.config.name)
                await current.stop()
                self._providers.remove(current)
            running = {p.config.name for p in self._providers}
            self._unavailable = {}
            for config in wanted.values():
                if config.name not in running:
                    await self._start(config)
            if self._unavailable and self._retry is None:
                self._retry = asyncio.create_task(self._retry_unavailable(), name="hodei-providers")

    async def _start(self, config: ProviderConfig) -> None:
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
            return
        try:
            await provider.start()
        except ProviderUnavailableError as exc:
            log.error("%s; its jobs go to other workers until it answers", exc)
            self._unavailable[config.name] = str(exc)
            return
        self._providers.append(provider)

    async def _retry_unavailable(self) -> None:
        """Try the providers that could not start again, less and less often, until they do."""
        delay = RETRY_SECONDS
        try:
            while self._unavailable and not self._stopped:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)
                await self.reconcile()
        finally:
            self._retry = None

    def unavailable(self) -> dict[str, str]:
        """The enabled providers that could not start, and why."""
        return dict(self._unavailable)

    async def stop(self) -> None:
        """Stop every provider (and so every worker they started), for good."""
        async with self._lock:
            self._stopped = True
            retry, self._retry = self._retry, None
            if retry is not None:
                retry.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retry
            for provider in reversed(self._providers):
                await provider.stop()
            self._providers.clear()

    def running(self) -> list[str]:
        """The names of the providers running now."""
        return [provider.config.name for provider in self._providers]

    def profiles(self) -> list[WorkerProfile]:
        """The shape of the workers each running provider starts (none for one that will start
        no worker: a local provider of 0 workers, a provider of at most 0)."""
        return [
            provider.worker_profile()
            for provider in self._providers
            if provider.config.max_workers > 0
            and (provider.config.type is not ProviderType.LOCAL or provider.config.min_workers > 0)
        ]


def _same_workers(running: ProviderConfig, wanted: ProviderConfig) -> bool:
    """Whether the workers a running provider started are what ``wanted`` asks for; if not it
    must restart (which stops its workers and hands their jobs back)."""
    return (running.type, dict(running.config)) == (wanted.type, dict(wanted.config))
