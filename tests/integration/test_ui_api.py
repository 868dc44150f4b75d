"""The API behind the web UI: providers (REST and gRPC, audited), a job's timeline and
resource samples, the system's health, the metrics, and the web app served at /."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import psycopg
import pytest
from fastapi import FastAPI

from hodei.api.http.web import mount_web
from hodei.domain.providers import ProviderConfig, ProviderType
from hodei.providers.base import ProviderContext
from hodei.providers.manager import ProviderManager
from hodei.store.database import Database
from hodei.store.providers import ProviderRepository
from hodei.v1 import jobs_pb2, providers_pb2, providers_pb2_grpc

from .harness import running_hodei, shell

pytestmark = pytest.mark.integration


async def audit_types(database_url: str, correlation_id: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT event_type FROM audit_logs WHERE correlation_id = %s ORDER BY id",
            (correlation_id,),
        )
        return [row[0] for row in await cursor.fetchall()]


async def test_providers_are_managed_over_rest_and_every_change_is_audited(
    database_url: str,
) -> None:
    async with running_hodei(database_url) as hodei:
        http = hodei.http
        body = {
            "name": "edge-docker",
            "type": "docker",
            "min_workers": 0,
            "max_workers": 3,
            "config": {"default_image": "busybox:1", "network": "none", "region": "eu"},
        }
        created = await http.post("/api/v1/providers", json=body)
        assert created.status_code == 201, created.text
        provider = created.json()
        assert (provider["status"], provider["type"], provider["max_workers"]) == (
            "ACTIVE",
            "docker",
            3,
        )
        assert provider["workers"] == {"total": 0, "ready": 0, "busy": 0}
        assert (await http.post("/api/v1/providers", json=body)).status_code == 409

        bad = await http.post(
            "/api/v1/providers",
            json=body | {"name": "Bad Name", "min_workers": 5, "config": {"network": "overlay"}},
        )
        assert bad.status_code == 422
        fields = {".".join(map(str, d["loc"][1:])) for d in bad.json()["detail"]}
        assert fields == {"name", "max_workers", "config.network"}

        disabled = (await http.post("/api/v1/providers/edge-docker/disable")).json()
        assert (disabled["enabled"], disabled["status"]) == (False, "DISABLED")
        enabled = (await http.post("/api/v1/providers/edge-docker/enable")).json()
        assert enabled["status"] == "ACTIVE"
        changed = await http.put(
            "/api/v1/providers/edge-docker",
            json=body | {"max_workers": 5, "config": {"default_image": "alpine:3"}},
        )
        assert changed.json()["config"] == {"default_image": "alpine:3"}
        renamed = await http.put("/api/v1/providers/edge-docker", json=body | {"name": "other"})
        assert renamed.status_code == 422
        names = [p["name"] for p in (await http.get("/api/v1/providers")).json()]
        assert "edge-docker" in names
        assert (await http.delete("/api/v1/providers/edge-docker")).status_code == 204
        assert (await http.get("/api/v1/providers/edge-docker")).status_code == 404

    assert await audit_types(database_url, provider["id"]) == [
        "ProviderCreated",
        "ProviderDisabled",
        "ProviderEnabled",
        "ProviderUpdated",
        "ProviderDeleted",
    ]


async def test_providers_are_managed_over_grpc(database_url: str) -> None:
    async with running_hodei(database_url) as hodei:
        address = f"127.0.0.1:{hodei.config.grpc_port}"
        async with grpc.aio.insecure_channel(address) as channel:
            stub = providers_pb2_grpc.ProviderManagementServiceStub(channel)
            wanted = providers_pb2.Provider(
                name="lab-k8s", type="kubernetes", enabled=False, max_workers=4
            )
            wanted.config.update({"namespace": "jobs"})
            created = await stub.CreateProvider(
                providers_pb2.CreateProviderRequest(provider=wanted)
            )
            assert (created.name, created.enabled, dict(created.config)) == (
                "lab-k8s",
                False,
                {"namespace": "jobs"},
            )
            on = await stub.EnableProvider(providers_pb2.SetProviderEnabledRequest(name="lab-k8s"))
            assert on.enabled
            listed = await stub.ListProviders(providers_pb2.ListProvidersRequest())
            assert [p.name for p in listed.providers] == ["lab-k8s"]
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.CreateProvider(
                    providers_pb2.CreateProviderRequest(
                        provider=providers_pb2.Provider(name="x", type="nomad")
                    )
                )
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "type" in (refused.value.details() or "")


@pytest.mark.timeout(90)
async def test_a_jobs_timeline_and_resources_and_the_metrics(database_url: str) -> None:
    burn = "end=$(( $(date +%s) + 3 )); while [ $(date +%s) -lt $end ]; do :; done; echo done"
    async with running_hodei(database_url) as hodei:
        job_id = await hodei.client.queue(shell(burn, name="burner"))
        assert (await hodei.wait_final(job_id, seconds=30)).state == jobs_pb2.SUCCEEDED
        http = hodei.http
        events = (await http.get(f"/api/v1/jobs/{job_id}/events")).json()
        types = [e["event_type"] for e in events]
        assert types[:2] == ["JobCreated", "JobAssigned"]
        moves = [e["payload"]["to"] for e in events if e["event_type"] == "JobStatusChanged"]
        assert moves == ["RUNNING", "SUCCEEDED"]

        resources = (await http.get(f"/api/v1/jobs/{job_id}/resources")).json()
        assert resources["job_finished"] is True
        samples = resources["samples"]
        assert len(samples) >= 1
        assert max(s["cpu_percent"] for s in samples) > 10  # a shell spinning on a core
        assert all(s["memory_mb"] > 0 for s in samples)
        missing = await http.get("/api/v1/jobs/00000000-0000-0000-0000-000000000000/resources")
        assert missing.status_code == 404

        day = (await http.get("/api/v1/metrics", params={"window": "day"})).json()
        assert day["total_jobs"] == 1
        assert day["jobs_by_state"] == {"SUCCEEDED": 1}
        assert day["finished_jobs"] == 1
        assert 1500 < day["avg_duration_ms"] < 30_000  # it spins for 2 to 3 s
        assert len(day["trend"]) == 24
        assert sum(b["jobs"] for b in day["trend"]) == 1
        assert day["trend"][-1]["succeeded"] == 1
        week = (await http.get("/api/v1/metrics", params={"window": "week"})).json()
        assert len(week["trend"]) == 28
        assert (await http.get("/api/v1/metrics", params={"window": "year"})).status_code == 422

        system = (await http.get("/api/v1/system")).json()
        assert system["host"]["cpu_count"] >= 1
        assert system["workers_by_state"] == {"READY": 1}
        [worker] = (await http.get("/api/v1/workers")).json()
        assert worker["cpu_percent"] is not None
        assert worker["memory_used_mb"] > 0


async def test_the_web_app_is_served_for_its_own_routes_and_the_api_is_not_shadowed(
    tmp_path: Path,
) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<html>app</html>")
    (tmp_path / "assets" / "app.js").write_text("console.log(1)")
    (tmp_path / "favicon.svg").write_text("<svg/>")
    app = FastAPI()

    @app.get("/api/v1/thing")
    async def thing() -> dict[str, str]:
        return {"ok": "yes"}

    mount_web(app, tmp_path)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for page in ("/", "/jobs/new", "/jobs/abc/logs", "/providers"):
            response = await client.get(page)
            assert (response.status_code, response.text) == (200, "<html>app</html>")
        assert (await client.get("/assets/app.js")).text == "console.log(1)"
        assert (await client.get("/favicon.svg")).text == "<svg/>"
        assert (await client.get("/api/v1/thing")).json() == {"ok": "yes"}
        assert (await client.get("/api/v1/nothing")).status_code == 404
        assert (await client.get("/../../etc/passwd")).text == "<html>app</html>"
        # Paths no file system takes: the app's page, not a 500.
        assert (await client.get("/%00")).status_code == 200
        assert (await client.get("/" + "a" * 5000)).status_code == 200
    empty = FastAPI()
    mount_web(empty, tmp_path / "missing")
    transport = httpx.ASGITransport(app=empty)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/jobs")
        assert response.status_code == 503
        assert "not built" in response.text


async def test_a_stopped_provider_manager_starts_nothing_again(
    database_url: str, tmp_path: Path
) -> None:
    db = await Database.connect(database_url, min_size=1, max_size=2)
    try:
        repository = ProviderRepository(db)
        await repository.upsert(
            ProviderConfig(name="local", type=ProviderType.LOCAL, min_workers=0), actor="t"
        )

        async def no_token(worker_id: str, provider: str) -> str:
            raise AssertionError("no worker may start")

        async def gone(worker_id: str, reason: str) -> None:
            return None

        context = ProviderContext(
            server_address="127.0.0.1:1",
            log_dir=tmp_path / "logs",
            work_dir=tmp_path / "work",
            create_token=no_token,
            worker_gone=gone,
        )
        manager = ProviderManager(repository, context)
        await manager.start()
        assert manager.running() == ["local"]
        assert manager.profiles() == []  # it keeps 0 workers: nothing to place jobs on
        await manager.stop()
        await manager.reconcile()  # a late notification after the server began to stop
        assert manager.running() == []
    finally:
        await db.close()
