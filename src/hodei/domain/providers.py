"""Providers: what starts and stops workers on demand (DESIGN.md section 6)."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from hodei.domain.errors import FieldViolation, ValidationError, unstorable


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


@dataclass(frozen=True)
class ProviderLoad:
    """What waits for a provider's kind of worker, and how busy its workers are."""

    pending: int  # runnable PENDING jobs that only this kind of worker would take
    active: dict[str, int] = field(default_factory=dict)  # worker id -> ASSIGNED/RUNNING jobs
    ready: frozenset[str] = frozenset()  # its workers that registered and take jobs


_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
MAX_PROVIDER_WORKERS = 1000
# Upper bounds of the numeric settings in ``config``.
_CONFIG_MAX = {"cpu_cores": 4096.0, "memory_mb": float(2**32), "vcpus": 1024.0}

# The settings each type of provider takes in ``config``: name -> (kind, description).
CONFIG_FIELDS: dict[ProviderType, dict[str, type]] = {
    ProviderType.LOCAL: {"cpu_cores": float, "memory_mb": int, "region": str},
    ProviderType.DOCKER: {
        "default_image": str,
        "network": str,
        "keep_containers": bool,
        "cpu_cores": float,
        "memory_mb": int,
        "docker_host": str,
        "region": str,
    },
    ProviderType.KUBERNETES: {"namespace": str, "kubeconfig": str, "region": str},
    ProviderType.FIRECRACKER: {
        "kernel_path": str,
        "rootfs_path": str,
        "vcpus": int,
        "memory_mb": int,
        "region": str,
    },
}


# The network modes a docker provider's containers may use.
DOCKER_NETWORKS = ("none", "host", "bridge")

Fail = Callable[[str, str], None]


def parse_provider(raw: Mapping[str, Any], *, id: str | None = None) -> ProviderConfig:
    """A provider from its API form, or a ValidationError naming every bad field."""
    problems: list[FieldViolation] = []

    def fail(where: str, message: str) -> None:
        problems.append(FieldViolation(where, message))

    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        fail("name", "1-63 lowercase letters, digits or '-', starting with a letter or digit")
    try:
        kind = ProviderType(str(raw.get("type", "")).lower())
    except ValueError:
        fail("type", f"one of {', '.join(t.value for t in ProviderType)}")
        kind = ProviderType.LOCAL
    numbers = _numbers(raw, fail)
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        fail("enabled", "must be true or false")
    settings = _settings(kind, raw.get("config") or {}, fail)
    if problems:
        raise ValidationError(problems)
    return ProviderConfig(
        name=str(name),
        type=kind,
        enabled=bool(enabled),
        priority=numbers["priority"],
        min_workers=numbers["min_workers"],
        max_workers=numbers["max_workers"],
        idle_timeout=timedelta(seconds=numbers["idle_timeout_s"]),
        config=settings,
        id=id or str(uuid.uuid4()),
    )


def _numbers(raw: Mapping[str, Any], fail: Fail) -> dict[str, int]:
    numbers: dict[str, int] = {}
    for key, low, high, default in (
        ("priority", -1000, 1000, 0),
        ("min_workers", 0, MAX_PROVIDER_WORKERS, 0),
        ("max_workers", 0, MAX_PROVIDER_WORKERS, 2),
        ("idle_timeout_s", 0, 7 * 24 * 3600, 300),
    ):
        value = raw.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value != int(value)
        ):
            fail(key, "must be a whole number")
            numbers[key] = default
        elif not low <= value <= high:
            fail(key, f"must be between {low} and {high}, got {int(value)}")
            numbers[key] = default
        else:
            numbers[key] = int(value)
    if numbers["min_workers"] > numbers["max_workers"]:
        fail("max_workers", "must be at least min_workers")
    return numbers


def _settings(kind: ProviderType, config: object, fail: Fail) -> dict[str, Any]:
    """The type-specific settings; empty ones are left to their defaults."""
    if not isinstance(config, Mapping):
        fail("config", "must be an object")
        return {}
    allowed = CONFIG_FIELDS[kind]
    settings: dict[str, Any] = {}
    for key, value in config.items():
        wanted, where = allowed.get(key), f"config.{key}"
        if wanted is None:
            fail(where, f"not a setting of a {kind.value} provider ({', '.join(allowed)})")
        elif value in ("", None):
            continue
        elif wanted is bool:
            if isinstance(value, bool):
                settings[key] = value
            else:
                fail(where, "must be true or false")
        elif wanted is str:
            if not isinstance(value, str) or len(value) > 1024:
                fail(where, "must be text of at most 1024 characters")
            elif problem := unstorable(value):
                fail(where, problem)
            else:
                settings[key] = value
        elif isinstance(value, bool) or not _positive(wanted, value, _CONFIG_MAX[key]):
            fail(where, f"must be a number above 0 and at most {_CONFIG_MAX[key]:g}")
        else:
            settings[key] = wanted(value)
    if kind is ProviderType.DOCKER and settings.get("network", "none") not in DOCKER_NETWORKS:
        fail("config.network", f"one of {', '.join(DOCKER_NETWORKS)}")
    return settings


def _positive(kind: type, value: object, most: float) -> bool:
    """Whether ``value`` is a finite number of ``kind`` in (0, most]."""
    try:
        number = kind(value)
        return bool(0 < number <= most) and math.isfinite(number)
    except (TypeError, ValueError, OverflowError):
        return False
