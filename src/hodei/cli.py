"""The ``hodei`` command: run the platform, its server and workers, and drive jobs."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pydantic
import typer
from rich.logging import RichHandler

from hodei.cli_jobs import job_app, logs
from hodei.cli_options import DatabaseOpt, DataDirOpt
from hodei.cli_output import err, print_error, print_status
from hodei.cli_tokens import login, logout, token_app
from hodei.config import Settings
from hodei.domain.errors import HodeiError

if TYPE_CHECKING:
    from hodei.server import ServerConfig
    from hodei.store.secrets import SecretBox

# The server, worker and database modules are imported inside the commands that run them, so
# that client commands (`hodei job get`, …) start fast.

log = logging.getLogger("hodei")

app = typer.Typer(
    name="hodei",
    help="Hodei Jobs: queue jobs in PostgreSQL, run them on workers, stream their logs live.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The database: migrations and connection URL.", no_args_is_help=True)
app.add_typer(job_app, name="job")
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")
app.command("logs")(logs)
app.command("login")(login)
app.command("logout")(logout)

BindOpt = Annotated[
    str | None, typer.Option("--bind", envvar="HODEI_BIND", help="Address to listen on.")
]
GrpcPortOpt = Annotated[
    int | None, typer.Option("--grpc-port", envvar="GRPC_PORT", help="gRPC port.")
]
HttpPortOpt = Annotated[
    int | None, typer.Option("--http-port", envvar="HODEI_HTTP_PORT", help="HTTP port.")
]
InsecureDevOpt = Annotated[
    bool,
    typer.Option(
        "--insecure-dev-mode",
        envvar="HODEI_INSECURE_DEV_MODE",
        help="Allow dev mode (anyone is admin) on an address other machines can reach.",
    ),
]
LogLevelOpt = Annotated[
    str | None,
    typer.Option(
        "--log-level", envvar=["HODEI_LOG_LEVEL", "RUST_LOG"], help="debug, info, warn or error."
    ),
]

# The protocol's timings are settings of the environment (the server hands them to workers).
TIMINGS_HELP = (
    "Timings, from the environment: HODEI_HEARTBEAT_INTERVAL_S (5), HODEI_LEASE_TTL_S (30: a "
    "worker silent this long has lost its jobs), HODEI_CANCEL_GRACE_S (10: SIGTERM to SIGKILL "
    "on cancel and timeout), HODEI_TIMEOUT_GRACE_S (15: past a job's deadline with no result, "
    "the server declares TIMEOUT), HODEI_RETRY_BASE_S (1: first retry backoff, doubled each "
    "time, with jitter)."
)


def settings_from(**overrides: object) -> Settings:
    """Environment settings with the flags that were given on top."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            named = f" {where} (HODEI_{where.upper()})" if where else ""
            print_error(f"invalid setting{named}: {message}")
        raise typer.Exit(2) from None


def setup_logging(level: str) -> None:
    name = {"trace": "DEBUG", "warn": "WARNING"}.get(level, level.upper())
    handler: logging.Handler
    if err.is_terminal:
        handler = RichHandler(console=err, show_path=False, rich_tracebacks=False)
        log_format = "%(message)s"
    else:
        # Rich renders each record as a table: far too slow for a server's log in a file.
        handler = logging.StreamHandler()
        log_format = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    logging.basicConfig(level=name, format=log_format, datefmt="%H:%M:%S", handlers=[handler])
    # psycopg's pool is chatty about reconnects that we report ourselves.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` where ``stop`` is set by SIGINT or SIGTERM; errors are one line."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    try:
        asyncio.run(runner())
    except (HodeiError, OSError) as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None


def secret_box_from(settings: Settings, *, key_file: Path | None = None) -> SecretBox | None:
    """The key that seals secret variables at rest: HODEI_SECRET_KEY, else the one kept in
    ``key_file`` (made there, random, the first time), else none.

    Raises:
        SecretKeyError: the key given or kept is not 32 bytes in base64.
    """
    from hodei.store.secrets import SecretBox, load_or_create_key_file

    if settings.secret_key is not None:
        return SecretBox.from_text(settings.secret_key.get_secret_value())
    if key_file is None:
        return None
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key, created = load_or_create_key_file(key_file)
    if created:
        log.info(
            "made a secret key in %s (mode 0600): secret variables of stored jobs need it; "
            "keep it with the data, or set HODEI_SECRET_KEY",
            key_file,
        )
    return SecretBox(key)


def server_config(
    settings: Settings,
    database_url: str,
    *,
    dev_default: bool,
    secret_box: SecretBox | None = None,
) -> ServerConfig:
    """The server's configuration; the secret key from HODEI_SECRET_KEY unless given."""
    from hodei.domain.retries import RetryPolicy
    from hodei.server import ServerConfig
    from hodei.services.workers import WorkerProtocolConfig
    from hodei.tls import ServerTls

    tls = None
    if settings.tls_cert is not None and settings.tls_key is not None:
        tls = ServerTls(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    return ServerConfig(
        tls=tls,
        dev_mode=dev_default if settings.dev_mode is None else settings.dev_mode,
        insecure_dev_mode=settings.insecure_dev_mode,
        submit_rate_per_minute=settings.submit_rate_per_minute,
        limit_admins=settings.limit_admins,
        database_url=database_url,
        data_dir=settings.data_dir,
        bind_host=settings.bind_host,
        grpc_port=settings.grpc_port,
        http_port=settings.http_port,
        protocol=WorkerProtocolConfig(
            heartbeat_interval=timedelta(seconds=settings.heartbeat_interval_s),
            lease_ttl=timedelta(seconds=settings.lease_ttl_s),
            cancel_grace=timedelta(seconds=settings.cancel_grace_s),
            log_limit_bytes=settings.log_max_bytes_per_job,
        ),
        log_retention=timedelta(days=settings.log_retention_days)
        if settings.log_retention_days
        else None,
        retry=RetryPolicy(base=timedelta(seconds=settings.retry_base_s)),
        timeout_grace=timedelta(seconds=settings.timeout_grace_s),
        secret_box=secret_box or secret_box_from(settings),
    )


async def ensure_local_provider(database_url: str, workers: int) -> None:
    """Make the ``local`` provider exist and keep ``workers`` workers (0 disables it)."""
    from hodei.domain.providers import ProviderConfig, ProviderType
    from hodei.store.database import Database
    from hodei.store.migrations import migrate
    from hodei.store.providers import ProviderRepository

    await migrate(database_url)
    db = await Database.connect(database_url, min_size=1, max_size=1)
    try:
        repository = ProviderRepository(db)
        existing = {p.name: p for p in await repository.list()}
        current = existing.get("local")
        wanted = ProviderConfig(
            name="local",
            type=ProviderType.LOCAL,
            enabled=workers > 0,
            min_workers=workers,
            max_workers=max(workers, 1),
            config=current.config if current else {},
        )
        if current is not None:
            wanted = dataclasses.replace(wanted, id=current.id)
        if current is None or (current.enabled, current.min_workers) != (
            wanted.enabled,
            wanted.min_workers,
        ):
            await repository.upsert(wanted, actor="system")
    finally:
        await db.close()


def docker_engine_network() -> str | None:
    """The network for containers when a Docker engine answers (``bridge`` when it has one,
    else ``none``); None when no engine answers."""
    from hodei.worker.containers import EngineUnavailableError, connect

    try:
        api = connect("", 3)
    except EngineUnavailableError:
        return None
    try:
        return "bridge" if api.networks(names=["bridge"]) else "none"
    except Exception:
        return "none"
    finally:
        api.close()


async def ensure_docker_provider(database_url: str, *, enabled: bool | None) -> str:
    """The ``docker`` provider as HODEI_DOCKER_ENABLED says: 1 makes it run, 0 turns it off,
    unset (``hodei up``) creates and enables it when a Docker engine answers and none exists
    yet (one a person disabled stays so). Says what it did, in one line."""
    from hodei.domain.providers import ProviderConfig, ProviderType
    from hodei.store.database import Database
    from hodei.store.migrations import migrate
    from hodei.store.providers import ProviderRepository

    network = None if enabled is False else await asyncio.to_thread(docker_engine_network)
    await migrate(database_url)
    db = await Database.connect(database_url, min_size=1, max_size=1)
    try:
        repository = ProviderRepository(db)
        current = {p.name: p for p in await repository.list()}.get("docker")
        if current is None and (enabled or (enabled is None and network is not None)):
            current = ProviderConfig(
                name="docker",
                type=ProviderType.DOCKER,
                enabled=True,
                min_workers=1,  # one warm worker: an image job starts without waiting
                max_workers=4,
                idle_timeout=timedelta(minutes=2),
                config={"network": network or "none"},
            )
            await repository.upsert(current, actor="system")
        elif current is not None and enabled is not None and current.enabled != enabled:
            current = dataclasses.replace(current, enabled=enabled)
            await repository.upsert(current, actor="system")
    finally:
        await db.close()
    if current is None or not current.enabled:
        return "no Docker provider: jobs that name an image run on the host, image not applied"
    if network is None:
        return "the docker provider is enabled but no Docker engine answers (see DOCKER_HOST)"
    return "Docker engine found: jobs that name an image run in their container"


@app.command(epilog=TIMINGS_HELP)
def up(
    data_dir: DataDirOpt = None,
    database_url: DatabaseOpt = None,
    bind: BindOpt = None,
    grpc_port: GrpcPortOpt = None,
    http_port: HttpPortOpt = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", envvar="HODEI_LOCAL_WORKERS", help="Local workers to keep running."
        ),
    ] = None,
    log_level: LogLevelOpt = None,
    insecure_dev_mode: InsecureDevOpt = False,
) -> None:
    """Run everything: PostgreSQL (embedded unless HODEI_DATABASE_URL is set), the server and
    local workers. Ctrl-C stops it all. On a loopback address it runs in dev mode (no token
    needed) unless HODEI_DEV_MODE=0."""
    settings = settings_from(
        data_dir=data_dir,
        database_url=database_url,
        bind_host=bind,
        grpc_port=grpc_port,
        http_port=http_port,
        local_workers=workers,
        log_level=log_level,
        insecure_dev_mode=insecure_dev_mode or None,
    )
    setup_logging(settings.log_level)
    from hodei.server import HodeiServer, check_dev_mode, is_loopback
    from hodei.store.embedded import EmbeddedPostgres
    from hodei.store.secrets import KEY_FILE_NAME

    dev_mode = is_loopback(settings.bind_host) if settings.dev_mode is None else settings.dev_mode
    try:
        check_dev_mode(settings.bind_host, dev_mode=dev_mode, insecure=settings.insecure_dev_mode)
        secret_box = secret_box_from(settings, key_file=settings.data_dir / KEY_FILE_NAME)
    except (HodeiError, OSError) as error:
        print_error(str(error))
        raise typer.Exit(2) from None

    async def main(stop: asyncio.Event) -> None:
        embedded: EmbeddedPostgres | None = None
        server: HodeiServer | None = None
        try:
            url = settings.database_url
            if url is None:
                settings.data_dir.mkdir(parents=True, exist_ok=True)
                embedded = EmbeddedPostgres(settings.data_dir, bin_dir=settings.postgres_bin_dir)
                with err.status("starting the embedded PostgreSQL…"):
                    url = await embedded.start()
                log.info(
                    "embedded PostgreSQL on port %s (data in %s)", embedded.port, embedded.data_dir
                )
            await ensure_local_provider(url, settings.local_workers)
            docker_note = await ensure_docker_provider(url, enabled=settings.docker_enabled)
            server = HodeiServer(
                server_config(settings, url, dev_default=dev_mode, secret_box=secret_box)
            )
            await server.start()
            print_status(docker_note)
            print_status(
                "dev mode: no token needed (only this machine can reach it)"
                if dev_mode
                else "API tokens required: `hodei token create --name NAME --role admin`, "
                "then HODEI_TOKEN or `hodei login`"
            )
            print_status(
                f"Hodei is up. gRPC {settings.bind_host}:{settings.grpc_port} · "
                f"web {'https' if settings.tls_cert else 'http'}://{settings.bind_host}:"
                f"{settings.http_port} · Ctrl-C to stop",
                style="bold green",
            )
            await stop.wait()
            log.info("stopping…")
        finally:
            if server is not None:
                await server.stop()
            if embedded is not None:
                await embedded.stop()

    run_until_signalled(main)


@app.command(epilog=TIMINGS_HELP)
def server(
    data_dir: DataDirOpt = None,
    database_url: DatabaseOpt = None,
    bind: BindOpt = None,
    grpc_port: GrpcPortOpt = None,
    http_port: HttpPortOpt = None,
    log_level: LogLevelOpt = None,
    insecure_dev_mode: InsecureDevOpt = False,
) -> None:
    """Run the server alone against an existing PostgreSQL (HODEI_DATABASE_URL). Callers need
    API tokens unless HODEI_DEV_MODE=1."""
    settings = settings_from(
        data_dir=data_dir,
        database_url=database_url,
        bind_host=bind,
        grpc_port=grpc_port,
        http_port=http_port,
        log_level=log_level,
        insecure_dev_mode=insecure_dev_mode or None,
    )
    if settings.database_url is None:
        print_error("hodei server needs HODEI_DATABASE_URL (or use `hodei up`)")
        raise typer.Exit(2)
    from hodei.server import check_dev_mode

    try:
        check_dev_mode(
            settings.bind_host,
            dev_mode=bool(settings.dev_mode),
            insecure=settings.insecure_dev_mode,
        )
    except HodeiError as error:
        print_error(str(error))
        raise typer.Exit(2) from None
    setup_logging(settings.log_level)
    from hodei.server import HodeiServer

    url = settings.database_url

    async def main(stop: asyncio.Event) -> None:
        if settings.docker_enabled is not None:
            log.info(await ensure_docker_provider(url, enabled=settings.docker_enabled))
        hodei = HodeiServer(server_config(settings, url, dev_default=False))
        try:
            await hodei.start()
            await stop.wait()
        finally:
            await hodei.stop()

    run_until_signalled(main)


@app.command()
def worker(
    server_address: Annotated[
        str,
        typer.Option(
            "--server",
            envvar="HODEI_SERVER_ADDRESS",
            help="The server's gRPC address; several, comma-separated, to fail over.",
        ),
    ] = "localhost:50051",
    otp: Annotated[
        str,
        typer.Option(
            "--otp",
            envvar="HODEI_OTP_TOKEN",
            help="The one-time token to register with.",
            show_default=False,
        ),
    ] = "",
    cpus: Annotated[float, typer.Option("--cpus", help="CPU cores to offer (default: all).")] = 0,
    memory_mb: Annotated[
        int, typer.Option("--memory-mb", help="Memory to offer in MB (default: all).")
    ] = 0,
    region: Annotated[str, typer.Option("--region", help="The region this worker is in.")] = "",
    work_dir: Annotated[
        Path | None, typer.Option("--work-dir", help="Where job working directories go.")
    ] = None,
    drain_timeout: Annotated[
        float | None,
        typer.Option(
            "--drain-timeout",
            envvar="HODEI_DRAIN_TIMEOUT_S",
            help="Seconds running jobs get to finish on SIGTERM before they are handed back.",
        ),
    ] = None,
    runtime: Annotated[
        str,
        typer.Option(
            "--runtime",
            help="process: jobs run as processes on this host; docker: each job in a container.",
        ),
    ] = "process",
    default_image: Annotated[
        str,
        typer.Option("--default-image", help="docker: the image of jobs that name none."),
    ] = "alpine:latest",
    network: Annotated[
        str, typer.Option("--network", help="docker: the containers' network (none|host|bridge).")
    ] = "none",
    docker_host: Annotated[
        str,
        typer.Option(
            "--docker-host",
            envvar="DOCKER_HOST",
            help="docker: the engine's address.",
        ),
    ] = "",
    keep_containers: Annotated[
        bool,
        typer.Option("--keep-containers", help="docker: keep containers after their job ends."),
    ] = False,
    tls_ca: Annotated[
        Path | None,
        typer.Option("--tls-ca", envvar="HODEI_TLS_CA", help="Verify a TLS server with this CA."),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            "--tls-cert", envvar="HODEI_TLS_CLIENT_CERT", help="Present this certificate (mTLS)."
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option("--tls-key", envvar="HODEI_TLS_CLIENT_KEY", help="The key of --tls-cert."),
    ] = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Run a worker agent: register with a one-time token and run the jobs it is given.

    SIGTERM drains it: no new jobs, running ones get the drain timeout, the rest go back to the
    queue for another worker."""
    if not otp:
        print_error("a worker needs a one-time token: --otp or HODEI_OTP_TOKEN")
        raise typer.Exit(2)
    if runtime not in ("process", "docker"):
        print_error(f"--runtime: process or docker, not {runtime!r}")
        raise typer.Exit(2)
    settings = settings_from(log_level=log_level, drain_timeout_s=drain_timeout)
    setup_logging(settings.log_level)
    import grpc
    import psutil

    from hodei.tls import ClientTls
    from hodei.worker.agent import AgentConfig, WorkerAgent, orphan_watch
    from hodei.worker.runtime import ProcessRuntime, Runtime

    job_runtime: Runtime = ProcessRuntime()
    if runtime == "docker":
        from hodei.worker.containers import DockerRuntime, DockerSettings, connect

        try:
            job_runtime = DockerRuntime(
                DockerSettings(default_image, network, keep_containers, docker_host)
            )
            connect(docker_host, 10).close()  # fail now, before registering, when it is down
        except (ValueError, HodeiError) as exc:
            print_error(f"docker runtime: {exc}")
            raise typer.Exit(2) from None

    managed = os.environ.get("HODEI_WORKER_MANAGED") == "1"
    if managed:
        # Its provider stops it with SIGTERM; a Ctrl-C at the terminal is the server's to handle.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    config = AgentConfig(
        server_addresses=tuple(a.strip() for a in server_address.split(",") if a.strip()),
        otp=otp,
        cpu_cores=cpus or float(os.cpu_count() or 1),
        memory_mb=memory_mb or psutil.virtual_memory().total // 2**20,
        region=region,
        work_dir=work_dir or Path(os.environ.get("TMPDIR", "/tmp")),
        drain_timeout=timedelta(seconds=settings.drain_timeout_s),
        tls=ClientTls(tls_ca, tls_cert, tls_key) if (tls_ca or tls_cert or tls_key) else None,
    )

    async def main(stop: asyncio.Event) -> None:
        agent = WorkerAgent(config, job_runtime)
        stopper = asyncio.create_task(stop.wait())
        stopper.add_done_callback(lambda _: agent.stop())
        watcher = orphan_watch(agent, parent) if managed else None
        try:
            await agent.run()
        except grpc.aio.AioRpcError as error:
            raise HodeiError(f"the server refused this worker: {error.details()}") from None
        finally:
            stopper.cancel()
            if watcher is not None:
                watcher.cancel()

    run_until_signalled(main)


@db_app.command("migrate")
def db_migrate(data_dir: DataDirOpt = None, database_url: DatabaseOpt = None) -> None:
    """Apply the migrations the database lacks."""
    settings = settings_from(data_dir=data_dir, database_url=database_url)
    from hodei.store.embedded import EmbeddedPostgres
    from hodei.store.migrations import migrate

    async def main(stop: asyncio.Event) -> None:
        embedded = None
        url = settings.database_url
        if url is None:
            embedded = EmbeddedPostgres(settings.data_dir, bin_dir=settings.postgres_bin_dir)
            url = await embedded.start()
        try:
            applied = await migrate(url)
        finally:
            if embedded is not None:
                await embedded.stop()
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied)
        print_status(f"applied: {names}" if applied else "the schema is up to date")

    run_until_signalled(main)


@app.command("worker-token")
def worker_token(
    provider: Annotated[
        str, typer.Option("--provider", help="The provider the worker counts under.")
    ] = "local",
    ttl: Annotated[float, typer.Option("--ttl", help="Seconds the token stays valid.")] = 300,
    data_dir: DataDirOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Print a one-time token for starting a worker by hand (`hodei worker --otp TOKEN`).

    Needs access to the database, as an administrator has."""
    settings = settings_from(data_dir=data_dir, database_url=database_url)
    from hodei.store.database import Database
    from hodei.store.embedded import EmbeddedPostgres
    from hodei.store.workers import WorkerRepository

    url = settings.database_url or EmbeddedPostgres(settings.data_dir).stored_url()
    if url is None:
        print_error(f"no database: set HODEI_DATABASE_URL or run `hodei up` ({settings.data_dir})")
        raise typer.Exit(1)

    async def main(stop: asyncio.Event) -> None:
        db = await Database.connect(url, min_size=1, max_size=1)
        try:
            token = await WorkerRepository(db).create_bootstrap_token(
                provider, timedelta(seconds=ttl)
            )
        finally:
            await db.close()
        print(token)

    run_until_signalled(main)


@db_app.command("url")
def db_url(data_dir: DataDirOpt = None, database_url: DatabaseOpt = None) -> None:
    """Print the database URL in use, so that `psql "$(hodei db url)"` works."""
    settings = settings_from(data_dir=data_dir, database_url=database_url)
    if settings.database_url:
        print(settings.database_url)
        return
    from hodei.store.embedded import EmbeddedPostgres

    url = EmbeddedPostgres(settings.data_dir).stored_url()
    if url is None:
        print_error(f"no embedded database in {settings.data_dir} yet: run `hodei up` first")
        raise typer.Exit(1)
    print(url)


def main() -> None:
    """Entry point of the ``hodei`` console script."""
    app()


if __name__ == "__main__":
    main()
