"""Provider configurations in PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from psycopg.types.json import Jsonb

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
        row = await self._db.fetch_one(
            "upsert_provider",
            {
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
            },
        )
        assert row is not None
        return _from_row(row)

    async def list(self) -> list[ProviderConfig]:
        """Every provider, highest priority first."""
        return [_from_row(row) for row in await self._db.fetch_all("list_providers")]
