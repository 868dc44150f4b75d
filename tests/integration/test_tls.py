"""TLS on both ports, and mutual TLS for workers, with certificates this test makes itself."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import shutil
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hodei.client import HodeiClient
from hodei.server import HodeiServer, ServerConfig
from hodei.store.database import Database
from hodei.store.workers import WorkerRepository
from hodei.tls import ClientTls, ServerTls
from hodei.v1 import jobs_pb2
from hodei.worker.agent import AgentConfig, WorkerAgent
from hodei.worker.runtime import ProcessRuntime

from .conftest import traversable_tmpdir
from .harness import FINAL, config_for_a_test, eventually, shell

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _ca(directory: Path, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, path


def _leaf(
    directory: Path,
    name: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    usage: x509.ObjectIdentifier,
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca[1], hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return cert_path, key_path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca_cert, ca_key, ca_path = _ca(tmp_path, "test-ca")
    server_cert, server_key = _leaf(
        tmp_path, "server", (ca_cert, ca_key), ExtendedKeyUsageOID.SERVER_AUTH
    )
    client_cert, client_key = _leaf(
        tmp_path, "worker", (ca_cert, ca_key), ExtendedKeyUsageOID.CLIENT_AUTH
    )
    _, _, other = _ca(tmp_path, "other-ca")
    return Pki(ca_path, server_cert, server_key, client_cert, client_key, other)  # fmt: skip


@contextlib.asynccontextmanager
async def tls_server(database_url: str, tls: ServerTls) -> AsyncIterator[ServerConfig]:
    data_dir = traversable_tmpdir("hodei-it-tls-")
    config = config_for_a_test(database_url, data_dir, tls=tls)  # dev mode: no tokens
    server = HodeiServer(config)
    await server.start()
    try:
        yield config
    finally:
        await server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def run_worker(
    config: ServerConfig, database_url: str, tls: ClientTls
) -> tuple[WorkerAgent, asyncio.Task[None]]:
    db = await Database.connect(database_url, min_size=1, max_size=1)
    try:
        otp = await WorkerRepository(db).create_bootstrap_token("local", timedelta(minutes=1))
    finally:
        await db.close()
    agent = WorkerAgent(
        AgentConfig(
            server_addresses=(f"127.0.0.1:{config.grpc_port}",),
            otp=otp,
            cpu_cores=2,
            memory_mb=2048,
            work_dir=config.data_dir,
            tls=tls,
        ),
        ProcessRuntime(),
    )
    return agent, asyncio.create_task(agent.run())


async def test_both_ports_serve_tls_and_clients_verify_the_server(
    database_url: str, pki: Pki
) -> None:
    async with tls_server(database_url, ServerTls(pki.server_cert, pki.server_key)) as config:
        address = f"127.0.0.1:{config.grpc_port}"
        async with HodeiClient(address, tls=ClientTls(ca=pki.ca)) as client:
            await client.list(jobs_pb2.ListJobsRequest(page_size=1))
        for wrong in (None, ClientTls(ca=pki.other_ca)):  # plaintext; a CA that is not it
            async with HodeiClient(address, tls=wrong) as client:
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await client.jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=1), timeout=5)
                assert raised.value.code() == grpc.StatusCode.UNAVAILABLE

        https = f"https://127.0.0.1:{config.http_port}"
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=pki.ca)) as http:
            assert (await http.get(f"{https}/healthz")).json() == {"status": "ok"}
        async with httpx.AsyncClient() as http:  # the system's roots do not know our CA
            with pytest.raises(httpx.ConnectError):
                await http.get(f"{https}/healthz")

        # A worker that verifies the server registers and runs a job over TLS.
        agent, task = await run_worker(config, database_url, ClientTls(ca=pki.ca))
        try:
            async with HodeiClient(address, tls=ClientTls(ca=pki.ca)) as client:

                async def registered() -> bool:
                    return bool((await client.workers()).workers)

                await eventually(registered, 30)
                job_id = await client.queue(shell("echo over tls"))

                async def final() -> jobs_pb2.Job | None:
                    job = await client.get(job_id)
                    return job if job.state in FINAL else None

                job = await eventually(final, 30)
                assert job.state == jobs_pb2.SUCCEEDED
        finally:
            agent.stop()
            await asyncio.wait_for(task, 20)


async def test_mutual_tls_keeps_out_a_worker_without_a_certificate(
    database_url: str, pki: Pki
) -> None:
    tls = ServerTls(pki.server_cert, pki.server_key, client_ca=pki.ca)
    async with tls_server(database_url, tls) as config:
        agent, task = await run_worker(config, database_url, ClientTls(ca=pki.ca))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await asyncio.wait_for(task, 30)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE

        with_cert = ClientTls(ca=pki.ca, cert=pki.client_cert, key=pki.client_key)
        agent, task = await run_worker(config, database_url, with_cert)
        try:
            async with HodeiClient(f"127.0.0.1:{config.grpc_port}", tls=with_cert) as client:

                async def registered() -> bool:
                    return bool((await client.workers()).workers)

                await eventually(registered, 30)
        finally:
            agent.stop()
            await asyncio.wait_for(task, 20)
