from __future__ import annotations

from datetime import UTC, datetime

from hodei.api.grpc import convert
from hodei.domain.jobs import Job, parse_job_spec
from hodei.domain.states import JobState
from hodei.v1 import jobs_pb2


def test_a_definition_round_trips_through_the_wire() -> None:
    definition = jobs_pb2.JobDefinition(
        name="Python Data Processing",
        command_type=jobs_pb2.PYTHON,
        script="print('hi')",
        image="python:3.11-slim",
        env={"A": "1"},
        secret_env={"TOKEN": "t"},
        resources=jobs_pb2.ResourceRequirements(memory_mb=1024, timeout_ms=5000),
        preferences=jobs_pb2.Preferences(priority=jobs_pb2.HIGH),
    )
    spec = parse_job_spec(convert.definition_to_dict(definition))
    job = Job(
        id="00000000-0000-0000-0000-000000000001",
        spec=spec,
        state=JobState.SUCCEEDED,
        attempt=1,
        worker_id=None,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        exit_code=0,
    )
    public = convert.job_to_proto(job)
    assert public.state == jobs_pb2.SUCCEEDED
    assert public.exit_code == 0
    assert public.definition.secret_env["TOKEN"] == "***"
    assert public.definition.resources.memory_mb == 1024
    assert public.definition.preferences.priority == jobs_pb2.HIGH
    private = convert.definition_to_proto(job, reveal_secrets=True)
    assert private.secret_env["TOKEN"] == "t"


def test_exit_code_is_absent_until_there_is_one() -> None:
    spec = parse_job_spec({"name": "n", "script": "true"})
    job = Job(
        "00000000-0000-0000-0000-000000000002",
        spec,
        JobState.PENDING,
        0,
        None,
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert not convert.job_to_proto(job).HasField("exit_code")
