"""What a job is: its definition (the fields of the web form), validated, and its stored record."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any

from hodei.domain.errors import FieldViolation, ValidationError, unstorable
from hodei.domain.states import JobState


class CommandType(StrEnum):
    """How the script is run."""

    SHELL = "SHELL"
    DOCKER_EXEC = "DOCKER_EXEC"
    PYTHON = "PYTHON"
    NODE = "NODE"

    @property
    def needs_container(self) -> bool:
        """DOCKER_EXEC only makes sense inside a container image."""
        return self is CommandType.DOCKER_EXEC


class Priority(IntEnum):
    """Higher runs first; FIFO within one priority."""

    LOW = 1
    NORMAL = 2
    HIGH = 3


ARCHES = ("x86_64", "arm64")
_ARCH_ALIASES = {"amd64": "x86_64", "x86-64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}

MAX_NAME_LENGTH = 200
MAX_SCRIPT_BYTES = 1024 * 1024
MAX_IMAGE_LENGTH = 512
MAX_ENV_ENTRIES = 256
MAX_ENV_VALUE_BYTES = 32 * 1024
MAX_LABELS = 64
MAX_LABEL_VALUE_LENGTH = 256
MIN_CPU_CORES = 0.01
MAX_CPU_CORES = 256.0
MAX_MEMORY_MB = 4 * 1024 * 1024
MAX_STORAGE_MB = 16 * 1024 * 1024
MAX_TIMEOUT_MS = 30 * 24 * 3600 * 1000
MAX_ATTEMPTS = 100
DEFAULT_CPU_CORES = 1.0
DEFAULT_MEMORY_MB = 512
DEFAULT_RETRY_ATTEMPTS = 3

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$")
_IDENTIFIER = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]*$")


@dataclass(frozen=True)
class Resources:
    """What the job needs from its worker."""

    cpu_cores: float = DEFAULT_CPU_CORES
    memory_mb: int = DEFAULT_MEMORY_MB
    storage_mb: int = 0
    timeout_ms: int = 0
    gpu_required: bool = False
    arch: str = ""


@dataclass(frozen=True)
class Preferences:
    """Where and how eagerly the job runs."""

    provider: str = ""
    region: str = ""
    priority: Priority = Priority.NORMAL
    allow_retry: bool = False
    max_attempts: int = 1


@dataclass(frozen=True)
class JobSpec:
    """A validated job definition. Build it with :func:`parse_job_spec`."""

    name: str
    command_type: CommandType
    script: str
    image: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    secret_env: Mapping[str, str] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    preferences: Preferences = field(default_factory=Preferences)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """A stored job with where it is in its life."""

    id: str
    spec: JobSpec
    state: JobState
    attempt: int
    worker_id: str | None
    created_at: datetime
    assigned_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    error_message: str = ""
    log_truncated: bool = False
    notice: str = ""  # e.g. that its image was not applied


class _Checker:
    """Collects every violation so one error names all the fields at fault."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def fail(self, field_name: str, message: str) -> None:
        self.violations.append(FieldViolation(field_name, message))

    def raise_if_any(self) -> None:
        if self.violations:
            raise ValidationError(self.violations)


def _text(raw: Mapping[str, Any], key: str, where: str, check: _Checker) -> str:
    value = raw.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        check.fail(where, f"must be a string, got {type(value).__name__}")
        return ""
    return value


def _number(raw: Mapping[str, Any], key: str, where: str, check: _Checker) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        check.fail(where, f"must be a number, got {type(value).__name__}")
        return None
    if not math.isfinite(value):
        check.fail(where, "must be a finite number")
        return None
    return float(value)


def _integer(
    raw: Mapping[str, Any], key: str, where: str, check: _Checker, low: int, high: int
) -> int | None:
    """An integer within [low, high]; None when absent or zero (meaning "the default")."""
    value = _number(raw, key, where, check)
    if value is None or value == 0:
        return None
    if value != int(value):
        check.fail(where, f"must be a whole number, got {value:g}")
        return None
    if not low <= value <= high:
        check.fail(where, f"must be between {low} and {high}, got {int(value)}")
        return None
    return int(value)


def _string_map(raw: Mapping[str, Any], key: str, where: str, check: _Checker) -> dict[str, str]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        check.fail(where, "must be a map of strings to strings")
        return {}
    result: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            check.fail(f"{where}.{k}", "keys and values must be strings")
            continue
        if problem := unstorable(k):
            check.fail(f"{where}.{k!r}", f"the name {problem}")  # repr: the field must be sendable
            continue
        if problem := unstorable(v):
            check.fail(f"{where}.{k}", f"the value {problem}")
            continue
        result[k] = v
    return result


def _check_env(env: Mapping[str, str], where: str, check: _Checker) -> None:
    if len(env) > MAX_ENV_ENTRIES:
        check.fail(where, f"at most {MAX_ENV_ENTRIES} variables, got {len(env)}")
    for name, value in env.items():
        if not _ENV_NAME.fullmatch(name):
            check.fail(
                f"{where}.{name}",
                "a variable name is letters, digits and _, not starting with a digit",
            )
        if "\x00" in value:
            check.fail(f"{where}.{name}", "the value must not contain a NUL character")
        elif len(value.encode()) > MAX_ENV_VALUE_BYTES:
            check.fail(f"{where}.{name}", f"the value is longer than {MAX_ENV_VALUE_BYTES} bytes")


def _check_labels(labels: Mapping[str, str], check: _Checker) -> None:
    if len(labels) > MAX_LABELS:
        check.fail("labels", f"at most {MAX_LABELS} labels, got {len(labels)}")
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key):
            check.fail(
                f"labels.{key}",
                "a label key is 1-63 letters, digits, '.', '_', '/' or '-', "
                "starting and ending with a letter or digit",
            )
        if len(value) > MAX_LABEL_VALUE_LENGTH:
            check.fail(f"labels.{key}", f"the value is longer than {MAX_LABEL_VALUE_LENGTH}")


def normalize_arch(value: str) -> str | None:
    """``amd64``/``aarch64`` style names to ``x86_64``/``arm64``; None when unknown."""
    lowered = value.strip().lower()
    if lowered in ARCHES:
        return lowered
    return _ARCH_ALIASES.get(lowered)


def _parse_resources(raw: Mapping[str, Any], check: _Checker) -> Resources:
    where = "resources"
    cpu = _number(raw, "cpu_cores", f"{where}.cpu_cores", check)
    if cpu is None or cpu == 0:
        cpu = DEFAULT_CPU_CORES
    elif not MIN_CPU_CORES <= cpu <= MAX_CPU_CORES:
        check.fail(
            f"{where}.cpu_cores",
            f"must be between {MIN_CPU_CORES} and {MAX_CPU_CORES}, got {cpu:g}",
        )
    memory = _integer(raw, "memory_mb", f"{where}.memory_mb", check, 1, MAX_MEMORY_MB)
    storage = _integer(raw, "storage_mb", f"{where}.storage_mb", check, 1, MAX_STORAGE_MB)
    timeout = _integer(raw, "timeout_ms", f"{where}.timeout_ms", check, 1, MAX_TIMEOUT_MS)
    gpu = raw.get("gpu_required", False)
    if not isinstance(gpu, bool):
        check.fail(f"{where}.gpu_required", "must be true or false")
        gpu = False
    arch_raw = _text(raw, "arch", f"{where}.arch", check)
    arch = ""
    if arch_raw.strip():
        normalized = normalize_arch(arch_raw)
        if normalized is None:
            check.fail(f"{where}.arch", f"must be one of {', '.join(ARCHES)}, got {arch_raw!r}")
        else:
            arch = normalized
    return Resources(
        cpu_cores=cpu,
        memory_mb=memory or DEFAULT_MEMORY_MB,
        storage_mb=storage or 0,
        timeout_ms=timeout or 0,
        gpu_required=gpu,
        arch=arch,
    )


def _parse_priority(value: Any, check: _Checker) -> Priority:
    if value in (None, "", 0, "PRIORITY_UNSPECIFIED"):
        return Priority.NORMAL
    if isinstance(value, str) and value.upper() in Priority.__members__:
        return Priority[value.upper()]
    if isinstance(value, int) and not isinstance(value, bool) and value in (1, 2, 3):
        return Priority(value)
    check.fail("preferences.priority", f"must be LOW, NORMAL or HIGH, got {value!r}")
    return Priority.NORMAL


def _parse_preferences(raw: Mapping[str, Any], check: _Checker) -> Preferences:
    where = "preferences"
    provider = _text(raw, "provider", f"{where}.provider", check).strip()
    if provider.lower() == "any":
        provider = ""
    if provider and not _IDENTIFIER.fullmatch(provider):
        check.fail(f"{where}.provider", "a provider name is lowercase letters, digits and '-'")
    region = _text(raw, "region", f"{where}.region", check).strip()
    if region.lower() == "auto":
        region = ""
    if region and not _IDENTIFIER.fullmatch(region):
        check.fail(f"{where}.region", "a region is lowercase letters, digits and '-'")
    allow_retry = raw.get("allow_retry", False)
    if not isinstance(allow_retry, bool):
        check.fail(f"{where}.allow_retry", "must be true or false")
        allow_retry = False
    attempts = _integer(raw, "max_attempts", f"{where}.max_attempts", check, 1, MAX_ATTEMPTS)
    if attempts is not None and attempts > 1 and not allow_retry:
        check.fail(f"{where}.max_attempts", "more than one attempt needs allow_retry")
    if attempts is None:
        attempts = DEFAULT_RETRY_ATTEMPTS if allow_retry else 1
    return Preferences(
        provider=provider,
        region=region,
        priority=_parse_priority(raw.get("priority"), check),
        allow_retry=allow_retry,
        max_attempts=attempts,
    )


def _parse_command_type(value: Any, check: _Checker) -> CommandType:
    if value in (None, "", 0, "COMMAND_TYPE_UNSPECIFIED"):
        return CommandType.SHELL
    if isinstance(value, str) and value.upper() in CommandType.__members__:
        return CommandType[value.upper()]
    check.fail(
        "command_type", f"must be one of {', '.join(CommandType.__members__)}, got {value!r}"
    )
    return CommandType.SHELL


def _sub_mapping(raw: Mapping[str, Any], key: str, check: _Checker) -> Mapping[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        check.fail(key, "must be an object")
        return {}
    return value


def parse_job_spec(raw: Mapping[str, Any]) -> JobSpec:
    """Validate a job definition given as plain data (decoded JSON or a converted protobuf).

    Zero and empty values mean "the default", as in protobuf. Every rule broken is reported.

    Raises:
        ValidationError: naming each field at fault and the rule it breaks.
    """
    check = _Checker()
    name = _text(raw, "name", "name", check).strip()
    if not name:
        check.fail("name", "is required")
    elif problem := unstorable(name):
        check.fail("name", problem)
    elif len(name) > MAX_NAME_LENGTH:
        check.fail("name", f"must be at most {MAX_NAME_LENGTH} characters, got {len(name)}")
    command_type = _parse_command_type(raw.get("command_type"), check)
    script = _text(raw, "script", "script", check)
    if not script.strip():
        check.fail("script", "is required")
    elif problem := unstorable(script):
        check.fail("script", problem)
    elif len(script.encode()) > MAX_SCRIPT_BYTES:
        check.fail("script", f"must be at most {MAX_SCRIPT_BYTES} bytes")
    image = _text(raw, "image", "image", check).strip()
    if len(image) > MAX_IMAGE_LENGTH or (image and not _IMAGE.fullmatch(image)):
        check.fail("image", "is not a valid image reference (e.g. alpine:latest)")
    if command_type.needs_container and not image:
        check.fail("image", "is required for DOCKER_EXEC")
    env = _string_map(raw, "env", "env", check)
    _check_env(env, "env", check)
    secret_env = _string_map(raw, "secret_env", "secret_env", check)
    _check_env(secret_env, "secret_env", check)
    for both in sorted(env.keys() & secret_env.keys()):
        check.fail(f"secret_env.{both}", "is also set in env; give it once")
    labels = _string_map(raw, "labels", "labels", check)
    _check_labels(labels, check)
    resources = _parse_resources(_sub_mapping(raw, "resources", check), check)
    preferences = _parse_preferences(_sub_mapping(raw, "preferences", check), check)
    check.raise_if_any()
    return JobSpec(
        name=name,
        command_type=command_type,
        script=script,
        image=image,
        env=env,
        secret_env=secret_env,
        resources=resources,
        preferences=preferences,
        labels=labels,
    )
