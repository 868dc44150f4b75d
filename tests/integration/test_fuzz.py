"""Input hardening, fuzzed: every REST operation against its own OpenAPI schema (schemathesis),
and QueueJob over gRPC with generated job definitions (hypothesis).

Both run against a real server on the test's event loop. The generators block, so they run in
a thread: schemathesis sends its requests over HTTP, the gRPC calls go back to the loop. Both are
deterministic (derandomized, no example database). Fuzzed jobs are never executed: the worker's
runtime refuses every launch but that of one trusted script, and no provider starts workers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import psycopg
import pytest
import schemathesis
import websockets
from google.protobuf import timestamp_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from hodei.api.grpc.convert import SECRET_MASK
from hodei.domain.jobs import (
    MAX_ENV_ENTRIES,
    MAX_ENV_VALUE_BYTES,
    MAX_LABEL_VALUE_LENGTH,
    MAX_LABELS,
    MAX_NAME_LENGTH,
    MAX_SCRIPT_BYTES,
)
from hodei.providers.manager import ProviderManager
from hodei.v1 import jobs_pb2, logs_pb2
from hodei.worker.runtime import JobLaunch, LaunchError, ProcessRuntime

from .harness import Running, running_hodei

pytestmark = pytest.mark.integration

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
TRUSTED_SCRIPT = "sleep 30  # the one script these tests run"


@pytest.fixture(autouse=True)
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fuzzed scripts are not run on this machine, and fuzzed providers start no workers."""

    run = ProcessRuntime.start

    async def refuse(self: ProcessRuntime, launch: JobLaunch, sink: Any) -> Any:
        if launch.script == TRUSTED_SCRIPT:
            return await run(self, launch, sink)
        raise LaunchError("fuzzed jobs are not run")

    async def start_nothing(self: ProviderManager, config: Any) -> None:
        return None

    monkeypatch.setattr(ProcessRuntime, "start", refuse)
    monkeypatch.setattr(ProviderManager, "_start", start_nothing)


# ---------------------------------------------------------------------------------------------
# REST: schemathesis over /api/openapi.json


def _fuzz_operations(schema: Any, base_url: str, max_examples: int) -> list[str]:
    """Every operation, positive and negative cases; the failures, as text."""
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = st.one_of(
            operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
            operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
        )

        @settings(
            max_examples=max_examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @given(case=strategy)
        def fuzz(case: Any) -> None:
            case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=30)

        try:
            fuzz()
        except BaseException as error:  # schemathesis raises a FailureGroup: not an Exception
            if not isinstance(error, AssertionError | BaseExceptionGroup):
                raise
            failures.append(f"{operation.label}: {error}")
    return failures


@pytest.mark.timeout(90)
async def test_every_rest_operation_answers_within_its_schema(database_url: str) -> None:
    async with running_hodei(database_url) as hodei:
        response = await hodei.http.get("/api/openapi.json")
        assert response.status_code == 200
        schema = schemathesis.openapi.from_dict(response.json())
        base_url = f"http://127.0.0.1:{hodei.config.http_port}"
        failures = await asyncio.to_thread(_fuzz_operations, schema, base_url, 50)
        assert not failures, "\n\n".join(failures)


# ---------------------------------------------------------------------------------------------
# gRPC: QueueJob with generated definitions

_TEXT = st.text(max_size=12)  # hypothesis leaves out lone surrogates: protobuf cannot carry them
_BIG_SCRIPTS = [
    "x" * MAX_SCRIPT_BYTES,  # at the limit
    "x" * (MAX_SCRIPT_BYTES + 1),
    "é" * (MAX_SCRIPT_BYTES // 2),  # at the limit in bytes, half of it in characters
    "é" * (MAX_SCRIPT_BYTES // 2) + "x",
]
_ENV_NAMES = st.one_of(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True), _TEXT)
_ENV_VALUES = st.one_of(
    _TEXT, st.sampled_from(["v" * MAX_ENV_VALUE_BYTES, "v" * (MAX_ENV_VALUE_BYTES + 1)])
)
_LABEL_KEYS = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9._/-]{0,6}[a-z0-9])?", fullmatch=True), _TEXT
)
_LABEL_VALUES = st.one_of(
    _TEXT, st.sampled_from(["v" * MAX_LABEL_VALUE_LENGTH, "v" * (MAX_LABEL_VALUE_LENGTH + 1)])
)


def _many(prefix: str, count: int) -> dict[str, str]:
    return {f"{prefix}{i}": "v" for i in range(count)}


_INT64 = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, -1, 1, 512, 2**31, 2**63 - 1, -(2**63)]),
)


@st.composite
def job_definitions(draw: st.DrawFn) -> jobs_pb2.JobDefinition:
    """Any JobDefinition the wire can carry: mostly plausible, often broken somewhere."""
    name = draw(
        st.one_of(
            st.sampled_from(["fuzz", "", "   ", "\x00", "a" * MAX_NAME_LENGTH, "é" * 201]),
            st.text(max_size=MAX_NAME_LENGTH + 5),
        )
    )
    script = draw(
        st.one_of(
            st.sampled_from(["echo hi", "", " \n", "a\x00b", "print('ñ ☃ 😀')"]),
            st.text(max_size=50),
            st.sampled_from(_BIG_SCRIPTS),
        )
    )
    env = draw(
        st.one_of(
            st.dictionaries(_ENV_NAMES, _ENV_VALUES, max_size=4),
            st.sampled_from([_many("E", MAX_ENV_ENTRIES), _many("E", MAX_ENV_ENTRIES + 1)]),
        )
    )
    labels = draw(
        st.one_of(
            st.dictionaries(_LABEL_KEYS, _LABEL_VALUES, max_size=4),
            st.sampled_from([_many("l", MAX_LABELS), _many("l", MAX_LABELS + 1)]),
        )
    )
    resources = jobs_pb2.ResourceRequirements(
        cpu_cores=draw(
            st.one_of(st.floats(), st.sampled_from([0.0, 0.5, 1.0, 256.0, 256.5, -1.0]))
        ),
        memory_mb=draw(_INT64),
        storage_mb=draw(_INT64),
        timeout_ms=draw(_INT64),
        gpu_required=draw(st.booleans()),
        arch=draw(st.one_of(st.sampled_from(["", "amd64", " ARM64 ", "aarch64", "sparc"]), _TEXT)),
    )
    preferences = jobs_pb2.Preferences(
        provider=draw(st.one_of(st.sampled_from(["", "any", "local", "Bad Name"]), _TEXT)),
        region=draw(st.one_of(st.sampled_from(["", "Auto", "eu-1", "EU 1"]), _TEXT)),
        priority=draw(st.integers(-2, 6)),  # proto3 enums are open: unknown values arrive
        allow_retry=draw(st.booleans()),
        max_attempts=draw(st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 4))),
    )
    return jobs_pb2.JobDefinition(
        name=name,
        command_type=draw(st.integers(-2, 7)),
        script=script,
        image=draw(
            st.one_of(
                st.sampled_from(["", "alpine:latest", " alpine ", "Not An Image", "a" * 513]),
                _TEXT,
            )
        ),
        env=env,
        secret_env=draw(st.dictionaries(_ENV_NAMES, _TEXT, max_size=2)),
        resources=resources,
        preferences=preferences,
        labels=labels,
    )


_ARCHES = {"amd64": "x86_64", "x86-64": "x86_64", "x86_64": "x86_64", "aarch64": "arm64"}


def normalised(sent: jobs_pb2.JobDefinition) -> jobs_pb2.JobDefinition:
    """What an accepted definition reads back as: trimmed, defaults filled in, secrets masked."""
    res, prefs = sent.resources, sent.preferences
    provider, region = prefs.provider.strip(), prefs.region.strip()
    arch = res.arch.strip().lower()
    return jobs_pb2.JobDefinition(
        name=sent.name.strip(),
        command_type=sent.command_type or jobs_pb2.SHELL,
        script=sent.script,
        image=sent.image.strip(),
        env=dict(sent.env),
        secret_env=dict.fromkeys(sent.secret_env, SECRET_MASK),
        labels=dict(sent.labels),
        resources=jobs_pb2.ResourceRequirements(
            cpu_cores=res.cpu_cores or 1.0,
            memory_mb=res.memory_mb or 512,
            storage_mb=res.storage_mb,
            timeout_ms=res.timeout_ms,
            gpu_required=res.gpu_required,
            arch=_ARCHES.get(arch, arch),
        ),
        preferences=jobs_pb2.Preferences(
            provider="" if provider.lower() == "any" else provider,
            region="" if region.lower() == "auto" else region,
            priority=prefs.priority or jobs_pb2.NORMAL,
            allow_retry=prefs.allow_retry,
            max_attempts=prefs.max_attempts or (3 if prefs.allow_retry else 1),
        ),
    )


def _rows(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """Jobs and JobCreated events stored (the other events follow the jobs' lives meanwhile)."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM jobs),"
        " (SELECT count(*) FROM audit_logs WHERE event_type = 'JobCreated')"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


REFUSALS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}


async def _queue(
    hodei: Running, definition: jobs_pb2.JobDefinition
) -> tuple[str, grpc.aio.AioRpcError | None]:
    """The new job's id, or the error that refused it."""
    try:
        return await hodei.client.queue(definition), None
    except grpc.aio.AioRpcError as error:
        return "", error


def _fuzz_queue_job(hodei: Running, loop: asyncio.AbstractEventLoop, max_examples: int) -> int:
    """QueueJob with generated definitions; how many were accepted."""

    def on_loop(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)

    accepted = 0
    with psycopg.connect(hodei.database_url, autocommit=True) as conn:

        @settings(
            max_examples=max_examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @given(definition=job_definitions())
        def queue(definition: jobs_pb2.JobDefinition) -> None:
            nonlocal accepted
            jobs_before, events_before = _rows(conn)
            job_id, error = on_loop(_queue(hodei, definition))
            if error is not None:
                assert error.code() in REFUSALS, (error.code(), error.details())
                assert (error.details() or "").strip(), "a refusal must say why"
                assert _rows(conn) == (jobs_before, events_before), "a refused job was stored"
                return
            accepted += 1
            assert _rows(conn) == (jobs_before + 1, events_before + 1)
            stored = on_loop(hodei.client.get(job_id))
            assert stored.definition == normalised(definition)

        queue()
    return accepted


@pytest.mark.timeout(90)
async def test_queue_job_over_grpc_refuses_cleanly_and_stores_whole_jobs(
    database_url: str,
) -> None:
    async with running_hodei(database_url) as hodei:
        loop = asyncio.get_running_loop()
        accepted = await asyncio.to_thread(_fuzz_queue_job, hodei, loop, 100)
        assert accepted > 0, "the generator should produce some valid jobs"


# ---------------------------------------------------------------------------------------------
# What the fuzzing found: each defect, pinned


def _json(body: dict[str, Any]) -> dict[str, Any]:
    """Raw JSON, so a lone surrogate (``\\ud800``) can be sent as a client could send it."""
    return {"content": json.dumps(body), "headers": {"content-type": "application/json"}}


async def test_unstorable_text_is_refused_with_422_not_a_500(database_url: str) -> None:
    async with running_hodei(database_url) as hodei:
        http = hodei.http
        job = {"name": "ok", "script": "echo"}
        for body, field in [
            ({**job, "name": "a\x00b"}, "name"),
            ({**job, "script": "echo \ud800"}, "script"),
            ({**job, "labels": {"k": "v\x00"}}, "labels"),
            ({**job, "labels": {"k\x00": "v"}}, "labels"),
            ({**job, "labels": {"a\n": "v"}}, "labels"),
            ({**job, "env": {"K": "\ud800"}}, "env"),
            ({**job, "env": {"A\n": "v"}}, "env"),
            ({**job, "secret_env": {"K": "\udfff"}}, "secret_env"),
        ]:
            response = await http.post("/api/v1/jobs", **_json(body))
            assert response.status_code == 422, (body, response.text)
            assert response.json()["detail"][0]["loc"][1] == field
        assert await hodei.count_jobs() == 0
        provider = {"name": "p", "type": "local", "enabled": False}
        for body in [
            {**provider, "config": {"region": "eu\x00"}},
            {**provider, "type": "docker", "config": {"docker_host": "\ud800"}},
            {**provider, "name": "p\n"},
        ]:
            response = await http.post("/api/v1/providers", **_json(body))
            assert response.status_code == 422, (body, response.text)
        created = await http.post("/api/v1/jobs", json=job)
        job_id = created.json()["job_id"]
        for path in [
            "/api/v1/jobs?name=%00",
            f"/api/v1/jobs/{job_id}/logs?q=%00",
            "/api/v1/providers/%00",
        ]:
            response = await http.get(path)
            assert response.status_code == 422, (path, response.text)
        for method, path in [
            ("PUT", "/api/v1/providers/%00"),
            ("POST", "/api/v1/providers/%00/enable"),
            ("POST", "/api/v1/providers/%00/disable"),
            ("DELETE", "/api/v1/providers/%00"),
        ]:
            response = await http.request(method, path, json=provider)
            assert response.status_code == 422, (path, response.text)
        # A body that is not UTF-8 is a documented 400, on every operation.
        response = await http.post("/api/v1/jobs", **{**_json({}), "content": b'"\xe9"'})
        assert response.status_code == 400
        documented = (await http.get("/api/openapi.json")).json()["paths"]["/api/v1/jobs"]
        assert "400" in documented["post"]["responses"]


async def test_unknown_enum_values_and_bad_filters_over_grpc_are_invalid_arguments(
    database_url: str,
) -> None:
    async with running_hodei(database_url) as hodei:
        client = hodei.client
        for definition in [
            jobs_pb2.JobDefinition(name="x", script="echo", command_type=-1),  # type: ignore[arg-type]
            jobs_pb2.JobDefinition(
                name="x",
                script="echo",
                preferences=jobs_pb2.Preferences(priority=9),  # type: ignore[arg-type]
            ),
            jobs_pb2.JobDefinition(name="a\x00", script="echo"),
            jobs_pb2.JobDefinition(name="x", script="echo", labels={"k": "\x00"}),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await client.queue(definition)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value
        far = timestamp_pb2.Timestamp(seconds=2**40)
        for request in [
            jobs_pb2.ListJobsRequest(states=[99]),  # type: ignore[list-item]
            jobs_pb2.ListJobsRequest(name="\x00"),
            jobs_pb2.ListJobsRequest(created_after=far),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await client.list(request)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value
        job_id = await client.queue(jobs_pb2.JobDefinition(name="x", script="echo"))
        for subscribe in [
            logs_pb2.SubscribeLogsRequest(job_id=job_id, contains="\x00"),
            logs_pb2.SubscribeLogsRequest(job_id=job_id, levels=[7]),  # type: ignore[list-item]
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in client.logs.SubscribeLogs(subscribe):
                    pass
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value
        assert await hodei.count_jobs() == 1


# ---------------------------------------------------------------------------------------------
# WebSocket: the log stream takes no messages; a big one must not be buffered


async def _drain(socket: websockets.ClientConnection) -> None:
    while True:
        await socket.recv()


async def test_the_log_websocket_closes_on_an_oversized_client_message(
    database_url: str,
) -> None:
    async with running_hodei(database_url) as hodei:
        job_id = await hodei.client.queue(jobs_pb2.JobDefinition(name="ws", script=TRUSTED_SCRIPT))
        await hodei.wait_state(job_id, jobs_pb2.RUNNING)
        url = f"ws://127.0.0.1:{hodei.config.http_port}/api/v1/jobs/{job_id}/logs/stream"
        async with websockets.connect(url, max_size=None) as socket:
            await socket.send("x" * 1024)  # small: ignored, the stream goes on
            await socket.send("x" * (1024 * 1024))
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await asyncio.wait_for(_drain(socket), 10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009  # message too big
        await hodei.client.cancel(job_id)
        await hodei.wait_final(job_id)
