from __future__ import annotations

from typing import Any

import pytest

from hodei.domain.errors import ValidationError
from hodei.domain.jobs import (
    MAX_SCRIPT_BYTES,
    CommandType,
    Priority,
    normalize_arch,
    parse_job_spec,
)


def job(**fields: Any) -> dict[str, Any]:
    return {"name": "Hello World", "script": 'echo "Hello from Hodei!" && date'} | fields


def violations(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        parse_job_spec(raw)
    return {v.field: v.message for v in caught.value.violations}


def test_minimal_job_gets_the_defaults() -> None:
    spec = parse_job_spec(job())
    assert spec.command_type is CommandType.SHELL
    assert spec.resources.cpu_cores == 1.0
    assert spec.resources.memory_mb == 512
    assert spec.resources.timeout_ms == 0
    assert spec.preferences.priority is Priority.NORMAL
    assert spec.preferences.max_attempts == 1


def test_every_field_of_the_form_is_kept() -> None:
    spec = parse_job_spec(
        job(
            command_type="PYTHON",
            image="python:3.11-slim",
            env={"API_URL": "https://api.example.com/data"},
            secret_env={"API_TOKEN": "s3cret"},
            labels={"team": "data"},
            resources={
                "cpu_cores": 2,
                "memory_mb": 1024,
                "storage_mb": 100,
                "timeout_ms": 120000,
                "gpu_required": True,
                "arch": "amd64",
            },
            preferences={
                "provider": "local",
                "region": "eu-west-1",
                "priority": "HIGH",
                "allow_retry": True,
            },
        )
    )
    assert spec.command_type is CommandType.PYTHON
    assert spec.image == "python:3.11-slim"
    assert spec.env == {"API_URL": "https://api.example.com/data"}
    assert spec.secret_env == {"API_TOKEN": "s3cret"}
    assert spec.resources.arch == "x86_64"
    assert spec.resources.gpu_required is True
    assert spec.resources.timeout_ms == 120000
    assert spec.preferences.priority is Priority.HIGH
    assert spec.preferences.max_attempts == 3  # the default once retries are allowed
    assert spec.labels == {"team": "data"}


def test_any_and_auto_mean_no_preference() -> None:
    spec = parse_job_spec(job(preferences={"provider": "Any", "region": "Auto"}))
    assert spec.preferences.provider == ""
    assert spec.preferences.region == ""


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"name": "  "}, "name", "required"),
        ({"name": "x" * 201}, "name", "at most 200"),
        ({"script": ""}, "script", "required"),
        ({"script": "x" * (MAX_SCRIPT_BYTES + 1)}, "script", "at most"),
        ({"command_type": "BASH"}, "command_type", "must be one of"),
        ({"resources": {"cpu_cores": 300}}, "resources.cpu_cores", "between"),
        ({"resources": {"cpu_cores": -1}}, "resources.cpu_cores", "between"),
        ({"resources": {"cpu_cores": "two"}}, "resources.cpu_cores", "must be a number"),
        ({"resources": {"memory_mb": 1.5}}, "resources.memory_mb", "whole number"),
        ({"resources": {"memory_mb": -5}}, "resources.memory_mb", "between"),
        ({"resources": {"timeout_ms": -1}}, "resources.timeout_ms", "between"),
        ({"resources": {"arch": "sparc"}}, "resources.arch", "x86_64, arm64"),
        ({"resources": {"gpu_required": "yes"}}, "resources.gpu_required", "true or false"),
        ({"env": {"1BAD": "x"}}, "env.1BAD", "variable name"),
        ({"env": {"A": "x\x00y"}}, "env.A", "NUL"),
        ({"env": {"A": 1}}, "env.A", "strings"),
        ({"env": {"A": "1"}, "secret_env": {"A": "2"}}, "secret_env.A", "also set in env"),
        ({"labels": {"-bad": "x"}}, "labels.-bad", "label key"),
        ({"image": "Not An Image"}, "image", "valid image"),
        ({"command_type": "DOCKER_EXEC"}, "image", "required for DOCKER_EXEC"),
        ({"preferences": {"priority": "URGENT"}}, "preferences.priority", "LOW, NORMAL or HIGH"),
        ({"preferences": {"max_attempts": 5}}, "preferences.max_attempts", "allow_retry"),
        ({"preferences": {"provider": "My Provider"}}, "preferences.provider", "lowercase"),
        ({"resources": "big"}, "resources", "must be an object"),
    ],
)
def test_bad_input_names_the_field_and_the_rule(
    fields: dict[str, Any], field: str, fragment: str
) -> None:
    found = violations(job(**fields))
    assert field in found, found
    assert fragment in found[field]


def test_every_broken_rule_is_reported_at_once() -> None:
    found = violations({"name": "", "script": "", "resources": {"cpu_cores": 999}})
    assert set(found) == {"name", "script", "resources.cpu_cores"}


def test_the_error_message_names_field_and_rule() -> None:
    with pytest.raises(ValidationError, match=r"resources\.cpu_cores: must be between"):
        parse_job_spec(job(resources={"cpu_cores": 1000}))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("x86_64", "x86_64"), ("AMD64", "x86_64"), ("aarch64", "arm64"), ("mips", None)],
)
def test_arch_aliases(raw: str, expected: str | None) -> None:
    assert normalize_arch(raw) == expected
