from __future__ import annotations

from typing import Any

from hodei.domain.jobs import parse_job_spec
from hodei.domain.placement import (
    RuntimeMix,
    WorkerProfile,
    eligible_profiles,
    misfit_reason,
    unschedulable_reason,
)

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


def test_a_job_with_an_image_goes_to_containers_where_they_exist() -> None:
    image_job = spec(image="alpine:latest")
    assert eligible_profiles(image_job, [LOCAL, DOCKER]) == [DOCKER]
    assert eligible_profiles(image_job, [LOCAL]) == [LOCAL]  # the image is not applied


def test_a_job_without_an_image_stays_on_the_host_when_a_host_worker_fits() -> None:
    assert eligible_profiles(spec(), [LOCAL, DOCKER]) == [LOCAL]
    gpu_job = spec(resources={"gpu_required": True})
    assert eligible_profiles(gpu_job, [LOCAL, DOCKER]) == [DOCKER]
    assert eligible_profiles(spec(), [DOCKER]) == [DOCKER]
    named = spec(preferences={"provider": "docker"})
    assert eligible_profiles(named, [LOCAL, DOCKER]) == [LOCAL, DOCKER]


def test_an_image_job_too_big_for_the_containers_is_refused_even_if_the_host_fits() -> None:
    big_local = WorkerProfile("provider big", "big", "process", "x86_64", "local", 64, 2**20)
    reason = unschedulable_reason(
        spec(image="alpine:3", resources={"cpu_cores": 16}), [big_local, DOCKER]
    )
    assert reason is not None
    assert (
        "provider big: it runs host processes, and jobs with an image run in containers" in reason
    )
    assert "provider docker: 16 CPU cores were asked for" in reason


def test_the_runtime_mix_lists_each_process_shape_once() -> None:
    mix = RuntimeMix.of([LOCAL, LOCAL, DOCKER])
    assert mix.containers
    assert mix.processes
    assert mix.process_shapes() == [
        {"cpu_cores": 2, "memory_mb": 4096, "gpus": 0, "arch": "x86_64", "region": "local"}
    ]
    assert not RuntimeMix.of([DOCKER]).processes
