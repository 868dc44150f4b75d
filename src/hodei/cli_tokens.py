"""``hodei token …``, ``hodei login`` and ``hodei logout``: API tokens and the CLI's own."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from hodei.cli_options import DatabaseOpt, DataDirOpt
from hodei.cli_output import out, print_error, print_status

token_app = typer.Typer(
    help="API tokens: create (shown once), list, revoke. Needs access to the database.",
    no_args_is_help=True,
)

T = TypeVar("T")


def token_file() -> Path:
    """Where ``hodei login`` keeps the CLI's token."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "hodei" / "token"


def cli_token() -> str | None:
    """The token the CLI sends: HODEI_TOKEN, else the one ``hodei login`` stored."""
    token = os.environ.get("HODEI_TOKEN", "").strip()
    if token:
        return token
    try:
        return token_file().read_text().strip() or None
    except OSError:
        return None


def _with_tokens(
    data_dir: Path | None,
    database_url: str | None,
    action: Callable[..., Awaitable[T]],
) -> T:
    from hodei.cli import settings_from
    from hodei.domain.errors import HodeiError
    from hodei.store.database import Database
    from hodei.store.embedded import EmbeddedPostgres
    from hodei.store.migrations import migrate
    from hodei.store.tokens import TokenRepository

    settings = settings_from(data_dir=data_dir, database_url=database_url)
    url = settings.database_url or EmbeddedPostgres(settings.data_dir).stored_url()
    if url is None:
        print_error(f"no database: set HODEI_DATABASE_URL or run `hodei up` ({settings.data_dir})")
        raise typer.Exit(1)

    async def main() -> T:
        await migrate(url)
        db = await Database.connect(url, min_size=1, max_size=1)
        try:
            return await action(TokenRepository(db))
        finally:
            await db.close()

    try:
        return asyncio.run(main())
    except HodeiError as error:
        print_error(str(error))
        raise typer.Exit(1) from None


@token_app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="Who or what uses it (its audit actor).")],
    role: Annotated[str, typer.Option("--role", help="admin, operator or viewer.")] = "viewer",
    expires: Annotated[
        str | None, typer.Option("--expires", help="e.g. 30d, 12h, 90m (default: never).")
    ] = None,
    data_dir: DataDirOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Create a token and print it: it is shown this once; only its hash is kept."""
    from hodei.domain.auth import Role, parse_duration
    from hodei.domain.errors import ValidationError

    try:
        parsed_role = Role.parse(role)
        lifetime = parse_duration(expires) if expires else None
    except ValidationError as error:
        print_error(str(error))
        raise typer.Exit(2) from None
    actor = f"cli:{os.environ.get('USER') or os.getuid()}"
    token, stored = _with_tokens(
        data_dir, database_url, lambda tokens: tokens.create(name, parsed_role, actor, lifetime)
    )
    print(token)
    until = f", expires {stored.expires_at:%Y-%m-%d %H:%M}" if stored.expires_at else ""
    print_status(
        f"token {stored.name} ({stored.role.label}{until}): keep it, it is not shown again"
    )


@token_app.command("list")
def list_tokens(data_dir: DataDirOpt = None, database_url: DatabaseOpt = None) -> None:
    """The tokens: name, role, when made, expiry, last use, revoked."""
    tokens = _with_tokens(data_dir, database_url, lambda repository: repository.list())
    table = Table("name", "role", "created", "expires", "last used", "revoked")
    for t in tokens:
        table.add_row(
            t.name,
            t.role.label,
            f"{t.created_at:%Y-%m-%d %H:%M}",
            f"{t.expires_at:%Y-%m-%d %H:%M}" if t.expires_at else "never",
            f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "-",
            f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "-",
        )
    out.print(table)


@token_app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="The token's name.")],
    data_dir: DataDirOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Revoke a token: servers refuse it within seconds."""
    actor = f"cli:{os.environ.get('USER') or os.getuid()}"
    _with_tokens(data_dir, database_url, lambda tokens: tokens.revoke(name, actor))
    print_status(f"token {name} revoked")


def login(
    token: Annotated[str, typer.Argument(help="An API token (from `hodei token create`).")],
    server: Annotated[
        str, typer.Option("--server", envvar="HODEI_SERVER", help="The server's gRPC address.")
    ] = "localhost:50051",
) -> None:
    """Check a token against the server and keep it for the CLI (in ~/.config/hodei/token)."""
    import grpc

    from hodei.client import HodeiClient
    from hodei.tls import ClientTls
    from hodei.v1 import jobs_pb2

    async def check() -> None:
        async with HodeiClient(server, token=token, tls=ClientTls.from_env()) as client:
            await client.list(jobs_pb2.ListJobsRequest(page_size=1))

    try:
        asyncio.run(check())
    except grpc.aio.AioRpcError as error:
        print_error(f"the server refused the token: {error.details() or error.code().name}")
        raise typer.Exit(1) from None
    path = token_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file that was there already keeps its mode otherwise
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    print_status(f"logged in to {server}; the token is kept in {path}")


def logout() -> None:
    """Forget the token ``hodei login`` kept."""
    token_file().unlink(missing_ok=True)
    print_status("logged out")
