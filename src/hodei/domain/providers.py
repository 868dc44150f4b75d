"""Providers: what starts and stops workers on demand (DESIGN.md section 6)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any


class ProviderType(StrEnum):
    LOCAL = "local"
    DOCKER = "docker"
    KUBERNETES = "kubernetes"
    FIRECRACKER = "firecracker"


@dataclass(frozen=True)
class ProviderConfig:
    """A provider as stored in the ``providers`` table."""

    name: str
    type: ProviderType
    enabled: bool = True
    priority: int = 0
    min_workers: int = 0
    max_workers: int = 2
    idle_timeout: timedelta = timedelta(minutes=5)
    config: Mapping[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
