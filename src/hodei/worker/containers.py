"""The ``docker`` runtime: each attempt in a container of its own, through the Docker Engine API.

The container is created from the job's image (pulled first when the engine lacks it), attached
to before it starts so that no output is missed, started, and read until its streams close. Its
stdout and stderr go through the same line pipeline as a process's. A timeout or a cancel stops
it (SIGTERM, the grace period, SIGKILL); afterwards it is removed unless the provider keeps them.

Every container carries labels naming its job, attempt and worker, and the worker's host, pid and
start time: a worker that starts removes the containers of dead workers on its host, so nothing a
crashed worker started keeps running or lingers.

The Docker SDK blocks, so its calls run in a thread pool of this runtime; each attached stream is
read by a thread of its own that hands output to the event loop through a bounded queue (a slow
pipeline slows the reader, the engine buffers, nothing is dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import math
import os
import shlex
import signal
import socket
import tarfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import docker.utils
import psutil
from docker.types import LogConfig
from docker.utils.socket import STDERR, STDOUT, frames_iter

from hodei.domain.jobs import CommandType, normalize_arch
from hodei.domain.logs import LogStream
from hodei.domain.providers import DOCKER_NETWORKS
from hodei.domain.states import JobState
from hodei.worker.capture import LineSink, pump_chunks
from hodei.worker.runtime import (
    Execution,
    ExecutionResult,
    ImagePull,
    JobLaunch,
    LaunchCancelledError,
    LaunchError,
    RuntimeUnavailableError,
    signal_group,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

LABEL_JOB = "hodei.job.id"
LABEL_ATTEMPT = "hodei.job.attempt"
LABEL_WORKER = "hodei.worker.id"
LABEL_HOST = "hodei.worker.host"
LABEL_PID = "hodei.worker.pid"
LABEL_STARTED = "hodei.worker.started"
LABEL_BOOT = "hodei.worker.boot"
LABEL_PID_NAMESPACE = "hodei.worker.pidns"


DEFAULT_IMAGE = "alpine:latest"
# Scripts longer than this go into the container as a file rather than on the command line
# (the kernel refuses a single argument over 128 KiB).
_INLINE_SCRIPT_BYTES = 64 * 1024
_SCRIPT_DIR = "/hodei"
_QUEUE_CHUNKS = 64
_OLDEST_API = "1.24"
_DEFAULT_SOCKET = "unix:///var/run/docker.sock"
_DOCKER_PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}


@dataclass(frozen=True)
class DockerSettings:
    """How a worker's containers are made (from its provider's settings)."""

    default_image: str = DEFAULT_IMAGE  # for jobs that name no image
    network: str = "none"
    keep_containers: bool = False
    docker_host: str = ""  # empty: DOCKER_HOST, or the engine's default socket

    def __post_init__(self) -> None:
        if self.network not in DOCKER_NETWORKS:
            raise ValueError(
                f"network must be one of {', '.join(DOCKER_NETWORKS)}, got {self.network!r}"
            )


class _PullError(Exception):
    """The engine said a pull failed."""


class EngineUnavailableError(RuntimeUnavailableError):
    """The Docker engine does not answer."""


def connect(docker_host: str = "", timeout: int = 60) -> docker.APIClient:
    """A client of the engine at ``docker_host`` (or DOCKER_HOST); checks that it answers.

    Raises:
        EngineUnavailableError: nothing answers there.
    """
    kwargs: dict[str, Any] = dict(docker.utils.kwargs_from_env())
    if docker_host:
        kwargs["base_url"] = docker_host
    where = kwargs.get("base_url") or "the default Docker socket"
    _check_unix_socket(str(kwargs.get("base_url") or _DEFAULT_SOCKET), where, timeout)
    # Ask the engine its API version with a client of the oldest one (a client made with
    # version="auto" leaks its socket when nothing answers), then talk in that version.
    probe = docker.APIClient(version=_OLDEST_API, timeout=timeout, **kwargs)
    try:
        version = str(probe.version(api_version=False)["ApiVersion"])
    except (docker.errors.DockerException, OSError, KeyError) as exc:
        message = f"the Docker engine at {where} does not answer: {exc}"
        raise EngineUnavailableError(message) from exc
    finally:
        probe.close()
    return docker.APIClient(version=version, timeout=timeout, max_pool_size=64, **kwargs)


def _check_unix_socket(url: str, where: str, timeout: float) -> None:
    """Fail fast, and without the SDK's leaked socket, when a unix socket takes no connection."""
    if not url.startswith(("unix://", "http+unix://")):
        return
    path = url.split("://", 1)[1]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        try:
            probe.connect(path)
        except OSError as exc:
            message = f"the Docker engine at {where} does not answer: {exc.strerror or exc}"
            raise EngineUnavailableError(message) from None


def engine_answers(docker_host: str = "", timeout: int = 3) -> bool:
    """Whether a Docker engine answers at ``docker_host`` (or DOCKER_HOST)."""
    try:
        connect(docker_host, timeout).close()
    except EngineUnavailableError:
        return False
    return True


def _engine_lost(exc: OSError) -> EngineUnavailableError:
    return EngineUnavailableError(f"the Docker engine stopped answering: {_explain(exc)}")


def _explain(exc: BaseException) -> str:
    if isinstance(exc, docker.errors.APIError):
        return str(exc.explanation or exc)
    return str(exc) or type(exc).__name__


@dataclass(frozen=True)
class _Owner:
    """Who owns a container: a worker process, recognisable even after its pid is reused."""

    worker_id: str
    host: str
    pid: int
    started: float
    boot: str  # the kernel's boot id: a container of an earlier boot has a dead owner
    pid_namespace: str  # pids only mean something within one pid namespace

    @classmethod
    def this_process(cls, worker_id: str) -> _Owner:
        return cls(
            worker_id,
            socket.gethostname(),
            os.getpid(),
            psutil.Process().create_time(),
            _boot_id(),
            _pid_namespace(),
        )

    def labels(self) -> dict[str, str]:
        return {
            LABEL_WORKER: self.worker_id,
            LABEL_HOST: self.host,
            LABEL_PID: str(self.pid),
            LABEL_STARTED: f"{self.started:.3f}",
            LABEL_BOOT: self.boot,
            LABEL_PID_NAMESPACE: self.pid_namespace,
        }


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def _owner_alive(labels: dict[str, str]) -> bool:
    """Whether the worker process named by a container's labels still runs (on this host).
    A worker of an earlier boot is gone; one in another pid namespace cannot be told apart from
    a live one, so it counts as alive."""
    boot = labels.get(LABEL_BOOT, "")
    if boot and _boot_id() and boot != _boot_id():
        return False
    pid_namespace = labels.get(LABEL_PID_NAMESPACE, "")
    if pid_namespace and pid_namespace != _pid_namespace():
        return True
    try:
        pid, started = int(labels[LABEL_PID]), float(labels[LABEL_STARTED])
        return abs(psutil.Process(pid).create_time() - started) < 1.0
    except (KeyError, ValueError, psutil.Error):
        return False


def remove_orphans(api: docker.APIClient, *, worker_id: str = "", keep: bool = False) -> int:
    """Remove the containers of workers on this host that are gone (or all of ``worker_id``'s);
    with ``keep`` (the provider keeps containers) only stop the ones still running.

    Blocking. Returns how many were removed or stopped.
    """
    host = socket.gethostname()
    wanted = f"{LABEL_WORKER}={worker_id}" if worker_id else LABEL_WORKER
    done = 0
    for container in api.containers(all=True, filters={"label": [wanted]}):
        labels = container.get("Labels") or {}
        if not worker_id and (labels.get(LABEL_HOST) != host or _owner_alive(labels)):
            continue
        if keep and container.get("State") != "running":
            continue
        with contextlib.suppress(docker.errors.NotFound):
            try:
                if keep:
                    api.kill(container["Id"])
                else:
                    api.remove_container(container["Id"], force=True)
            except docker.errors.APIError as exc:
                log.warning("could not remove container %s: %s", container["Id"][:12], exc)
                continue
            done += 1
            log.info(
                "%s container %s of job %s left by worker %s",
                "stopped" if keep else "removed",
                container["Id"][:12],
                labels.get(LABEL_JOB, "?"),
                labels.get(LABEL_WORKER, "?"),
            )
    return done


def container_command(launch: JobLaunch) -> tuple[list[str] | None, dict[str, str]]:
    """The container's command for the job, and the files to put in it before it starts."""
    script = launch.script
    inline = len(script.encode()) <= _INLINE_SCRIPT_BYTES
    match launch.command_type:
        case CommandType.SHELL:
            if inline:
                return ["sh", "-c", script], {}
            return ["sh", f"{_SCRIPT_DIR}/job.sh"], {"job.sh": script}
        case CommandType.PYTHON:
            if inline:
                return ["python3", "-u", "-c", script], {}
            return ["python3", "-u", f"{_SCRIPT_DIR}/main.py"], {"main.py": script}
        case CommandType.NODE:
            if inline:
                return ["node", "-e", script], {}
            return ["node", f"{_SCRIPT_DIR}/main.js"], {"main.js": script}
        case CommandType.DOCKER_EXEC:
            try:
                argv = shlex.split(script)
            except ValueError as exc:
                raise LaunchError(f"the command cannot be split into arguments: {exc}") from None
            return (argv or None), {}


def _script_archive(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo(_SCRIPT_DIR.lstrip("/"))
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{_SCRIPT_DIR.lstrip('/')}/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def docker_platform(arch: str) -> str | None:
    """``x86_64`` → ``linux/amd64``; None when the job names no architecture."""
    if not arch:
        return None
    normal = normalize_arch(arch) or arch
    return _DOCKER_PLATFORMS.get(normal, f"linux/{normal}")


class DockerRuntime:
    """Runs each attempt in a container of its own; one per worker."""

    name = "docker"

    def __init__(self, settings: DockerSettings) -> None:
        self.settings = settings
        self._executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="hodei-docker")
        self._api: docker.APIClient | None = None
        self._owner: _Owner | None = None
        self._pulls: dict[str, asyncio.Lock] = {}
        self._cleanups: set[asyncio.Task[None]] = set()
        self._closed = False

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking SDK call in this runtime's threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    @property
    def api(self) -> docker.APIClient:
        if self._api is None:
            raise LaunchError("the docker runtime was not prepared")
        return self._api

    async def prepare(self, worker_id: str) -> None:
        """Connect to the engine and remove what dead workers on this host left behind.

        Raises:
            EngineUnavailableError: the engine does not answer.
        """
        self._api = await self.call(connect, self.settings.docker_host)
        self._owner = _Owner.this_process(worker_id)
        removed = await self.call(remove_orphans, self._api, keep=self.settings.keep_containers)
        if removed:
            log.warning("cleared %d container(s) that dead workers left behind", removed)

    async def close(self) -> None:
        """Wait for pending removals, then let the engine connection go."""
        self._closed = True
        if self._cleanups:
            await asyncio.wait(self._cleanups, timeout=30)
        if self._api is not None:
            self._api.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def start(self, launch: JobLaunch, sink: LineSink) -> Execution:
        api, owner = self.api, self._owner
        assert owner is not None
        image = launch.image or self.settings.default_image
        command, files = container_command(launch)
        platform = docker_platform(launch.arch)
        host_config = api.create_host_config(
            network_mode=self.settings.network,
            init=True,  # signals reach the job; PID 1 would ignore SIGTERM
            # The output comes through the attached streams, masked by the worker. The engine
            # keeps its own (unmasked) copy only for containers that are kept, for `docker logs`.
            log_config=None if self.settings.keep_containers else LogConfig(type="none"),
            **_limits(launch),
        )
        config: dict[str, Any] = {
            "image": image,
            "command": command,
            # The job's command is what runs: an image's ENTRYPOINT would run it as arguments.
            # DOCKER_EXEC with no command runs the image as it is.
            "entrypoint": None if launch.command_type is CommandType.DOCKER_EXEC else [""],
            "environment": [f"{k}={v}" for k, v in _environment(launch).items()],
            "labels": owner.labels()
            | {LABEL_JOB: launch.job_id, LABEL_ATTEMPT: str(launch.attempt)},
            "host_config": host_config,
            "platform": platform,
            "use_config_proxy": False,
        }
        pulled: ImagePull | None = None
        try:
            try:
                created = await self.call(api.create_container, **config)
            except docker.errors.ImageNotFound:
                pulled = await self._pull(image, platform)
                created = await self.call(api.create_container, **config)
        except docker.errors.ImageNotFound as exc:
            raise LaunchError(f"image {image} is not available: {_explain(exc)}") from None
        except docker.errors.APIError as exc:
            raise LaunchError(f"the Docker engine refused the container: {_explain(exc)}") from None
        except OSError as exc:
            raise _engine_lost(exc) from None
        container_id: str = created["Id"]
        try:
            if files:
                await self.call(api.put_archive, container_id, "/", _script_archive(files))
            if launch.cancelled():
                raise LaunchCancelledError("cancelled before it started")
            streams = await _Attachment.open(self, container_id)
            try:
                await self.call(api.start, container_id)
                state = (await self.call(api.inspect_container, container_id))["State"]
            except BaseException:
                streams.abandon()
                raise
        except LaunchCancelledError:
            self._remove_later(container_id)
            raise
        except docker.errors.APIError as exc:
            self._remove_later(container_id)
            raise LaunchError(f"the container could not start: {_explain(exc)}") from None
        except OSError as exc:
            self._remove_later(container_id)
            raise _engine_lost(exc) from None
        pumps = [
            asyncio.create_task(pump_chunks(streams.chunks(stream), stream, sink))
            for stream in (LogStream.STDOUT, LogStream.STDERR)
        ]
        return ContainerExecution(
            runtime=self,
            container_id=container_id,
            pid=int(state.get("Pid") or 0),
            pumps=pumps,
            streams=streams,
            timeout_ms=launch.timeout_ms,
            stop_grace=launch.stop_grace,
            memory_mb=launch.memory_mb,
            image_pull=pulled,
        )

    async def _pull(self, image: str, platform: str | None) -> ImagePull:
        began = time.monotonic()
        lock = self._pulls.setdefault(image, asyncio.Lock())
        async with lock:  # two jobs needing the same image pull it once
            with contextlib.suppress(docker.errors.ImageNotFound):
                await self.call(self.api.inspect_image, image)
                return ImagePull(image, int((time.monotonic() - began) * 1000))
            repository, tag = docker.utils.parse_repository_tag(image)
            log.info("pulling image %s", image)
            try:
                await self.call(self._pull_blocking, repository, tag or "latest", platform)
            except (docker.errors.APIError, _PullError) as exc:
                raise LaunchError(f"image {image} could not be pulled: {_explain(exc)}") from None
            except OSError as exc:
                raise _engine_lost(exc) from None
            took = int((time.monotonic() - began) * 1000)
            log.info("pulled image %s in %d ms", image, took)
            return ImagePull(image, took)

    def _pull_blocking(self, repository: str, tag: str, platform: str | None) -> None:
        """Pull, reading the engine's progress: a failure can come as an error line of a
        successful answer (a registry that breaks after the manifest), not as an HTTP error."""
        for event in self.api.pull(
            repository, tag=tag, platform=platform, stream=True, decode=True
        ):
            if isinstance(event, dict) and event.get("error"):
                raise _PullError(str(event.get("error")))

    def _remove_later(self, container_id: str) -> None:
        if self.settings.keep_containers:
            return
        task = asyncio.create_task(self._remove(container_id))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def _remove(self, container_id: str) -> None:
        remove = functools.partial(self.api.remove_container, container_id, force=True)
        try:
            # After close() the runtime's threads are gone: one of the loop's does it.
            await (asyncio.to_thread(remove) if self._closed else self.call(remove))
        except docker.errors.NotFound:
            pass
        except (docker.errors.APIError, OSError) as exc:
            log.warning("could not remove container %s: %s", container_id[:12], _explain(exc))


def _limits(launch: JobLaunch) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    if launch.memory_mb > 0:
        limits["mem_limit"] = f"{launch.memory_mb}m"
        limits["memswap_limit"] = f"{launch.memory_mb}m"  # no swap: over the limit is an OOM
    if launch.cpu_cores > 0:
        limits["nano_cpus"] = int(launch.cpu_cores * 1e9)
    return limits


def _environment(launch: JobLaunch) -> dict[str, str]:
    return {
        "HODEI_JOB_ID": launch.job_id,
        "HODEI_JOB_ATTEMPT": str(launch.attempt),
        "PYTHONUNBUFFERED": "1",
    } | dict(launch.env)


class _Attachment:
    """A container's attached output, read by a thread into two bounded queues."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: Any) -> None:
        self._loop = loop
        self._sock = sock
        self._queues: dict[LogStream, asyncio.Queue[bytes | None]] = {
            LogStream.STDOUT: asyncio.Queue(_QUEUE_CHUNKS),
            LogStream.STDERR: asyncio.Queue(_QUEUE_CHUNKS),
        }
        self._abandoned = False
        self.error: BaseException | None = None

    @classmethod
    async def open(cls, runtime: DockerRuntime, container_id: str) -> _Attachment:
        """Attach (before the container starts, so that nothing is missed) and start reading."""
        sock = await runtime.call(
            runtime.api.attach_socket,
            container_id,
            params={"stdout": 1, "stderr": 1, "stream": 1},
        )
        attachment = cls(asyncio.get_running_loop(), sock)
        threading.Thread(
            target=attachment._read, name=f"hodei-attach-{container_id[:12]}", daemon=True
        ).start()
        return attachment

    def _put(self, stream: LogStream, item: bytes | None) -> bool:
        if self._abandoned:
            return False
        future = asyncio.run_coroutine_threadsafe(self._queues[stream].put(item), self._loop)
        try:
            future.result()
        except (RuntimeError, asyncio.CancelledError):
            return False  # the event loop is gone
        return True

    def _read(self) -> None:
        streams = {STDOUT: LogStream.STDOUT, STDERR: LogStream.STDERR}
        try:
            for number, data in frames_iter(self._sock, tty=False):  # type: ignore[no-untyped-call]
                stream = streams.get(number)
                if stream is not None and data and not self._put(stream, data):
                    return
        except Exception as exc:  # the engine went away mid-stream
            self.error = exc
        finally:
            self._close_socket()
            self._put(LogStream.STDOUT, None)
            self._put(LogStream.STDERR, None)

    def _close_socket(self) -> None:
        with contextlib.suppress(OSError):
            raw = getattr(self._sock, "_sock", None)  # a SocketIO over the real socket
            self._sock.close()
            if raw is not None:
                raw.close()

    def abandon(self) -> None:
        self._abandoned = True
        self._close_socket()
        for queue in self._queues.values():
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    async def chunks(self, stream: LogStream) -> AsyncIterator[bytes]:
        queue = self._queues[stream]
        while (chunk := await queue.get()) is not None:
            yield chunk


@dataclass
class ContainerExecution:
    """A job running in a container."""

    runtime: DockerRuntime
    container_id: str
    pid: int  # its init's, on this host: the last resort when the engine is gone
    pumps: list[asyncio.Task[None]]
    streams: _Attachment
    timeout_ms: int
    stop_grace: float
    memory_mb: int
    image_pull: ImagePull | None = None
    _stopped_as: JobState | None = None
    _stop_reason: str = ""
    _stopping: asyncio.Task[None] | None = field(default=None, repr=False)

    async def wait(self) -> ExecutionResult:
        output = asyncio.gather(*self.pumps)
        timeout = self.timeout_ms / 1000 if self.timeout_ms else None
        try:
            await asyncio.wait_for(asyncio.shield(output), timeout)
        except TimeoutError:
            self._stop(JobState.TIMEOUT, f"timed out after {self.timeout_ms} ms", self.stop_grace)
            await output
        api = self.runtime.api
        oom_killed = False
        try:
            # The streams closed: the container ended (or the engine let go: wait for the end).
            status = await self.runtime.call(api.wait, self.container_id)
            code = int(status.get("StatusCode", -1))
            if code != 0 and self._stopped_as is None:
                state = await self.runtime.call(api.inspect_container, self.container_id)
                oom_killed = bool(state["State"].get("OOMKilled"))
        except (docker.errors.APIError, OSError) as exc:
            return await self._lost(exc)
        finally:
            if self._stopping is not None:
                await self._stopping
        self.runtime._remove_later(self.container_id)
        if self.streams.error is not None:
            # The engine cut the output short but the container ran to its end: say so.
            log.error(
                "container %s: output cut short: %s", self.container_id[:12], self.streams.error
            )
        if self._stopped_as is not None:
            return ExecutionResult(self._stopped_as, code, self._stop_reason)
        if oom_killed:
            return ExecutionResult(
                JobState.FAILED,
                code,
                f"out of memory: the job went past its {self.memory_mb} MB memory limit "
                "and was killed",
            )
        if code == 0:
            return ExecutionResult(JobState.SUCCEEDED, 0)
        return ExecutionResult(JobState.FAILED, code, f"exited with code {code}")

    async def _lost(self, exc: BaseException) -> ExecutionResult:
        """The engine stopped answering about a running container: kill what it runs on this
        host (its init, and with it everything in the container) and hand the job back; it is
        not the job's failure, and no second copy of it may go on running."""
        log.error("lost the container %s: %s", self.container_id[:12], _explain(exc))
        if self.pid:
            signal_group(self.pid, signal.SIGKILL)
        if self._stopped_as is not None:
            return ExecutionResult(self._stopped_as, None, self._stop_reason)
        return ExecutionResult(
            JobState.PENDING,
            None,
            f"handed back: the Docker engine stopped answering: {_explain(exc)}",
        )

    async def cancel(self, grace: float) -> None:
        self._stop(JobState.CANCELLED, "cancelled", grace)

    def _stop(self, state: JobState, reason: str, grace: float) -> None:
        if self._stopped_as is not None:
            return
        self._stopped_as, self._stop_reason = state, reason
        self._stopping = asyncio.create_task(self._terminate(grace))

    async def _terminate(self, grace: float) -> None:
        api = self.runtime.api
        try:
            if grace <= 0:
                await self.runtime.call(api.kill, self.container_id)
            else:
                # SIGTERM, then SIGKILL after the grace period (whole seconds for the engine).
                await self.runtime.call(api.stop, self.container_id, timeout=math.ceil(grace))
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: it is not running any more
                log.warning("could not stop container %s: %s", self.container_id[:12], exc)
                self._kill_on_host()
        except OSError as exc:
            log.warning("could not stop container %s: %s", self.container_id[:12], exc)
            self._kill_on_host()

    def _kill_on_host(self) -> None:
        """Without the engine: its init's process group, on this host."""
        if self.pid:
            signal_group(self.pid, signal.SIGKILL)
