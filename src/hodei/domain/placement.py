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


@dataclass(frozen=True)
class RuntimeMix:
    """Which kinds of worker exist (live, or startable by an enabled provider): whether any runs
    containers, and the shapes of those that run host processes."""

    containers: bool
    process_profiles: tuple[WorkerProfile, ...] = ()

    @classmethod
    def of(cls, profiles: Iterable[WorkerProfile]) -> RuntimeMix:
        profiles = list(profiles)
        return cls(
            containers=any(p.runtime != PROCESS_RUNTIME for p in profiles),
            process_profiles=tuple(p for p in profiles if p.runtime == PROCESS_RUNTIME),
        )

    @property
    def processes(self) -> bool:
        return bool(self.process_profiles)

    def process_shapes(self) -> list[dict[str, object]]:
        """The process workers' shapes, for the claim query (distinct ones)."""
        shapes = {
            (p.cpu_cores, p.memory_mb, p.gpus, p.arch, p.region) for p in self.process_profiles
        }
        keys = ("cpu_cores", "memory_mb", "gpus", "arch", "region")
        return [dict(zip(keys, shape, strict=True)) for shape in sorted(shapes)]


# What the claim assumes when nobody said which workers exist: no containers, no process shapes.
NO_RUNTIMES = RuntimeMix(containers=False)


def wants_container(spec: JobSpec) -> bool:
    """A job with an image (or DOCKER_EXEC) runs in a container wherever containers exist."""
    return bool(spec.image) or spec.command_type.needs_container


def eligible_profiles(spec: JobSpec, profiles: Iterable[WorkerProfile]) -> list[WorkerProfile]:
    """The profiles that may take the job, by kind. A job with an image goes to containers when
    some profile offers them (else to host processes, which say the image was not applied); one
    without goes to host processes when one of those fits it (else to containers, in the
    provider's default image); a job that names its provider goes where that provider says.
    The claim query (``claim_jobs``) applies the same rule."""
    profiles = list(profiles)
    if spec.preferences.provider:
        return profiles
    containers = [p for p in profiles if p.runtime != PROCESS_RUNTIME]
    processes = [p for p in profiles if p.runtime == PROCESS_RUNTIME]
    if wants_container(spec):
        return containers or processes
    fitting = [p for p in processes if misfit_reason(spec, p) is None]
    return fitting or containers or processes


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
    profiles = list(profiles)
    eligible = eligible_profiles(spec, profiles)
    reasons: list[str] = []
    for profile in profiles:
        reason = misfit_reason(spec, profile)
        if profile not in eligible:
            reason = reason or "it runs host processes, and jobs with an image run in containers"
        elif reason is None:
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
