"""Only the right people get in: API tokens and roles over gRPC and HTTP, dev mode, rate limits.
Every refusal is proved, with its status and its one-line reason."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import httpx
import pytest
import pytest_asyncio
import websockets

from hodei.client import HodeiClient
from hodei.domain.auth import Role
from hodei.domain.errors import HodeiError, ValidationError
from hodei.server import HodeiServer, ServerConfig
from hodei.store.database import Database
from hodei.store.tokens import TokenRepository
from hodei.store.workers import WorkerRepository
from hodei.v1 import jobs_pb2, providers_pb2, providers_pb2_grpc, worker_pb2, worker_pb2_grpc

from .harness import Running, running_hodei, shell

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def secured(database_url: str) -> AsyncIterator[Running]:
    async with running_hodei(database_url, dev_mode=False) as running:
        yield running


async def make_token(
    database_url: str, name: str, role: Role, expires_in: timedelta | None = None
) -> str:
    db = await Database.connect(database_url, min_size=1, max_size=1)
    try:
        token, _ = await TokenRepository(db).create(name, role, "test", expires_in)
        return token
    finally:
        await db.close()


def address(hodei: Running) -> str:
    return f"127.0.0.1:{hodei.config.grpc_port}"


async def grpc_refusal(hodei: Running, token: str | None) -> grpc.aio.AioRpcError:
    async with HodeiClient(address(hodei), token=token) as client:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client.list(jobs_pb2.ListJobsRequest(page_size=1))
    return raised.value


async def test_no_token_and_bad_tokens_are_unauthenticated(secured: Running) -> None:
    refused = await grpc_refusal(secured, None)
    assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
    assert refused.details() == "no token: send the header 'authorization: Bearer TOKEN'"
    refused = await grpc_refusal(secured, "hodei_not-a-real-token")
    assert (refused.code(), refused.details()) == (grpc.StatusCode.UNAUTHENTICATED, "unknown token")
    refused = await grpc_refusal(secured, "dev-alice")
    assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "dev tokens are accepted only in dev mode" in (refused.details() or "")

    async with httpx.AsyncClient(base_url=secured.http.base_url) as anonymous:
        response = await anonymous.get("/api/v1/jobs")
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json() == {
            "detail": "no token: send the header 'authorization: Bearer TOKEN'"
        }
        response = await anonymous.get(
            "/api/v1/jobs", headers={"authorization": "Basic dXNlcjpwYXNz"}
        )
        assert response.status_code == 401
        assert response.json()["detail"] == "the authorization header must be 'Bearer TOKEN'"
        forged = await anonymous.get(
            "/api/v1/jobs", headers={"cookie": "hodei_session=hodei_forged"}
        )
        assert forged.status_code == 401
        assert forged.json() == {"detail": "unknown token"}
        # What is public stays public: the probes, the API's description, the web app.
        assert (await anonymous.get("/healthz")).status_code == 200
        assert (await anonymous.get("/api/openapi.json")).status_code == 200


async def test_expired_and_revoked_tokens_are_refused(secured: Running) -> None:
    url = secured.database_url
    expired = await make_token(url, "expired", Role.ADMIN, timedelta(seconds=1))
    db = await Database.connect(url, min_size=1, max_size=1)
    try:
        async with db.connection() as conn:
            await conn.execute(
                "UPDATE api_tokens SET expires_at = now() - interval '1 minute' "
                "WHERE name = 'expired'"
            )
        revoked = await make_token(url, "revoked", Role.ADMIN)
        await TokenRepository(db).revoke("revoked", "test")
        async with db.connection() as conn:
            cursor = await conn.execute(
                "SELECT event_type, actor FROM audit_logs "
                "WHERE event_type IN ('TokenCreated', 'TokenRevoked') ORDER BY id"
            )
            events = [tuple(row.values()) for row in await cursor.fetchall()]
    finally:
        await db.close()
    refused = await grpc_refusal(secured, expired)
    assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (refused.details() or "").startswith("token expired expired at ")
    refused = await grpc_refusal(secured, revoked)
    assert (refused.code(), refused.details()) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "token revoked was revoked",
    )
    assert ("TokenRevoked", "test") in events
    assert events.count(("TokenCreated", "test")) >= 2


async def test_roles_decide_what_a_token_may_do(secured: Running) -> None:
    url = secured.database_url
    viewer = await make_token(url, "ci-viewer", Role.VIEWER)
    operator = await make_token(url, "ci-operator", Role.OPERATOR)

    async with HodeiClient(address(secured), token=viewer) as client:
        assert (await client.list(jobs_pb2.ListJobsRequest(page_size=1))).jobs is not None
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client.queue(shell("echo no"))
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert raised.value.details() == "ci-viewer is viewer: QueueJob needs the operator role"

    async with HodeiClient(address(secured), token=operator) as client:
        job_id = await client.queue(shell("sleep 30"))
        cancelled = await client.cancel(job_id)
        assert cancelled.id == job_id
        providers = providers_pb2_grpc.ProviderManagementServiceStub(client._channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await providers.CreateProvider(
                providers_pb2.CreateProviderRequest(
                    provider=providers_pb2.Provider(name="p", type="local")
                )
            )
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert raised.value.details() == (
            "ci-operator is operator: CreateProvider needs the admin role"
        )
    await secured.wait_final(job_id)

    async with httpx.AsyncClient(
        base_url=secured.http.base_url, headers={"authorization": f"Bearer {viewer}"}
    ) as http:
        assert (await http.get("/api/v1/jobs")).status_code == 200
        refused = await http.post("/api/v1/jobs", json={"name": "x", "script": "true"})
        assert refused.status_code == 403
        assert refused.json() == {
            "detail": "ci-viewer is viewer: POST /api/v1/jobs needs the operator role"
        }
    async with httpx.AsyncClient(
        base_url=secured.http.base_url, headers={"authorization": f"Bearer {operator}"}
    ) as http:
        refused = await http.post("/api/v1/providers/local/disable")
        assert refused.status_code == 403
        created = await http.post("/api/v1/jobs", json={"name": "by rest", "script": "true"})
        assert created.status_code == 201

    # The audit trail names the token.
    db = await Database.connect(url, min_size=1, max_size=1)
    try:
        async with db.connection() as conn:
            cursor = await conn.execute(
                "SELECT event_type, actor FROM audit_logs WHERE correlation_id = %s ORDER BY id",
                (job_id,),
            )
            actors = {row["event_type"]: row["actor"] for row in await cursor.fetchall()}
    finally:
        await db.close()
    assert actors["JobCreated"] == "ci-operator"
    assert actors["JobCancelled"] == "ci-operator"


async def test_a_websocket_needs_a_token_too(secured: Running) -> None:
    job = await secured.wait_final(await secured.client.queue(shell("echo hi")))
    url = f"ws://127.0.0.1:{secured.config.http_port}/api/v1/jobs/{job.id}/logs/stream"
    with pytest.raises(websockets.exceptions.InvalidStatus) as raised:
        async with websockets.connect(url):
            pass
    assert raised.value.response.status_code == 403
    headers = {"authorization": f"Bearer {secured.admin_token}"}
    async with websockets.connect(url, additional_headers=headers) as socket:
        assert "hi" in await socket.recv()


async def test_dev_mode_takes_dev_tokens_and_no_token_as_admin(database_url: str) -> None:
    async with running_hodei(database_url) as hodei:  # dev mode
        async with HodeiClient(address(hodei), token="dev-alice") as client:
            job_id = await client.queue(shell("true"))
        await hodei.wait_final(job_id)
        db = await Database.connect(database_url, min_size=1, max_size=1)
        try:
            async with db.connection() as conn:
                cursor = await conn.execute(
                    "SELECT actor FROM audit_logs WHERE event_type = 'JobCreated' "
                    "AND correlation_id = %s",
                    (job_id,),
                )
                row = await cursor.fetchone()
        finally:
            await db.close()
        assert row is not None
        assert row["actor"] == "dev:alice"
        created = await hodei.http.post("/api/v1/jobs", json={"name": "x", "script": "true"})
        assert created.status_code == 201  # no token at all: dev:local


async def test_dev_mode_refuses_a_public_address(tmp_path: Path, database_url: str) -> None:
    config = ServerConfig(
        database_url=database_url, data_dir=tmp_path, bind_host="0.0.0.0", dev_mode=True
    )
    with pytest.raises(HodeiError, match=r"refusing to run in dev mode on 0\.0\.0\.0"):
        await HodeiServer(config).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
    up = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "hodei", "up", "--bind", "0.0.0.0", "--data-dir", str(tmp_path)],
        env=env | {"HODEI_DEV_MODE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert up.returncode == 2
    assert "refusing to run in dev mode on 0.0.0.0" in " ".join(up.stderr.split())
    assert "--insecure-dev-mode" in up.stderr


async def test_submissions_over_the_rate_are_refused_with_a_retry_after(
    database_url: str,
) -> None:
    async with running_hodei(database_url, dev_mode=False, submit_rate_per_minute=1) as hodei:
        operator = await make_token(database_url, "busy", Role.OPERATOR)
        async with HodeiClient(address(hodei), token=operator) as client:
            await client.queue(shell("true"))
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await client.queue(shell("true"))
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (raised.value.details() or "").startswith(
            "busy submits too fast: at most 1 jobs a minute; try again in "
        )
        trailing = dict(raised.value.trailing_metadata() or ())
        assert int(trailing["retry-after"]) >= 1
        async with httpx.AsyncClient(
            base_url=hodei.http.base_url, headers={"authorization": f"Bearer {operator}"}
        ) as http:
            refused = await http.post("/api/v1/jobs", json={"name": "x", "script": "true"})
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) >= 1
        # Admins are not limited unless asked.
        for _ in range(3):
            await hodei.client.queue(shell("true"))


async def hodei_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI, in a thread: the server under test runs on this event loop."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "hodei", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_the_cli_creates_lists_revokes_and_logs_in(secured: Running, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
    env |= {"HODEI_DATABASE_URL": secured.database_url, "XDG_CONFIG_HOME": str(tmp_path)}
    created = await hodei_cli("token", "create", "--name", "ops", "--role", "operator", "--expires",
                        "30d", env=env)  # fmt: skip
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("hodei_")
    assert "it is not shown again" in created.stderr
    listed = await hodei_cli("token", "list", env=env)
    assert "ops" in listed.stdout
    assert "operator" in listed.stdout
    assert token not in listed.stdout  # only its hash is kept

    bad = await hodei_cli("token", "create", "--name", "x", "--role", "root", env=env)
    assert bad.returncode == 2
    assert "one of admin, operator, viewer" in bad.stderr

    server = ["--server", address(secured)]
    refused = await hodei_cli("job", "list", *server, env=env)
    assert refused.returncode == 1
    assert "no token" in refused.stderr
    assert "hodei login" in refused.stderr
    logged_in = await hodei_cli("login", token, *server, env=env)
    assert logged_in.returncode == 0, logged_in.stderr
    stored = tmp_path / "hodei" / "token"
    assert stored.read_text().strip() == token
    assert stored.stat().st_mode & 0o777 == 0o600
    assert (await hodei_cli("job", "list", *server, env=env)).returncode == 0

    revoked = await hodei_cli("token", "revoke", "ops", env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert (await hodei_cli("token", "revoke", "ops", env=env)).returncode == 1
    # The server heard of it (NOTIFY) and forgot the token it had checked a moment ago.
    deadline = time.monotonic() + 5
    while (after := await hodei_cli("job", "list", *server, env=env)).returncode == 0:
        assert time.monotonic() < deadline, "the revoked token still works"
    assert "token ops was revoked" in after.stderr
    assert (await hodei_cli("logout", env=env)).returncode == 0
    assert not stored.exists()


async def test_workers_need_their_one_time_token_and_report_only_their_own_attempts(
    database_url: str,
) -> None:
    async with running_hodei(database_url) as hodei:
        job_id = await hodei.client.queue(shell("sleep 30"))
        await hodei.wait_state(job_id, jobs_pb2.RUNNING)
        db = await Database.connect(database_url, min_size=1, max_size=1)
        try:
            workers = WorkerRepository(db)
            otp = await workers.create_bootstrap_token("local", timedelta(minutes=1))
            expired = await workers.create_bootstrap_token("local", timedelta(seconds=-1))
        finally:
            await db.close()
        info = worker_pb2.WorkerInfo(
            hostname="intruder", arch="x86_64", runtime="process", cpu_cores=1, memory_mb=64
        )
        async with grpc.aio.insecure_channel(address(hodei)) as channel:
            stub = worker_pb2_grpc.WorkerAgentServiceStub(channel)
            registered = await stub.Register(worker_pb2.RegisterRequest(otp=otp, info=info))
            for bad, reason in ((otp, "already used"), (expired, "expired")):
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await stub.Register(worker_pb2.RegisterRequest(otp=bad, info=info))
                assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert reason in (raised.value.details() or "")

            forged = stub.Connect(metadata=(("authorization", "Session forged.token"),))
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await forged.read()
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED

            stream = stub.Connect(
                metadata=(("authorization", f"Session {registered.session_token}"),)
            )
            result = worker_pb2.JobResult(
                ref=worker_pb2.AttemptRef(job_id=job_id, attempt=1),
                state=jobs_pb2.SUCCEEDED,
                exit_code=0,
            )
            await stream.write(worker_pb2.WorkerMessage(result=result))
            while (reply := await asyncio.wait_for(stream.read(), 10)).WhichOneof(
                "body"
            ) != "rejection":
                pass
            assert reply.rejection.ref.job_id == job_id
            stream.cancel()
        assert (await hodei.client.get(job_id)).state == jobs_pb2.RUNNING  # untouched
        db = await Database.connect(database_url, min_size=1, max_size=1)
        try:
            async with db.connection() as conn:
                cursor = await conn.execute(
                    "SELECT actor, payload FROM audit_logs "
                    "WHERE event_type = 'WorkerReportRefused' AND correlation_id = %s",
                    (job_id,),
                )
                rows = await cursor.fetchall()
        finally:
            await db.close()
        assert [row["actor"] for row in rows] == [f"worker:{registered.worker_id}"]
        assert rows[0]["payload"]["message"] == "result"
        await hodei.client.cancel(job_id)


async def test_dev_mode_answers_only_this_machines_own_pages(database_url: str) -> None:
    """Dev mode makes a request without a token an admin: a page elsewhere must not be able to
    borrow that (DNS rebinding sends its own name as Host; a cross-site form sends its Origin)."""
    async with running_hodei(database_url) as hodei:  # dev mode
        job = {"name": "x", "script": "true"}
        rebound = await hodei.http.post(
            "/api/v1/jobs", json=job, headers={"host": "rebind.attacker.example:8080"}
        )
        assert rebound.status_code == 403
        assert "dev mode answers only requests addressed to 127.0.0.1" in rebound.json()["detail"]
        cross_site = await hodei.http.post(
            "/api/v1/jobs", json=job, headers={"origin": "http://attacker.example"}
        )
        assert cross_site.status_code == 403
        assert cross_site.json() == {
            "detail": "a request from http://attacker.example may not act on this server"
        }
        own_page = f"http://127.0.0.1:{hodei.config.http_port}"
        assert (
            await hodei.http.post("/api/v1/jobs", json=job, headers={"origin": own_page})
        ).status_code == 201
        done = await hodei.wait_final(await hodei.client.queue(shell("echo hi")))
        url = f"ws://127.0.0.1:{hodei.config.http_port}/api/v1/jobs/{done.id}/logs/stream"
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(url, origin="http://attacker.example"):  # type: ignore[arg-type]
                pass


async def test_token_names_and_shapes_are_checked(database_url: str) -> None:
    for name in ("system", "ops\n", "has space"):
        with pytest.raises(ValidationError):
            await make_token(database_url, name, Role.ADMIN)
    async with running_hodei(database_url, dev_mode=False) as hodei:
        for junk in ("x" * 5000, "hodei_" + "y" * 200, "not-ours"):
            refused = await grpc_refusal(hodei, junk)
            assert (refused.code(), refused.details()) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "unknown token",
            )
