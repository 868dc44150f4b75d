"""Workers as the scheduler sees them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class WorkerState(StrEnum):
    READY = "READY"
    DRAINING = "DRAINING"
    DISCONNECTED = "DISCONNECTED"
    TERMINATED = "TERMINATED"


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker says about itself when it registers."""

    hostname: str
    arch: str
    runtime: str
    cpu_cores: float
    memory_mb: int
    region: str = ""
    gpus: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    version: str = ""


@dataclass(frozen=True)
class Worker:
    """A registered worker and what it holds right now."""

    id: str
    provider: str
    state: WorkerState
    info: WorkerInfo
    used_cpu_cores: float
    used_memory_mb: int
    running_jobs: int
    registered_at: datetime
    last_heartbeat_at: datetime
    # As its last heartbeat said (None until one did).
    cpu_percent: float | None = None
    memory_used_mb: int | None = None
