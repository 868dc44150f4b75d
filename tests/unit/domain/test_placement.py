from __future__ import annotations

from typing import Any

from hodei.domain.jobs import parse_job_spec
from hodei.domain.placement import WorkerProfile, misfit_reason, unschedulable_reason

LOCAL = WorkerProfile(
    source="provider local",
    provider="local",
    runtime="process",
    arch="x86_64",
    region="local",
    cpu_cores=2,
    memory_mb=4096,
)
DOCKER = WorkerProfile(
    source="provider docker",
    provider="docker",
    runtime="docker",
    arch="x86_64",
    region="local",
    cpu_cores=8,
    memory_mb=16384,
    gpus=1,
)


def spec(**fields: Any) -> Any:
    return parse_job_spec({"name": "j", "script": "true"} | fields)


def test_a_default_job_fits_a_local_worker() -> None:
    assert misfit_reason(spec(), LOCAL) is None


def test_each_constraint_is_explained() -> None:
    assert "4 CPU cores" in (misfit_reason(spec(resources={"cpu_cores": 4}), LOCAL) or "")
    assert "8192 MB" in (misfit_reason(spec(resources={"memory_mb": 8192}), LOCAL) or "")
    assert "GPU" in (misfit_reason(spec(resources={"gpu_required": True}), LOCAL) or "")
    assert "arm64" in (misfit_reason(spec(resources={"arch": "arm64"}), LOCAL) or "")
    assert "docker" in (misfit_reason(spec(preferences={"provider": "docker"}), LOCAL) or "")
    assert "eu" in (misfit_reason(spec(preferences={"region": "eu"}), LOCAL) or "")
    docker_exec = spec(command_type="DOCKER_EXEC", image="alpine:latest")
    assert "container" in (misfit_reason(docker_exec, LOCAL) or "")
    assert misfit_reason(docker_exec, DOCKER) is None


def test_a_job_is_schedulable_when_any_profile_fits() -> None:
    big = spec(resources={"cpu_cores": 4, "gpu_required": True})
    assert unschedulable_reason(big, [LOCAL, DOCKER]) is None


def test_an_unschedulable_job_says_why_for_each_profile() -> None:
    reason = unschedulable_reason(spec(resources={"cpu_cores": 16}), [LOCAL, DOCKER])
    assert reason is not None
    assert "provider local: 16 CPU cores were asked for (offers 2 CPU" in reason
    assert "provider docker" in reason


def test_nothing_registered_or_enabled() -> None:
    assert unschedulable_reason(spec(), []) == (
        "no worker is registered and no provider is enabled"
    )
