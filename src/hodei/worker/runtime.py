"""Runtimes run one job attempt each. ``process``: a child process group on this host."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from hodei.domain.errors import HodeiError
from hodei.domain.jobs import CommandType
from hodei.domain.logs import LogStream
from hodei.domain.states import JobState
from hodei.worker.capture import LineSink, pump_lines

# Variables of the worker's own environment a job inherits; everything else it must be given.
_INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "SHELL")


class LaunchError(HodeiError):
    """The job could not be started at all (missing interpreter, unsupported command type)."""


class RuntimeUnavailableError(LaunchError):
    """The runtime itself is out of order (its container engine stopped answering): the job is
    not at fault; it goes back to the queue and the worker stops taking jobs."""


class LaunchCancelledError(LaunchError):
    """The attempt was cancelled while it was being prepared (an image pull): it never ran."""


def _never() -> bool:
    return False


@dataclass(frozen=True)
class JobLaunch:
    """Everything a runtime needs to start one attempt."""

    job_id: str
    attempt: int
    command_type: CommandType
    script: str
    image: str
    env: Mapping[str, str]
    timeout_ms: int
    workdir: Path
    # At the timeout: SIGTERM to the job's process group, this many seconds, then SIGKILL.
    stop_grace: float = 10.0
    # Limits a container runtime applies (a process runtime only counts them).
    cpu_cores: float = 0.0
    memory_mb: int = 0
    arch: str = ""
    # Asked before the job's command starts: True when it was cancelled meanwhile.
    cancelled: Callable[[], bool] = _never


@dataclass(frozen=True)
class ImagePull:
    """The image a container runtime had to pull for an attempt."""

    image: str
    duration_ms: int  # waiting for it included (another attempt may have been pulling it)


@dataclass(frozen=True)
class ExecutionResult:
    state: JobState
    exit_code: int | None
    error_message: str = ""


class Execution(Protocol):
    """A started attempt."""

    @property
    def pid(self) -> int:
        """The leader of the attempt's process group on this host (0 when not known)."""
        ...

    @property
    def image_pull(self) -> ImagePull | None:
        """The image pulled to start this attempt, if one was."""
        ...

    async def wait(self) -> ExecutionResult:
        """Until the attempt ends (by itself, its timeout, or a cancel); output fully read."""
        ...

    async def cancel(self, grace: float) -> None:
        """Stop the attempt: SIGTERM, ``grace`` seconds, then SIGKILL; it ends CANCELLED."""
        ...


class Runtime(Protocol):
    """Starts attempts. One per worker."""

    name: str

    async def prepare(self, worker_id: str) -> None:
        """Get ready to run jobs for the worker just registered as ``worker_id``."""
        ...

    async def close(self) -> None:
        """Release what ``prepare`` took, once no attempt runs any more."""
        ...

    async def start(self, launch: JobLaunch, sink: LineSink) -> Execution:
        """Start the attempt, feeding every line of its output to ``sink``.

        Raises:
            LaunchError: the job cannot be started on this worker.
        """
        ...


def job_environment(launch: JobLaunch) -> dict[str, str]:
    """The job's environment: a few inherited basics, Hodei's variables, then the job's own."""
    env = {k: os.environ[k] for k in _INHERITED_ENV if k in os.environ}
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    env |= {
        "HODEI_JOB_ID": launch.job_id,
        "HODEI_JOB_ATTEMPT": str(launch.attempt),
        "TMPDIR": str(launch.workdir),
        "PYTHONUNBUFFERED": "1",
    }
    return env | dict(launch.env)


def _interpreter(name: str, env: Mapping[str, str], fallback: str | None = None) -> str:
    found = shutil.which(name, path=env.get("PATH"))
    if found:
        return found
    if fallback:
        return fallback
    raise LaunchError(f"{name} is not installed on this worker (needed for this command type)")


def process_argv(launch: JobLaunch, env: Mapping[str, str]) -> list[str]:
    """The command line for a job run directly on the host."""
    match launch.command_type:
        case CommandType.SHELL:
            return [_interpreter("sh", env), "-c", launch.script]
        case CommandType.PYTHON:
            script = launch.workdir / "main.py"
            script.write_text(launch.script, encoding="utf-8")
            return [_interpreter("python3", env, fallback=sys.executable), "-u", str(script)]
        case CommandType.NODE:
            script = launch.workdir / "main.js"
            script.write_text(launch.script, encoding="utf-8")
            return [_interpreter("node", env), str(script)]
        case CommandType.DOCKER_EXEC:
            raise LaunchError("DOCKER_EXEC needs a container runtime; this worker runs processes")


def use_pidfd_child_watcher() -> None:
    """Watch job processes with pidfds (Linux >= 5.3) instead of a thread per child.

    Python 3.11's default watcher starts a thread for every process; a pidfd watcher cuts the
    cost of starting a job by more than half. Python 3.12 and later do this by themselves.
    Call it from the worker's event loop before starting any job.
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return  # the kernel has no pidfd support
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Signal a whole process group, ignoring one that is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@dataclass
class ProcessExecution:
    """A job running as the leader of its own process group."""

    process: asyncio.subprocess.Process
    pumps: list[asyncio.Task[None]]
    timeout_ms: int
    stop_grace: float
    _stopped_as: JobState | None = None
    _stop_reason: str = ""
    _stopping: asyncio.Task[None] | None = field(default=None, repr=False)
    image_pull: ImagePull | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    async def wait(self) -> ExecutionResult:
        timeout = self.timeout_ms / 1000 if self.timeout_ms else None
        try:
            await asyncio.wait_for(self._exited(), timeout)
        except TimeoutError:
            self._stop(JobState.TIMEOUT, f"timed out after {self.timeout_ms} ms", self.stop_grace)
            await self._exited()
        # Whatever the job left running in its group goes with it; this also closes the pipes.
        signal_group(self.process.pid, signal.SIGKILL)
        await self.process.wait()
        await asyncio.gather(*self.pumps)
        if self._stopping is not None:
            self._stopping.cancel()
        return self._result(self.process.returncode)

    def _result(self, code: int | None) -> ExecutionResult:
        assert code is not None
        # A shell reports death by signal N as 128 + N; so do we.
        exit_code = 128 - code if code < 0 else code
        if self._stopped_as is not None:
            return ExecutionResult(self._stopped_as, exit_code, self._stop_reason)
        if code == 0:
            return ExecutionResult(JobState.SUCCEEDED, 0)
        if code < 0:
            name = signal.Signals(-code).name
            return ExecutionResult(JobState.FAILED, exit_code, f"killed by signal {name}")
        return ExecutionResult(JobState.FAILED, code, f"exited with code {code}")

    async def _exited(self) -> None:
        """Until the job's own process exits. Not Process.wait(): on Python 3.11 that also waits
        until nobody holds the job's stdout and stderr, which a process it left behind in the
        background can do for ever."""
        while self.process.returncode is None:  # noqa: ASYNC110 - set by the child watcher
            await asyncio.sleep(0.05)

    async def cancel(self, grace: float) -> None:
        self._stop(JobState.CANCELLED, "cancelled", grace)

    def _stop(self, state: JobState, reason: str, grace: float) -> None:
        if self._stopped_as is not None or self.process.returncode is not None:
            return
        self._stopped_as, self._stop_reason = state, reason
        self._stopping = asyncio.create_task(self._terminate(grace))

    async def _terminate(self, grace: float) -> None:
        signal_group(self.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self._exited(), grace)
        except TimeoutError:
            signal_group(self.process.pid, signal.SIGKILL)


class ProcessRuntime:
    """Runs each job as a child process group of the worker, in its own working directory."""

    name = "process"

    async def prepare(self, worker_id: str) -> None:
        pass  # the worker's group ledger sweeps what dead predecessors left

    async def close(self) -> None:
        pass

    async def start(self, launch: JobLaunch, sink: LineSink) -> Execution:
        env = job_environment(launch)
        argv = process_argv(launch, env)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=launch.workdir,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise LaunchError(f"cannot start {argv[0]}: {exc.strerror or exc}") from exc
        assert process.stdout is not None
        assert process.stderr is not None
        pumps = [
            asyncio.create_task(pump_lines(process.stdout, LogStream.STDOUT, sink)),
            asyncio.create_task(pump_lines(process.stderr, LogStream.STDERR, sink)),
        ]
        return ProcessExecution(process, pumps, launch.timeout_ms, launch.stop_grace)
