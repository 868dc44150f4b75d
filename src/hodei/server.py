"""Assembles one Hodei server: database, scheduler, providers, gRPC and HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc
import uvicorn
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hodei.api.grpc.auth import AuthInterceptor
from hodei.api.grpc.providers import ProviderManagementServicer
from hodei.api.grpc.servicers import JobExecutionServicer, LogStreamServicer, SchedulerServicer
from hodei.api.grpc.worker_agent import WorkerAgentServicer
from hodei.api.http.app import create_app
from hodei.domain.errors import HodeiError
from hodei.domain.placement import WorkerProfile
from hodei.domain.providers import ProviderLoad
from hodei.domain.retries import RetryPolicy
from hodei.domain.workers import WorkerState
from hodei.providers.base import ProviderContext
from hodei.providers.manager import ProviderManager
from hodei.scheduler.catalog import CapacityCatalog
from hodei.scheduler.dispatcher import Dispatcher
from hodei.scheduler.reaper import Reaper
from hodei.scheduler.sessions import SessionRegistry
from hodei.services.auth import Authenticator
from hodei.services.jobs import JobService
from hodei.services.loghub import LogHub
from hodei.services.logs import LogService
from hodei.services.metrics import MetricsService
from hodei.services.providers import ProviderService
from hodei.services.registry import Services
from hodei.services.scheduler import SchedulerService
from hodei.services.workers import WorkerProtocolConfig, WorkerService
from hodei.store.database import Database
from hodei.store.jobs import JobRepository
from hodei.store.logs import LogRepository
from hodei.store.metrics import MetricsRepository
from hodei.store.migrations import migrate
from hodei.store.notify import (
    CANCELS_CHANNEL,
    JOBS_CHANNEL,
    PROVIDERS_CHANNEL,
    TOKENS_CHANNEL,
    Notifier,
)
from hodei.store.providers import ProviderRepository, ProviderStore
from hodei.store.retention import LogRetention
from hodei.store.secrets import SecretBox
from hodei.store.tokens import TokenRepository
from hodei.store.workers import WorkerRepository
from hodei.tls import ServerTls
from hodei.v1 import (
    jobs_pb2,
    jobs_pb2_grpc,
    logs_pb2,
    logs_pb2_grpc,
    providers_pb2,
    providers_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    jobs_pb2.DESCRIPTOR.services_by_name["JobExecutionService"].full_name,
    logs_pb2.DESCRIPTOR.services_by_name["LogStreamService"].full_name,
    scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name,
    worker_pb2.DESCRIPTOR.services_by_name["WorkerAgentService"].full_name,
    providers_pb2.DESCRIPTOR.services_by_name["ProviderManagementService"].full_name,
)


@dataclass(frozen=True)
class ServerConfig:
    """Where a server listens, where it keeps state, and its protocol timings."""

    database_url: str
    data_dir: Path
    bind_host: str = "127.0.0.1"
    grpc_port: int = 50051
    http_port: int = 8080
    protocol: WorkerProtocolConfig = field(default_factory=WorkerProtocolConfig)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # How long past a job's deadline the server waits for the worker's own timeout to report.
    timeout_grace: timedelta = timedelta(seconds=15)
    reap_interval: timedelta = timedelta(seconds=1)
    # Log lines older than this are deleted; None keeps them forever.
    log_retention: timedelta | None = timedelta(days=30)
    # Dev mode: no token, or any `dev-…` token, is an admin. Only on a loopback address unless
    # insecure_dev_mode says otherwise.
    dev_mode: bool = False
    insecure_dev_mode: bool = False
    # Jobs a minute one token may submit (0: no limit); admins are not limited unless asked.
    submit_rate_per_minute: float = 600.0
    limit_admins: bool = False
    # Seals jobs' secret variables at rest; without it, jobs with secrets are refused.
    secret_box: SecretBox | None = None
    # TLS on both ports (and mutual TLS on gRPC with a client CA); None: plaintext.
    tls: ServerTls | None = None

    @property
    def worker_address(self) -> str:
        """How local workers dial this server."""
        host = "127.0.0.1" if self.bind_host in ("0.0.0.0", "", "::") else self.bind_host
        return f"{host}:{self.grpc_port}"


def check_dev_mode(bind_host: str, *, dev_mode: bool, insecure: bool) -> None:
    """Dev mode makes anyone an admin: only where nobody else can reach the server.

    Raises:
        HodeiError: dev mode on an address other than loopback, without ``insecure``.
    """
    if dev_mode and not insecure and not is_loopback(bind_host):
        raise HodeiError(
            f"refusing to run in dev mode on {bind_host}: dev mode lets anyone who can reach it "
            "run commands as admin; listen on 127.0.0.1, turn dev mode off "
            "(HODEI_DEV_MODE=0, and use API tokens), or pass --insecure-dev-mode"
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _EmbeddedUvicorn(uvicorn.Server):
    """Uvicorn inside our event loop: the server owns the signals, not uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HodeiServer:
    """One server process. ``start`` brings it up; ``stop`` takes it down in order."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._db: Database | None = None
        self._notifier: Notifier | None = None
        self._dispatcher: Dispatcher | None = None
        self._reaper: Reaper | None = None
        self._retention: LogRetention | None = None
        self._providers: ProviderManager | None = None
        self._grpc: grpc.aio.Server | None = None
        self._http: _EmbeddedUvicorn | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Migrate, connect, start the scheduler and providers, then open both ports.

        Raises:
            HodeiError: dev mode on an address other than loopback without insecure_dev_mode.
        """
        cfg = self.config
        check_dev_mode(cfg.bind_host, dev_mode=cfg.dev_mode, insecure=cfg.insecure_dev_mode)
        if cfg.tls is not None:
            cfg.tls.check()
        applied = await migrate(cfg.database_url)
        if applied:
            log.info("applied migrations: %s", ", ".join(m.name for m in applied))
        self._db = db = await Database.connect(cfg.database_url, max_size=20)
        self._notifier = notifier = Notifier(cfg.database_url)
        await notifier.start()
        jobs = JobRepository(db, cfg.retry, secrets=cfg.secret_box)
        logs = LogRepository(db, origin=jobs.origin)
        workers, providers = WorkerRepository(db), ProviderRepository(db)
        sessions = SessionRegistry()
        hub = LogHub()
        manager = ProviderManager(providers, self._provider_context(workers, lambda: catalog))
        catalog = CapacityCatalog(workers, manager.profiles, fresh=cfg.protocol.lease_ttl)
        self._dispatcher = dispatcher = Dispatcher(
            jobs, sessions, lease_ttl=cfg.protocol.lease_ttl, runtime_mix=catalog.runtime_mix
        )
        notifier.on(JOBS_CHANNEL, dispatcher.on_notification)
        self._reaper = reaper = Reaper(
            jobs,
            sessions,
            dispatcher,
            lease_ttl=cfg.protocol.lease_ttl,
            timeout_grace=cfg.timeout_grace,
            interval=cfg.reap_interval,
        )
        metrics = MetricsRepository(db)
        worker_service = WorkerService(
            workers, jobs, logs, sessions, dispatcher, catalog, cfg.protocol, hub, metrics
        )

        async def apply_providers() -> None:
            """This server's providers follow the table at once; the others when told."""
            await manager.reconcile()
            catalog.invalidate()
            await db.fetch_all("notify_providers")

        def providers_changed(_payload: str) -> None:
            task = asyncio.create_task(manager.reconcile())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            catalog.invalidate()

        notifier.on(PROVIDERS_CHANNEL, providers_changed)
        job_service = JobService(
            jobs, catalog, dispatcher, sessions, notifier, cancel_grace=cfg.protocol.cancel_grace
        )
        notifier.on(CANCELS_CHANNEL, job_service.on_cancel_notification)
        services = Services(
            jobs=job_service,
            logs=LogService(jobs, logs, notifier, hub),
            scheduler=SchedulerService(workers),
            workers=worker_service,
            providers=ProviderService(ProviderStore(db), apply_providers),
            metrics=MetricsService(metrics, workers),
            check_ready=db.ping,
            auth=Authenticator(
                TokenRepository(db),
                dev_mode=cfg.dev_mode,
                submit_rate_per_minute=cfg.submit_rate_per_minute,
                limit_admins=cfg.limit_admins,
            ),
        )
        notifier.on(TOKENS_CHANNEL, lambda _payload: services.auth.forget())
        await self._start_grpc(services)
        await self._start_http(services)
        dispatcher.start()
        reaper.start()
        if cfg.log_retention is not None:
            self._retention = LogRetention(logs, keep=cfg.log_retention)
            self._retention.start()
        self._providers = manager
        await manager.start()
        log.info(
            "Hodei server ready: gRPC on %s:%d, HTTP on http://%s:%d",
            cfg.bind_host,
            cfg.grpc_port,
            cfg.bind_host,
            cfg.http_port,
        )

    def _provider_context(
        self, workers: WorkerRepository, catalog: Callable[[], CapacityCatalog]
    ) -> ProviderContext:
        async def create_token(worker_id: str, provider: str) -> str:
            return await workers.create_bootstrap_token(
                provider, self.config.protocol.otp_ttl, worker_id
            )

        async def worker_released(worker_id: str, reason: str) -> bool:
            if not await workers.release_idle(worker_id, reason):
                return False  # it took a job meanwhile
            log.info("worker %s released: %s", worker_id, reason)
            return True

        async def load(profile: WorkerProfile, worker_ids: Sequence[str]) -> ProviderLoad:
            mix = await catalog().runtime_mix()
            return await workers.provider_load(profile, worker_ids, runtimes=mix)

        async def worker_gone(worker_id: str, reason: str) -> None:
            await workers.set_state(
                worker_id,
                WorkerState.TERMINATED,
                event_type="WorkerTerminated",
                actor="system",
                reason=reason,
            )

        return ProviderContext(
            server_address=self.config.worker_address,
            log_dir=self.config.data_dir / "logs",
            work_dir=self.config.data_dir / "work",
            create_token=create_token,
            worker_gone=worker_gone,
            worker_released=worker_released,
            load=load,
            worker_env=self._worker_tls_env(),
        )

    def _worker_tls_env(self) -> dict[str, str]:
        """With TLS, the workers this server starts trust HODEI_TLS_CA, or else its own
        certificate (a self-signed one); for mutual TLS they present HODEI_TLS_CLIENT_CERT/KEY
        from the server's environment."""
        if self.config.tls is None:
            return {}
        return {"HODEI_TLS_CA": os.environ.get("HODEI_TLS_CA") or str(self.config.tls.cert)}

    async def _start_grpc(self, services: Services) -> None:
        server = grpc.aio.server(
            interceptors=[AuthInterceptor(services.auth)],
            options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
            ],
        )
        jobs_pb2_grpc.add_JobExecutionServiceServicer_to_server(
            JobExecutionServicer(services.jobs), server
        )
        logs_pb2_grpc.add_LogStreamServiceServicer_to_server(
            LogStreamServicer(services.logs), server
        )
        scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(
            SchedulerServicer(services.scheduler), server
        )
        worker_pb2_grpc.add_WorkerAgentServiceServicer_to_server(
            WorkerAgentServicer(services.workers), server
        )
        providers_pb2_grpc.add_ProviderManagementServiceServicer_to_server(
            ProviderManagementServicer(services.providers), server
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        names = (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
        address = f"{self.config.bind_host}:{self.config.grpc_port}"
        tls = self.config.tls
        bound = (
            server.add_secure_port(address, tls.grpc_credentials())
            if tls is not None
            else server.add_insecure_port(address)
        )
        if bound == 0:
            raise OSError(f"cannot listen for gRPC on {address}")
        await server.start()
        for name in ("", *SERVICE_NAMES):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._grpc = server

    async def _start_http(self, services: Services) -> None:
        cfg = self.config
        # IPPROTO_TCP said explicitly: asyncio sets TCP_NODELAY on accepted sockets only when
        # the listening socket's protocol is TCP; without it every response on a kept-alive
        # connection waited 40 ms for the delayed ACK.
        family = socket.AF_INET6 if ":" in cfg.bind_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((cfg.bind_host, cfg.http_port))
        except OSError as exc:
            sock.close()
            raise OSError(
                f"cannot listen for HTTP on {cfg.bind_host}:{cfg.http_port}: {exc.strerror}"
            ) from None
        tls = cfg.tls
        uv_config = uvicorn.Config(
            create_app(services),
            log_level="warning",
            lifespan="off",
            access_log=False,
            ssl_certfile=str(tls.cert) if tls else None,
            ssl_keyfile=str(tls.key) if tls else None,
            # What a browser or client may send over the log WebSocket (it sends nothing).
            ws_max_size=64 * 1024,
        )
        self._http = _EmbeddedUvicorn(uv_config)
        self._http_task = asyncio.create_task(self._http.serve(sockets=[sock]))
        while not self._http.started:
            if self._http_task.done():
                await self._http_task
                raise OSError("the HTTP server stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Providers first (their workers report while the server still listens), then the
        ports, the scheduler and the database."""
        for task in list(self._background):
            task.cancel()
        if self._providers is not None:
            await self._providers.stop()
        if self._grpc is not None:
            await self._grpc.stop(grace=2)
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._http_task
        if self._retention is not None:
            await self._retention.stop()
        if self._reaper is not None:
            await self._reaper.stop()
        if self._dispatcher is not None:
            await self._dispatcher.stop()
        if self._notifier is not None:
            await self._notifier.stop()
        if self._db is not None:
            await self._db.close()
        log.info("Hodei server stopped")
