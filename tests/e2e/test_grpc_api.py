"""The user guide's examples through the public gRPC API, with grpcurl and server reflection."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import HodeiUp

pytestmark = pytest.mark.e2e

API_TOKEN = "tu-token-secreto"
API_URL = "https://api.example.com/data"
PYTHON_SCRIPT = """\
import sys
print("Processing data...")
for i in range(5):
    print(f"Step {i+1}/5 completed")
print("Done!")
"""


def hello_output(lines: list[str]) -> None:
    assert len(lines) == 2, lines
    assert lines[0] == "Hello from Hodei!"
    assert re.search(r"\b\d{2}:\d{2}:\d{2}\b", lines[1]), lines[1]


def python_output(lines: list[str]) -> None:
    steps = [f"Step {i}/5 completed" for i in range(1, 6)]
    assert lines == ["Processing data...", *steps, "Done!"]


def api_output(lines: list[str]) -> None:
    assert lines == ["Authorization: Bearer ***", f"url={API_URL}"]


EXAMPLES: dict[str, tuple[dict[str, Any], Callable[[list[str]], None]]] = {
    "1-echo": (
        {
            "name": "Hello World",
            "command_type": "SHELL",
            "script": 'echo "Hello from Hodei!" && date',
            "image": "alpine:latest",
            "resources": {"cpu_cores": 1, "memory_mb": 512},
        },
        hello_output,
    ),
    "2-python": (
        {
            "name": "Python Data Processing",
            "command_type": "PYTHON",
            "script": PYTHON_SCRIPT,
            "image": "python:3.11-slim",
            "resources": {"memory_mb": 1024},
        },
        python_output,
    ),
    "3-env": (
        {
            "name": "API Data Fetch",
            "command_type": "SHELL",
            "script": 'echo "Authorization: Bearer $API_TOKEN" && echo "url=$API_URL"',
            "image": "curlimages/curl:latest",
            "env": {"API_URL": API_URL},
            "secret_env": {"API_TOKEN": API_TOKEN},
        },
        api_output,
    ),
}


def test_reflection_lists_the_services(hodei: HodeiUp) -> None:
    listed = hodei.grpc_raw("list")

    assert listed.returncode == 0, listed.stderr
    services = set(listed.stdout.split())
    assert {
        "hodei.v1.JobExecutionService",
        "hodei.v1.LogStreamService",
        "hodei.v1.SchedulerService",
        "hodei.v1.WorkerAgentService",
        "grpc.health.v1.Health",
    } <= services
    assert any(name.startswith("grpc.reflection.") for name in services), services


def test_health_check_serves(hodei: HodeiUp) -> None:
    assert hodei.grpc("grpc.health.v1.Health/Check") == {"status": "SERVING"}


@pytest.mark.parametrize("example", EXAMPLES)
def test_guide_example_through_grpc(hodei: HodeiUp, example: str) -> None:
    definition, check_output = EXAMPLES[example]

    queued = hodei.grpc("hodei.v1.JobExecutionService/QueueJob", {"job": definition})
    job = hodei.wait_job(queued["job_id"])

    assert (job["state"], job["exit_code"]) == ("SUCCEEDED", 0), job
    assert job["definition"]["name"] == definition["name"]
    assert job["definition"]["image"] == definition["image"]
    logs = hodei.grpc("hodei.v1.LogStreamService/GetLogs", {"job_id": job["id"]})
    assert logs["job_finished"] is True
    lines = logs["lines"]
    assert [int(line["sequence"]) for line in lines] == list(range(1, len(lines) + 1))
    assert {line["stream"] for line in lines} == {"STDOUT"}
    check_output([line["line"] for line in lines])


def test_secret_env_is_write_only(hodei: HodeiUp) -> None:
    definition, _ = EXAMPLES["3-env"]
    queued = hodei.grpc("hodei.v1.JobExecutionService/QueueJob", {"job": definition})
    hodei.wait_job(queued["job_id"])

    shown = hodei.grpc_raw("hodei.v1.JobExecutionService/GetJob", {"job_id": queued["job_id"]})
    listed = hodei.grpc_raw("hodei.v1.JobExecutionService/ListJobs", {"page_size": 500})
    logs = hodei.grpc_raw("hodei.v1.LogStreamService/GetLogs", {"job_id": queued["job_id"]})

    for answer in (shown, listed, logs):
        assert answer.returncode == 0, answer.stderr
        assert API_TOKEN not in answer.stdout
    assert hodei.get_job(queued["job_id"])["definition"]["secret_env"] == {"API_TOKEN": "***"}


@pytest.mark.parametrize(
    ("definition", "fields"),
    [
        pytest.param({"name": "empty", "script": ""}, ["script"], id="empty-script"),
        pytest.param(
            {"name": "huge", "script": "echo hi", "resources": {"cpu_cores": 1000}},
            ["resources.cpu_cores"],
            id="cpu-1000",
        ),
        pytest.param(
            {"name": "both", "script": "", "resources": {"cpu_cores": 1000}},
            ["script", "resources.cpu_cores"],
            id="both",
        ),
    ],
)
def test_bad_job_is_refused_and_not_created(
    hodei: HodeiUp, definition: dict[str, Any], fields: list[str]
) -> None:
    before = hodei.job_count()

    refused = hodei.grpc_raw("hodei.v1.JobExecutionService/QueueJob", {"job": definition})

    assert refused.returncode != 0
    assert "Code: InvalidArgument" in refused.stderr
    message = re.search(r"Message: (.*)", refused.stderr)
    assert message, refused.stderr
    for name in fields:
        assert f"{name}:" in message.group(1)
    assert hodei.job_count() == before
