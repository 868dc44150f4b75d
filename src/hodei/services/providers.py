"""Provider management: the use cases behind ProviderManagementService and /api/v1/providers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hodei.domain.errors import ValidationError, storable
from hodei.domain.providers import parse_provider
from hodei.store.providers import ProviderStore, StoredProvider, WorkerCounts


@dataclass(frozen=True)
class ProviderView:
    """A provider with its live workers."""

    stored: StoredProvider
    workers: WorkerCounts


class ProviderService:
    """Create, change, enable, disable and delete providers; then make the running providers
    follow (``apply``: this server's provider manager, and the others by NOTIFY)."""

    def __init__(self, store: ProviderStore, apply: Callable[[], Awaitable[None]]) -> None:
        self._store = store
        self._apply = apply

    async def list(self) -> list[ProviderView]:
        counts = await self._store.worker_counts()
        return [
            ProviderView(p, counts.get(p.config.name, WorkerCounts()))
            for p in await self._store.all()
        ]

    async def get(self, name: str) -> ProviderView:
        stored = await self._store.get(storable("name", name))
        counts = await self._store.worker_counts()
        return ProviderView(stored, counts.get(name, WorkerCounts()))

    async def create(self, raw: Mapping[str, Any], actor: str) -> ProviderView:
        """Raises ValidationError (bad fields) or ConflictError (the name is taken)."""
        stored = await self._store.create(parse_provider(raw), actor)
        await self._apply()
        return await self.get(stored.config.name)

    async def update(self, name: str, raw: Mapping[str, Any], actor: str) -> ProviderView:
        """Raises ValidationError or NotFoundError. The name cannot change."""
        storable("name", name)
        if raw.get("name", name) != name:
            raise ValidationError.single("name", "a provider cannot be renamed")
        current = await self._store.get(name)
        provider = parse_provider({**raw, "name": name}, id=current.config.id)
        await self._store.update(provider, actor)
        await self._apply()
        return await self.get(name)

    async def set_enabled(self, name: str, enabled: bool, actor: str) -> ProviderView:
        storable("name", name)
        await self._store.set_enabled(name, enabled, actor)
        await self._apply()
        return await self.get(name)

    async def delete(self, name: str, actor: str) -> None:
        storable("name", name)
        await self._store.delete(name, actor)
        await self._apply()
