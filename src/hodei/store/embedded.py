"""A private PostgreSQL cluster that hodei runs itself.

`hodei up` uses it when no ``HODEI_DATABASE_URL`` is configured, and the integration tests use it
to get a real PostgreSQL. The cluster lives in ``<data_dir>/postgres``, listens only on 127.0.0.1
and on a Unix socket inside the cluster directory, and requires a password (SCRAM) that is
generated once and kept in ``<data_dir>/postgres.password`` (mode 0600).

PostgreSQL refuses to run as root, so when hodei runs as root the server programs run as the
``postgres`` system user (or ``nobody``) while the password file stays readable only by root.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import math
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import psutil
import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from hodei.domain.errors import HodeiError

SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
CLUSTER_DIR_NAME = "postgres"
PASSWORD_FILE_NAME = "postgres.password"
STATE_FILE_NAME = "postgres.json"
LOG_FILE_NAME = "postgres.log"
SETTINGS_FILE_NAME = "hodei.conf"
LISTEN_ADDRESS = "127.0.0.1"

_SYSTEM_BIN_ROOT = Path("/usr/lib/postgresql")
_SERVER_USER_CANDIDATES = ("postgres", "nobody")
_POSTMASTER_NAMES = frozenset({"postgres", "postmaster"})
# sun_path holds 104 bytes on macOS (108 on Linux); the socket file name adds 15 more.
_MAX_SOCKET_DIR_LENGTH = 104 - len("/.s.PGSQL.65535") - 1
_LOG_TAIL_LINES = 30
_POLL_INTERVAL = 0.05
_INITDB_TIMEOUT = 120.0
_KILL_TIMEOUT = 10.0


class EmbeddedPostgresError(HodeiError):
    """The embedded PostgreSQL cluster could not be found, created, started or stopped."""


@dataclass(frozen=True)
class _ServerUser:
    """The system account the server programs run as when hodei runs as root."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


@dataclass(frozen=True)
class _CommandResult:
    returncode: int
    stderr: str


def find_postgres_bin_dir(bin_dir: Path | None = None) -> Path | None:
    """Find a directory holding the PostgreSQL server programs (initdb, pg_ctl, postgres).

    Looks, in order, at the ``postgres`` found on PATH (following its symlink, so
    ``/usr/local/bin/postgres`` gives ``/usr/lib/postgresql/15/bin``), the newest
    ``/usr/lib/postgresql/*/bin``, and the binaries bundled with the ``pgserver`` wheel.

    Args:
        bin_dir: An explicit directory to use instead of searching.

    Returns:
        The directory, or None when none holds all three programs (for an explicit
        ``bin_dir``: when it does not hold them).
    """
    candidates = [bin_dir] if bin_dir is not None else _candidate_bin_dirs()
    for candidate in candidates:
        if _has_server_binaries(candidate):
            return candidate.resolve()
    return None


def _candidate_bin_dirs() -> Iterator[Path]:
    on_path = shutil.which("postgres")
    if on_path is not None:
        yield Path(on_path).resolve().parent
    yield from sorted(_SYSTEM_BIN_ROOT.glob("*/bin"), key=_version_key, reverse=True)
    bundled = _pgserver_bin_dir()
    if bundled is not None:
        yield bundled


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in bin_dir.parent.name.split(".") if part.isdigit())


def _pgserver_bin_dir() -> Path | None:
    # find_spec locates the package without importing it: only its bundled files are used.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _has_server_binaries(bin_dir: Path) -> bool:
    return all(
        (bin_dir / name).is_file() and os.access(bin_dir / name, os.X_OK)
        for name in SERVER_BINARIES
    )


class EmbeddedPostgres:
    """A PostgreSQL cluster in a directory of its own, started and stopped by hodei.

    The first `start` creates the cluster; later starts reuse its data and its port. A server
    left running by an earlier process for the same directory is adopted, and `stop` stops it.

    Example:
        pg = EmbeddedPostgres(Path("/var/lib/hodei"))
        url = await pg.start()
        ...
        await pg.stop()
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        bin_dir: Path | None = None,
        port: int | None = None,
        database: str = "hodei",
        user: str = "hodei",
        fsync: bool = True,
        start_timeout: timedelta = timedelta(seconds=30),
        stop_timeout: timedelta = timedelta(seconds=10),
    ) -> None:
        """Describe a cluster; nothing touches the disk until `start`.

        Args:
            data_dir: Directory holding the cluster, its password, state and log files.
            bin_dir: Directory with initdb, pg_ctl and postgres; searched for when None.
            port: TCP port on 127.0.0.1; when None a free port is picked once and remembered.
            database: Database created on first start, and the one `url` points at.
            user: Name of the cluster's superuser.
            fsync: False trades crash safety for speed (tests only): skips syncing at initdb
                and turns off fsync, synchronous_commit and full_page_writes.
            start_timeout: How long to wait for the server to accept connections.
            stop_timeout: How long a fast shutdown may take before the server is killed.
        """
        self._data_dir = data_dir.expanduser().resolve()
        self._requested_bin_dir = bin_dir
        self._requested_port = port
        self._database = database
        self._user = user
        self._fsync = fsync
        self._start_timeout = start_timeout.total_seconds()
        self._stop_timeout = stop_timeout.total_seconds()
        self._bin_dir: Path | None = None
        self._password: str | None = None
        self._port: int | None = None
        self._pid: int | None = None

    @property
    def data_dir(self) -> Path:
        """The directory holding the cluster and its files."""
        return self._data_dir

    @property
    def cluster_dir(self) -> Path:
        """The PostgreSQL data directory (``PGDATA``)."""
        return self._data_dir / CLUSTER_DIR_NAME

    @property
    def log_file(self) -> Path:
        """The server's log file."""
        return self._data_dir / LOG_FILE_NAME

    @property
    def port(self) -> int | None:
        """The TCP port of the running server, or None when not started."""
        return self._port

    @property
    def pid(self) -> int | None:
        """The postmaster's process id, or None when not started."""
        return self._pid

    @property
    def url(self) -> str:
        """Connection URL of the application database."""
        return self.url_for(self._database)

    def url_for(self, database: str) -> str:
        """Connection URL of another database in this cluster.

        Args:
            database: The database name.

        Returns:
            A ``postgresql://`` URL with the superuser's credentials.

        Raises:
            EmbeddedPostgresError: The cluster has not been started.
        """
        if self._port is None or self._password is None:
            raise EmbeddedPostgresError("the embedded PostgreSQL has not been started")
        credentials = f"{quote(self._user, safe='')}:{quote(self._password, safe='')}"
        address = f"{LISTEN_ADDRESS}:{self._port}"
        return f"postgresql://{credentials}@{address}/{quote(database, safe='')}"

    def stored_url(self) -> str | None:
        """The URL a started cluster would have, read from its files; None before the first start.

        Nothing is started: this is what ``hodei db url`` prints.
        """
        port = _read_saved_port(self._data_dir / STATE_FILE_NAME)
        password_file = self._data_dir / PASSWORD_FILE_NAME
        if port is None or not password_file.exists():
            return None
        self._port, self._password = port, _load_password(password_file, create=False)
        return self.url

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> str:
        """Create the cluster if needed, start (or adopt) its server and wait until it answers.

        Returns:
            The connection URL of the application database.

        Raises:
            EmbeddedPostgresError: No PostgreSQL programs were found, a directory is not
                reachable by the server user, initdb failed or the server did not start.
        """
        if self._port is not None:
            return self.url
        bin_dir = self._resolve_bin_dir()
        server_user = _server_user()
        self._prepare_data_dir(server_user)
        if server_user is not None:
            _check_reachable(bin_dir, server_user, "PostgreSQL programs", _BIN_DIR_HINT)
        initialised = (self.cluster_dir / "PG_VERSION").is_file()
        self._password = _load_password(self._data_dir / PASSWORD_FILE_NAME, create=not initialised)
        if not initialised:
            await self._initdb(bin_dir, self._password, server_user)
        elif server_user is not None:
            _chown_tree(self.cluster_dir, server_user)

        pid = _running_postmaster_pid(self.cluster_dir)
        if pid is not None:
            await self._adopt(pid)
        else:
            _remove_stale_pid_file(self.cluster_dir)
            await self._start_postmaster(bin_dir, server_user)
        await self._ensure_database()
        return self.url

    async def stop(self) -> None:
        """Stop the server with a fast shutdown, killing it if that takes too long.

        Does nothing when no server runs for this cluster.

        Raises:
            EmbeddedPostgresError: The server could not be stopped.
        """
        self._port = None
        self._pid = None
        pid = _running_postmaster_pid(self.cluster_dir)
        if pid is None:
            return
        bin_dir = self._bin_dir or find_postgres_bin_dir(self._requested_bin_dir)
        if bin_dir is not None and await self._fast_shutdown(bin_dir, pid):
            return
        _kill_postmaster(pid)
        try:
            async with asyncio.timeout(_KILL_TIMEOUT):
                await _wait_for_exit(pid)
        except TimeoutError as exc:
            raise EmbeddedPostgresError(f"the PostgreSQL server (pid {pid}) did not exit") from exc

    async def create_database(self, name: str, template: str | None = None) -> None:
        """Create a database, optionally as a copy of a template database.

        Args:
            name: The new database's name.
            template: Database to copy; it must have no open connections.
        """
        query = sql.SQL("create database {}").format(sql.Identifier(name))
        if template is not None:
            query = sql.SQL("{} template {}").format(query, sql.Identifier(template))
        async with await self._connect_maintenance() as conn:
            await conn.execute(query)

    async def drop_database(self, name: str) -> None:
        """Drop a database if it exists, closing its open connections.

        Args:
            name: The database's name.
        """
        query = sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        async with await self._connect_maintenance() as conn:
            await conn.execute(query)

    async def _fast_shutdown(self, bin_dir: Path, pid: int) -> bool:
        argv = [
            str(bin_dir / "pg_ctl"),
            "stop",
            *("-D", str(self.cluster_dir), "-m", "fast", "-w", "-s"),
            *("-t", str(max(1, math.ceil(self._stop_timeout)))),
        ]
        try:
            async with asyncio.timeout(self._stop_timeout + _KILL_TIMEOUT):
                result = await _run(argv, cwd=self._data_dir, server_user=_server_user())
                if result.returncode != 0:
                    return False
                await _wait_for_exit(pid)
        except TimeoutError:
            return False
        return True

    def _resolve_bin_dir(self) -> Path:
        bin_dir = find_postgres_bin_dir(self._requested_bin_dir)
        if bin_dir is None:
            if self._requested_bin_dir is not None:
                raise EmbeddedPostgresError(
                    f"{self._requested_bin_dir} does not hold the PostgreSQL server programs "
                    f"({', '.join(SERVER_BINARIES)})"
                )
            raise EmbeddedPostgresError(
                "no PostgreSQL server programs (initdb, pg_ctl, postgres) were found on PATH, "
                f"in {_SYSTEM_BIN_ROOT}/*/bin or in the pgserver package: install PostgreSQL "
                "(e.g. apt-get install postgresql) or `pip install pgserver`, or set "
                "HODEI_DATABASE_URL to use an existing server"
            )
        self._bin_dir = bin_dir
        return bin_dir

    def _prepare_data_dir(self, server_user: _ServerUser | None) -> None:
        missing = [d for d in (self._data_dir, *self._data_dir.parents) if not d.exists()]
        for directory in reversed(missing):
            directory.mkdir()
            if server_user is not None:
                # Created by us, so it may be opened up for the server user despite root's umask.
                directory.chmod(0o755)
        if server_user is not None:
            _check_reachable(self._data_dir, server_user, "PostgreSQL cluster", _DATA_DIR_HINT)

    async def _initdb(self, bin_dir: Path, password: str, server_user: _ServerUser | None) -> None:
        # initdb into a staging directory so that an interrupted run never leaves a half-made
        # cluster where the next start would take it for a real one.
        staging = self._data_dir / f"{CLUSTER_DIR_NAME}.initdb"
        password_file = self._data_dir / f"{CLUSTER_DIR_NAME}.initdb-password"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        _write_private_file(password_file, password + "\n", server_user)
        if server_user is not None:
            os.chown(staging, server_user.uid, server_user.gid)
        argv = [
            str(bin_dir / "initdb"),
            *("-D", str(staging), "-U", self._user, "--pwfile", str(password_file)),
            "--auth-local=scram-sha-256",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
        ]
        if not self._fsync:
            argv.append("--no-sync")
        try:
            async with _time_limit(_INITDB_TIMEOUT, "initdb"):
                result = await _run(argv, cwd=self._data_dir, server_user=server_user)
        finally:
            password_file.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise EmbeddedPostgresError(
                f"initdb failed (exit code {result.returncode}):\n{result.stderr.strip()}"
            )
        _append_settings_include(staging / "postgresql.conf")
        staging.rename(self.cluster_dir)

    async def _start_postmaster(self, bin_dir: Path, server_user: _ServerUser | None) -> None:
        port = self._choose_port()
        self._write_settings(port, server_user)
        _prepare_log_file(self.log_file, server_user)
        # start_new_session keeps a Ctrl-C in the terminal away from pg_ctl, and pg_ctl puts
        # the postmaster in a session of its own as well.
        argv = [
            str(bin_dir / "pg_ctl"),
            "start",
            *("-D", str(self.cluster_dir), "-l", str(self.log_file), "-w", "-s"),
            *("-t", str(max(1, math.ceil(self._start_timeout)))),
        ]
        async with _time_limit(self._start_timeout + _KILL_TIMEOUT, "pg_ctl start"):
            result = await _run(argv, cwd=self._data_dir, server_user=server_user)
        self._port = port
        self._pid = _read_postmaster_pid(self.cluster_dir)
        try:
            if result.returncode != 0 or self._pid is None:
                raise EmbeddedPostgresError(
                    f"PostgreSQL did not start (pg_ctl exit code {result.returncode}): "
                    f"{result.stderr.strip()}\n{_log_tail(self.log_file)}"
                )
            await self._wait_until_accepting(self._pid)
        except BaseException:
            # Report why the start failed, not a failure to clean up after it.
            with contextlib.suppress(EmbeddedPostgresError):
                await self.stop()
            raise

    async def _adopt(self, pid: int) -> None:
        port = _read_postmaster_port(self.cluster_dir)
        if port is None:
            raise EmbeddedPostgresError(
                f"a PostgreSQL server (pid {pid}) runs for {self.cluster_dir} but its "
                "postmaster.pid names no port"
            )
        self._port = port
        self._pid = pid
        try:
            await self._wait_until_accepting(pid)
        except BaseException:
            self._port = None
            self._pid = None
            raise
        if self._requested_port is None:
            _write_state(self._data_dir / STATE_FILE_NAME, port)

    def _choose_port(self) -> int:
        if self._requested_port is not None:
            return self._requested_port
        state_file = self._data_dir / STATE_FILE_NAME
        saved = _read_saved_port(state_file)
        if saved is not None and _port_is_free(saved):
            return saved
        port = _pick_free_port()
        _write_state(state_file, port)
        return port

    def _write_settings(self, port: int, server_user: _ServerUser | None) -> None:
        socket_dir = str(self.cluster_dir)
        if len(socket_dir.encode()) > _MAX_SOCKET_DIR_LENGTH:
            socket_dir = ""  # Too long for a socket address: listen on TCP only.
        settings: dict[str, str | int] = {
            "listen_addresses": LISTEN_ADDRESS,
            "port": port,
            "unix_socket_directories": socket_dir,
            "max_connections": 200,
            "shared_buffers": "128MB",
        }
        if not self._fsync:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        lines = ["# Written by hodei at every start of the embedded PostgreSQL."]
        lines += [f"{name} = {_conf_value(value)}" for name, value in settings.items()]
        path = self.cluster_dir / SETTINGS_FILE_NAME
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        if server_user is not None:
            os.chown(path, server_user.uid, server_user.gid)

    async def _wait_until_accepting(self, pid: int) -> None:
        """Wait until the postmaster reports "ready", then check that our credentials work."""
        try:
            async with asyncio.timeout(self._start_timeout):
                await _wait_for_ready_status(self.cluster_dir, pid)
        except TimeoutError as exc:
            raise EmbeddedPostgresError(
                f"PostgreSQL (pid {pid}) did not become ready within {self._start_timeout:g} s\n"
                f"{_log_tail(self.log_file)}"
            ) from exc
        try:
            async with await self._connect_maintenance(connect_timeout=10) as conn:
                await conn.execute("select 1")
        except psycopg.OperationalError as exc:
            raise EmbeddedPostgresError(
                f"could not connect to PostgreSQL on port {self._port} as {self._user!r} with the "
                f"password in {self._data_dir / PASSWORD_FILE_NAME}: {exc}\n"
                f"{_log_tail(self.log_file)}"
            ) from exc

    async def _ensure_database(self) -> None:
        async with await self._connect_maintenance() as conn:
            cursor = await conn.execute(
                "select 1 from pg_database where datname = %s", (self._database,)
            )
            if await cursor.fetchone() is not None:
                return
            # Another process may create it at the same moment.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                await conn.execute(
                    sql.SQL("create database {}").format(sql.Identifier(self._database))
                )

    async def _connect_maintenance(
        self, connect_timeout: int | None = None
    ) -> psycopg.AsyncConnection[TupleRow]:
        return await psycopg.AsyncConnection.connect(
            self.url_for("postgres"), autocommit=True, connect_timeout=connect_timeout
        )


_DATA_DIR_HINT = (
    "choose a data directory that it can reach, e.g. HODEI_DATA_DIR=/var/lib/hodei, or set "
    "HODEI_DATABASE_URL to use an existing server"
)
_BIN_DIR_HINT = (
    "install PostgreSQL system-wide (e.g. apt-get install postgresql) or set "
    "HODEI_DATABASE_URL to use an existing server"
)


def _server_user() -> _ServerUser | None:
    if os.geteuid() != 0:
        return None
    for name in _SERVER_USER_CANDIDATES:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        groups = tuple(os.getgrouplist(name, entry.pw_gid))
        return _ServerUser(name=name, uid=entry.pw_uid, gid=entry.pw_gid, groups=groups)
    raise EmbeddedPostgresError(
        "PostgreSQL refuses to run as root and there is neither a 'postgres' nor a 'nobody' "
        "user to run it as: create a 'postgres' user, run hodei as another user, or set "
        "HODEI_DATABASE_URL to use an existing server"
    )


def _check_reachable(path: Path, user: _ServerUser, what: str, hint: str) -> None:
    """Raise unless ``user`` may traverse ``path`` and every directory above it."""
    for directory in (path, *path.parents):
        status = directory.stat()
        if status.st_uid == user.uid:
            needed = stat.S_IXUSR
        elif status.st_gid in user.groups:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if not status.st_mode & needed:
            raise EmbeddedPostgresError(
                f"running as root, PostgreSQL runs as the '{user.name}' user, which cannot "
                f"enter {directory} (mode {stat.filemode(status.st_mode)}) on the way to the "
                f"{what} in {path}; {hint}"
            )


def _chown_tree(root: Path, user: _ServerUser) -> None:
    if root.stat().st_uid == user.uid:
        return
    os.chown(root, user.uid, user.gid)
    for parent, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            os.chown(os.path.join(parent, name), user.uid, user.gid, follow_symlinks=False)


def _write_private_file(path: Path, content: str, owner: _ServerUser | None = None) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(content)
    if owner is not None:
        os.chown(path, owner.uid, owner.gid)


def _load_password(path: Path, *, create: bool) -> str:
    if path.is_file():
        password = path.read_text(encoding="utf-8").strip()
        if password:
            return password
    if not create:
        raise EmbeddedPostgresError(
            f"the PostgreSQL cluster exists but its password file {path} is missing or empty; "
            "restore it, or remove the cluster directory to create a new (empty) cluster"
        )
    password = secrets.token_urlsafe(24)
    _write_private_file(path, password + "\n")
    return password


def _append_settings_include(postgresql_conf: Path) -> None:
    with postgresql_conf.open("a", encoding="utf-8") as conf:
        conf.write(f"\n# Managed by hodei.\ninclude_if_exists = '{SETTINGS_FILE_NAME}'\n")


def _conf_value(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def _prepare_log_file(path: Path, server_user: _ServerUser | None) -> None:
    # pg_ctl opens the log as the server user, so root hands the file over beforehand.
    if not path.exists():
        _write_private_file(path, "")
    if server_user is not None:
        os.chown(path, server_user.uid, server_user.gid)


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return f"(no server log at {path})"
    if not lines:
        return f"(the server log {path} is empty)"
    tail = "\n".join(lines[-_LOG_TAIL_LINES:])
    return f"last lines of {path}:\n{tail}"


def _read_saved_port(state_file: Path) -> int | None:
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    port = state.get("port") if isinstance(state, dict) else None
    return port if isinstance(port, int) else None


def _write_state(state_file: Path, port: int) -> None:
    temporary = state_file.with_suffix(".tmp")
    temporary.write_text(json.dumps({"port": port}) + "\n", encoding="utf-8")
    temporary.replace(state_file)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Same option as the postmaster, so ports in TIME_WAIT from our last run count as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LISTEN_ADDRESS, port))
        except OSError:
            return False
    return True


def _pick_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LISTEN_ADDRESS, 0))
        port: int = probe.getsockname()[1]
    return port


def _postmaster_pid_lines(cluster_dir: Path) -> list[str]:
    try:
        return (cluster_dir / "postmaster.pid").read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        return []


def _read_postmaster_pid(cluster_dir: Path) -> int | None:
    lines = _postmaster_pid_lines(cluster_dir)
    return int(lines[0]) if lines and lines[0].strip().isdigit() else None


def _read_postmaster_port(cluster_dir: Path) -> int | None:
    lines = _postmaster_pid_lines(cluster_dir)
    return int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None


def _running_postmaster_pid(cluster_dir: Path) -> int | None:
    """The live postmaster of this cluster named by postmaster.pid, if there is one."""
    pid = _read_postmaster_pid(cluster_dir)
    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        is_ours = process.name() in _POSTMASTER_NAMES and _runs_in(process, cluster_dir, True)
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        return pid
    return pid if is_ours else None


def _remove_stale_pid_file(cluster_dir: Path) -> None:
    """Remove a postmaster.pid that PostgreSQL would wrongly take for a running server.

    A PID that no longer exists is left alone: PostgreSQL cleans that up itself, after checking
    that no orphaned server process still uses the cluster's shared memory. It would refuse to
    start, though, when the PID now belongs to another program or to a zombie (an init that
    does not reap leaves the killed postmaster as one), so such a file, and the socket lock
    files naming the same PID, are removed here once no server process of this cluster is left.
    """
    pid = _read_postmaster_pid(cluster_dir)
    if pid is None or not psutil.pid_exists(pid):
        return
    leftovers = _server_processes_in(cluster_dir)
    if leftovers:
        raise EmbeddedPostgresError(
            f"the PostgreSQL server of {cluster_dir} is gone but its processes "
            f"{', '.join(map(str, leftovers))} still run; stop them before starting it again"
        )
    for socket_file in cluster_dir.glob(".s.PGSQL.*"):
        socket_file.unlink(missing_ok=True)
    (cluster_dir / "postmaster.pid").unlink(missing_ok=True)


def _server_processes_in(cluster_dir: Path) -> list[int]:
    pids = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if (
                process.name() in _POSTMASTER_NAMES
                and process.status() != psutil.STATUS_ZOMBIE
                and _runs_in(process, cluster_dir, False)
            ):
                pids.append(process.pid)
    return pids


def _runs_in(process: psutil.Process, cluster_dir: Path, if_unknown: bool) -> bool:
    """Whether ``process`` works in ``cluster_dir`` (server processes chdir there)."""
    try:
        return Path(process.cwd()) == cluster_dir.resolve()
    except psutil.AccessDenied:
        return if_unknown


def _read_postmaster_status(cluster_dir: Path) -> str | None:
    lines = _postmaster_pid_lines(cluster_dir)
    return lines[7].strip() if len(lines) > 7 else None


async def _wait_for_ready_status(cluster_dir: Path, pid: int) -> None:
    # The postmaster writes "ready" into postmaster.pid once it accepts connections; this needs
    # no credentials, so a wrong password is reported at once instead of after the timeout.
    while _read_postmaster_status(cluster_dir) != "ready":
        if not _pid_alive(pid):
            raise EmbeddedPostgresError(
                f"the PostgreSQL server (pid {pid}) for {cluster_dir} exited while starting"
            )
        await asyncio.sleep(_POLL_INTERVAL)


def _pid_alive(pid: int) -> bool:
    # Not os.kill(pid, 0): the postmaster is no child of ours, so an init that does not reap
    # would leave it a zombie that still "exists".
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def _wait_for_exit(pid: int) -> None:
    # The postmaster is not our child, so nothing signals its exit: poll.
    while _pid_alive(pid):  # noqa: ASYNC110
        await asyncio.sleep(_POLL_INTERVAL)


def _kill_postmaster(pid: int) -> None:
    try:
        # The postmaster leads its own process group (pg_ctl starts it in a new session), so
        # the group holds exactly the server's processes.
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise EmbeddedPostgresError(
            f"the PostgreSQL server (pid {pid}) did not stop and may not be killed: {exc}"
        ) from exc


@contextlib.asynccontextmanager
async def _time_limit(seconds: float, what: str) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as exc:
        raise EmbeddedPostgresError(f"{what} did not finish within {seconds:g} s") from exc


async def _run(
    argv: Sequence[str], *, cwd: Path, server_user: _ServerUser | None
) -> _CommandResult:
    """Run a PostgreSQL program, as the server user when running as root.

    When cancelled (e.g. by a time limit) the program is killed.
    """
    environment = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=environment,
        start_new_session=True,
        user=server_user.uid if server_user else None,
        group=server_user.gid if server_user else None,
        extra_groups=server_user.groups if server_user else None,
    )
    try:
        _, stderr = await process.communicate()
        returncode = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return _CommandResult(returncode=returncode, stderr=stderr.decode(errors="replace"))
