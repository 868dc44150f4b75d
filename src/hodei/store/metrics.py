"""Job resource samples and the aggregate figures behind the metrics page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hodei.store.database import Database
from hodei.store.jobs import parse_job_id

MAX_SAMPLES = 20_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ResourceSample:
    job_id: str
    attempt: int
    sampled_at: datetime
    cpu_percent: float
    memory_mb: float


@dataclass(frozen=True)
class TrendBucket:
    bucket_start: datetime
    jobs: int
    succeeded: int
    failed: int
    avg_duration_ms: float | None


@dataclass(frozen=True)
class Overview:
    jobs_by_state: dict[str, int]
    total_jobs: int
    finished_jobs: int
    avg_duration_ms: float | None


class MetricsRepository:
    """Reads and writes ``job_resource_samples``; aggregates ``jobs``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def store_samples(self, worker_id: str, samples: Sequence[ResourceSample]) -> None:
        """Store samples of the attempts this worker holds (others are dropped)."""
        if not samples:
            return
        await self._db.fetch_all(
            "store_resource_samples",
            {
                "worker_id": worker_id,
                "job_ids": [parse_job_id(s.job_id) for s in samples],
                "attempts": [s.attempt for s in samples],
                "sampled_at": [s.sampled_at for s in samples],
                "cpu_percent": [s.cpu_percent for s in samples],
                "memory_mb": [s.memory_mb for s in samples],
            },
        )

    async def samples(self, job_id: str) -> list[ResourceSample]:
        rows = await self._db.fetch_all(
            "job_resource_samples", {"job_id": parse_job_id(job_id), "limit": MAX_SAMPLES}
        )
        return [
            ResourceSample(
                job_id, row["attempt"], row["sampled_at"], row["cpu_percent"], row["memory_mb"]
            )
            for row in rows
        ]

    async def overview(self, window: timedelta) -> Overview:
        since = datetime.now(UTC) - window
        row = await self._db.fetch_one("metrics_overview", {"since": since})
        assert row is not None
        by_state = {str(k): int(v) for k, v in row["jobs_by_state"].items()}
        return Overview(
            jobs_by_state=by_state,
            total_jobs=sum(by_state.values()),
            finished_jobs=int(row["finished_jobs"]),
            avg_duration_ms=row["avg_duration_ms"],
        )

    async def trend(self, step: timedelta, buckets: int) -> list[TrendBucket]:
        """``buckets`` buckets of ``step`` (aligned on the epoch), the last one holding now."""
        now = datetime.now(UTC)
        current = _EPOCH + (now - _EPOCH) // step * step
        since = current - step * (buckets - 1)
        params: dict[str, Any] = {"step": step, "buckets": buckets, "since": since}
        return [
            TrendBucket(
                row["bucket_start"],
                int(row["jobs"]),
                int(row["succeeded"]),
                int(row["failed"]),
                row["avg_duration_ms"],
            )
            for row in await self._db.fetch_all("metrics_trend", params)
        ]
