"""Which worker may run which job. The SQL claim applies the same rules; this module explains
refusals and decides whether a job could ever run at all."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hodei.domain.jobs import JobSpec

PROCESS_RUNTIME = "process"


@dataclass(frozen=True)
class WorkerProfile:
    """The shape of a worker: a live one, or the kind a provider can start."""

    source: str  # "worker <id>" or "provider <name>", for messages
    provider: str
    runtime: str
    arch: str
    region: str
    cpu_cores: float
    memory_mb: int
    gpus: int = 0


def misfit_reason(spec: JobSpec, profile: WorkerProfile) -> str | None:
    """Why a worker of this profile can never run the job, or None when it can."""
    res, prefs = spec.resources, spec.preferences
    if prefs.provider and prefs.provider != profile.provider:
        return f"provider {prefs.provider!r} was asked for"
    if spec.command_type.needs_container and profile.runtime == PROCESS_RUNTIME:
        return "DOCKER_EXEC needs a container runtime"
    if prefs.region and prefs.region != profile.region:
        return f"region {prefs.region!r} was asked for"
    if res.arch and res.arch != profile.arch:
        return f"arch {res.arch} was asked for"
    if res.gpu_required and profile.gpus < 1:
        return "a GPU was asked for"
    if res.cpu_cores > profile.cpu_cores + 1e-9:
        return f"{res.cpu_cores:g} CPU cores were asked for"
    if res.memory_mb > profile.memory_mb:
        return f"{res.memory_mb} MB of memory was asked for"
    return None


def unschedulable_reason(spec: JobSpec, profiles: Iterable[WorkerProfile]) -> str | None:
    """None when some profile can run the job; otherwise one line saying why none can."""
    reasons: list[str] = []
    for profile in profiles:
        reason = misfit_reason(spec, profile)
        if reason is None:
            return None
        reasons.append(f"{profile.source}: {reason} ({_describe(profile)})")
    if not reasons:
        return "no worker is registered and no provider is enabled"
    return "no worker or enabled provider can run this job: " + "; ".join(reasons[:5])


def _describe(profile: WorkerProfile) -> str:
    return (
        f"offers {profile.cpu_cores:g} CPU, {profile.memory_mb} MB, {profile.arch}, "
        f"runtime {profile.runtime}" + (f", region {profile.region}" if profile.region else "")
    )
