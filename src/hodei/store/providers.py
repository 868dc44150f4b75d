"""Provider configurations in PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from hodei.domain.errors import ConflictError, NotFoundError
from hodei.domain.providers import ProviderConfig, ProviderType
from hodei.store.database import Database, Row


def _from_row(row: Row) -> ProviderConfig:
    return ProviderConfig(
        id=str(row["id"]),
        name=row["name"],
        type=ProviderType(row["type"]),
        enabled=row["enabled"],
        priority=row["priority"],
        min_workers=row["min_workers"],
        max_workers=row["max_workers"],
        idle_timeout=timedelta(seconds=row["idle_timeout_s"]),
        config=row["config"],
    )


class ProviderRepository:
    """Reads and writes ``providers``; every write is audited."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert(self, provider: ProviderConfig, actor: str) -> ProviderConfig:
        """Create the provider, or update the one with the same name."""
        row = await self._db.fetch_one("upsert_provider", _params(provider, actor))
        assert row is not None
        return _from_row(row)

    async def list(self) -> list[ProviderConfig]:
        """Every provider, highest priority first."""
        return [_from_row(row) for row in await self._db.fetch_all("list_providers")]


@dataclass(frozen=True)
class StoredProvider:
    """A provider with when it was created and last changed."""

    config: ProviderConfig
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class WorkerCounts:
    total: int = 0
    ready: int = 0
    busy: int = 0


def _stored(row: Row) -> StoredProvider:
    return StoredProvider(_from_row(row), row["created_at"], row["updated_at"])


def _params(provider: ProviderConfig, actor: str) -> dict[str, Any]:
    return {
        "id": provider.id,
        "name": provider.name,
        "type": provider.type.value,
        "enabled": provider.enabled,
        "priority": provider.priority,
        "min_workers": provider.min_workers,
        "max_workers": provider.max_workers,
        "idle_timeout_s": int(provider.idle_timeout.total_seconds()),
        "config": Jsonb(dict(provider.config)),
        "actor": actor,
    }


class ProviderStore:
    """The provider management operations: each one statement, audited."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def all(self) -> list[StoredProvider]:
        return [_stored(row) for row in await self._db.fetch_all("list_providers")]

    async def get(self, name: str) -> StoredProvider:
        row = await self._db.fetch_one("get_provider", {"name": name})
        if row is None:
            raise NotFoundError(f"no provider named {name!r}")
        return _stored(row)

    async def create(self, provider: ProviderConfig, actor: str) -> StoredProvider:
        row = await self._db.fetch_one("insert_provider", _params(provider, actor))
        if row is None:
            raise ConflictError(f"a provider named {provider.name!r} exists already")
        return _stored(row)

    async def update(self, provider: ProviderConfig, actor: str) -> StoredProvider:
        row = await self._db.fetch_one("update_provider", _params(provider, actor))
        if row is None:
            raise NotFoundError(f"no provider named {provider.name!r}")
        return _stored(row)

    async def set_enabled(self, name: str, enabled: bool, actor: str) -> StoredProvider:
        row = await self._db.fetch_one(
            "set_provider_enabled", {"name": name, "enabled": enabled, "actor": actor}
        )
        if row is None:
            raise NotFoundError(f"no provider named {name!r}")
        return _stored(row)

    async def delete(self, name: str, actor: str) -> None:
        if await self._db.fetch_one("delete_provider", {"name": name, "actor": actor}) is None:
            raise NotFoundError(f"no provider named {name!r}")

    async def worker_counts(self) -> dict[str, WorkerCounts]:
        rows = await self._db.fetch_all("provider_worker_counts")
        return {
            row["provider"]: WorkerCounts(int(row["total"]), int(row["ready"]), int(row["busy"]))
            for row in rows
        }
