"""``hodei worker`` processes a provider runs on the server's host."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

from hodei.domain.placement import WorkerProfile
from hodei.domain.providers import ProviderConfig
from hodei.providers.base import ProviderContext
from hodei.worker.agent import host_arch

log = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 20.0
# The server's own secrets: a worker (and so a job that reads its environment) never gets them.
_SERVER_ONLY = frozenset({"HODEI_SECRET_KEY", "HODEI_DATABASE_URL", "HODEI_TOKEN"})
# A worker that dies sooner than this after starting is replaced only after a pause.
FLAPPING_SECONDS = 5.0


@dataclass(frozen=True)
class HostShare:
    """What each worker a provider runs on this host offers: the provider's ``cpu_cores``,
    ``memory_mb`` and ``region`` settings, else the whole host."""

    cpu_cores: float
    memory_mb: int
    region: str

    @classmethod
    def from_config(cls, config: ProviderConfig) -> HostShare:
        extra = config.config
        return cls(
            cpu_cores=float(extra.get("cpu_cores") or os.cpu_count() or 1),
            memory_mb=int(extra.get("memory_mb") or psutil.virtual_memory().total // 2**20),
            region=str(extra.get("region", "local")),
        )

    def profile(self, provider: str, runtime: str) -> WorkerProfile:
        """The shape of the workers of ``provider``."""
        return WorkerProfile(
            source=f"provider {provider}",
            provider=provider,
            runtime=runtime,
            arch=host_arch(),
            region=self.region,
            cpu_cores=self.cpu_cores,
            memory_mb=self.memory_mb,
        )

    def worker_args(self) -> list[str]:
        """The ``hodei worker`` options that say so."""
        return [
            *("--cpus", str(self.cpu_cores)),
            *("--memory-mb", str(self.memory_mb)),
            *("--region", self.region),
        ]


class WorkerProcesses:
    """The worker processes of one provider: each registers with a one-time token bound to the
    provider and its worker id, and logs to ``LOG_DIR/worker-ID.log``."""

    def __init__(self, provider: str, context: ProviderContext) -> None:
        self._provider = provider
        self._context = context
        self._running: dict[str, asyncio.subprocess.Process] = {}
        self.stopping = False

    def __contains__(self, worker_id: str) -> bool:
        return worker_id in self._running

    async def run(self, worker_id: str, args: Iterable[str]) -> int:
        """Start ``hodei worker ARGS`` as ``worker_id`` and wait until it exits; its exit code.

        Raises:
            OSError: the process could not start.
        """
        token = await self._context.create_token(worker_id, self._provider)
        inherited = {k: v for k, v in os.environ.items() if k not in _SERVER_ONLY}
        env = (
            inherited
            | dict(self._context.worker_env)
            | {
                "HODEI_SERVER_ADDRESS": self._context.server_address,
                "HODEI_OTP_TOKEN": token,
                "HODEI_WORKER_MANAGED": "1",
            }
        )
        self._context.log_dir.mkdir(parents=True, exist_ok=True)
        self._context.work_dir.mkdir(parents=True, exist_ok=True)
        log_path = self._context.log_dir / f"worker-{worker_id}.log"
        with log_path.open("ab") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hodei",
                "worker",
                *args,
                "--work-dir",
                str(self._context.work_dir),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                env=env,
            )
        self._running[worker_id] = process
        if self.stopping:
            process.send_signal(signal.SIGTERM)  # started while the provider was stopping
        try:
            return await process.wait()
        finally:
            del self._running[worker_id]

    def terminate(self, worker_id: str) -> None:
        """SIGTERM: the worker drains (finishes or hands back its jobs) and leaves."""
        process = self._running.get(worker_id)
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)

    async def stop(self, tasks: Iterable[asyncio.Task[None]]) -> None:
        """Stop every worker: SIGTERM, then SIGKILL to those still there after the stop timeout;
        waits for ``tasks`` (the ones that run the workers) to end."""
        self.stopping = True
        for worker_id in list(self._running):
            self.terminate(worker_id)
        pending = {task for task in tasks if not task.done()}
        if not pending:
            return
        _, pending = await asyncio.wait(pending, timeout=STOP_TIMEOUT_SECONDS)
        if pending:
            for process in self._running.values():
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            _, pending = await asyncio.wait(pending, timeout=5)
        for task in pending:
            task.cancel()
