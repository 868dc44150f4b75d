"""Provider settings from the API: every bad field named, nothing odd let through."""

from __future__ import annotations

import math

import pytest

from hodei.domain.errors import ValidationError
from hodei.domain.providers import ProviderType, parse_provider


def fields(error: ValidationError) -> set[str]:
    return {v.field for v in error.violations}


def test_a_good_provider_is_parsed_with_its_type_settings() -> None:
    provider = parse_provider(
        {
            "name": "gpu-pool",
            "type": "firecracker",
            "min_workers": 1,
            "max_workers": 4,
            "config": {"vcpus": 2, "memory_mb": 2048, "kernel_path": "/k", "region": ""},
        }
    )
    assert provider.type is ProviderType.FIRECRACKER
    assert dict(provider.config) == {"vcpus": 2, "memory_mb": 2048, "kernel_path": "/k"}


@pytest.mark.parametrize(
    "value", [math.inf, -math.inf, math.nan, 10**400, 0, -3, True, "lots", 2**33]
)
def test_numbers_in_config_must_be_finite_positive_and_bounded(value: object) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_provider({"name": "p", "type": "local", "config": {"memory_mb": value}})
    assert fields(refused.value) == {"config.memory_mb"}


@pytest.mark.parametrize("value", [math.inf, math.nan, 1.5, 10**9, "2", None])
def test_worker_counts_must_be_whole_numbers_in_range(value: object) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_provider({"name": "p", "type": "local", "max_workers": value})
    assert "max_workers" in fields(refused.value)


def test_every_bad_field_is_named_at_once() -> None:
    with pytest.raises(ValidationError) as refused:
        parse_provider(
            {
                "name": "Not OK",
                "type": "nomad",
                "min_workers": 3,
                "max_workers": 1,
                "enabled": "yes",
                "config": {"unknown": 1},
            }
        )
    assert fields(refused.value) == {"name", "type", "max_workers", "enabled", "config.unknown"}
