"""Figures of bench/dispatch.py: percentiles, job timelines and per-statement times."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import DictRow

from hodei.store.queries import load_queries

STATEMENT_STATS = """/* bench */
SELECT s.query, s.calls, s.total_exec_time
FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
WHERE d.datname = current_database() AND s.query NOT LIKE '/* bench */%%'
  AND s.query NOT LIKE '%%pg_stat_statements_reset%%'
ORDER BY s.total_exec_time DESC
LIMIT %(limit)s
"""


@dataclass(frozen=True)
class Summary:
    """Percentiles of a sample, in milliseconds."""

    n: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        nan = float("nan")
        return Summary(0, nan, nan, nan, nan, nan)
    ordered = sorted(values)
    return Summary(
        n=len(ordered),
        p50=percentile(ordered, 0.50),
        p90=percentile(ordered, 0.90),
        p99=percentile(ordered, 0.99),
        max=ordered[-1],
        mean=sum(ordered) / len(ordered),
    )


def millis(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds() * 1000


@dataclass(frozen=True)
class Timeline:
    """One job's lifecycle: server instants (audit_logs) and worker instants (jobs row)."""

    job_id: str
    state: str
    created: datetime | None
    assigned: datetime | None
    started: datetime | None
    running: datetime | None
    finished: datetime | None
    ended: datetime | None


# The hops of one job, as (label, from, to) over Timeline fields. "started" and "finished" are
# read from the worker's clock, which is this host's clock too. A trivial job often finishes
# before the server has written RUNNING, so "started -> RUNNING" and "started -> finished" overlap.
SUBMIT_TO_RUNNING = "submit -> RUNNING     (created -> RUNNING)"
HOPS = (
    ("created -> assigned   (insert commit, wake, claim)", "created", "assigned"),
    ("assigned -> started   (claim commit, gRPC, spawn)", "assigned", "started"),
    ("started -> RUNNING    (JobStarted back, write)", "started", "running"),
    ("started -> finished   (process runs, pipes drain)", "started", "finished"),
    ("finished -> ended     (JobResult back, write)", "finished", "ended"),
    (SUBMIT_TO_RUNNING, "created", "running"),
    ("submit -> SUCCEEDED   (created -> ended)", "created", "ended"),
)


def hop_summaries(timelines: Sequence[Timeline]) -> dict[str, Summary]:
    result = {}
    for label, start, end in HOPS:
        values = [
            value
            for t in timelines
            if (value := millis(getattr(t, end), getattr(t, start))) is not None
        ]
        result[label] = summarize(values)
    return result


@dataclass(frozen=True)
class StatementStat:
    """One statement's executions during a phase (execution only: no commit, no round trip)."""

    name: str
    calls: int
    mean_ms: float
    total_ms: float


_LITERALS = re.compile(r"'(?:[^']|'')*'|%\(\w+\)s|\$\d+|\b\d+(?:\.\d+)?(?:e-?\d+)?\b")
_SIGNATURE_LENGTH = 80


def statement_signature(text: str) -> str:
    """Text with every constant and placeholder as ``?`` and no whitespace, cut short: the
    same for a query in queries.sql and as pg_stat_statements normalised it."""
    text = _LITERALS.sub("?", text.replace("%%", "%"))
    return re.sub(r"\s+", "", text).rstrip(";")[:_SIGNATURE_LENGTH]


class StatementMeter:
    """Resets and reads pg_stat_statements, naming statements after queries.sql."""

    def __init__(self, db: psycopg.AsyncConnection[DictRow], enabled: bool) -> None:
        self._db = db
        self.enabled = enabled
        self._names = {statement_signature(sql): name for name, sql in load_queries().items()}

    async def reset(self) -> None:
        if self.enabled:
            await self._db.execute("SELECT pg_stat_statements_reset()")

    async def read(self, limit: int = 10) -> list[StatementStat]:
        """The statements that took most time since the reset; one line per named query (the
        same query may have several entries, one per combination of parameter types)."""
        if not self.enabled:
            return []
        cursor = await self._db.execute(STATEMENT_STATS, {"limit": 4 * limit})
        calls: Counter[str] = Counter()
        total_ms: dict[str, float] = {}
        for row in await cursor.fetchall():
            signature = statement_signature(row["query"])
            name = self._names.get(signature) or " ".join(row["query"].split())[:48]
            calls[name] += int(row["calls"])
            total_ms[name] = total_ms.get(name, 0.0) + float(row["total_exec_time"])
        ranked = sorted(total_ms, key=total_ms.__getitem__, reverse=True)[:limit]
        return [
            StatementStat(name, calls[name], total_ms[name] / max(calls[name], 1), total_ms[name])
            for name in ranked
        ]
