"""The ``local`` provider: workers as local subprocesses of the server, kept at pool size."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import uuid
from dataclasses import dataclass

import psutil

from hodei.domain.placement import WorkerProfile
from hodei.domain.providers import ProviderConfig
from hodei.providers.base import ProviderContext
from hodei.worker.agent import host_arch
from hodei.worker.groups import sweep_dead_ledgers

log = logging.getLogger(__name__)

# A worker that dies sooner than this after starting is restarted only after a pause.
_FLAPPING_SECONDS = 5.0
STOP_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class LocalSettings:
    """The ``config`` of a local provider."""

    pool_size: int
    cpu_cores: float
    memory_mb: int
    region: str

    @classmethod
    def from_config(cls, config: ProviderConfig) -> LocalSettings:
        extra = config.config
        return cls(
            pool_size=max(config.min_workers, 0),
            cpu_cores=float(extra.get("cpu_cores") or os.cpu_count() or 1),
            memory_mb=int(extra.get("memory_mb") or psutil.virtual_memory().total // 2**20),
            region=str(extra.get("region", "local")),
        )


class LocalProvider:
    """Runs ``hodei worker`` processes on this host and replaces any that exits."""

    def __init__(self, config: ProviderConfig, context: ProviderContext) -> None:
        self._config = config
        self._settings = LocalSettings.from_config(config)
        self._context = context
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._slots: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def config(self) -> ProviderConfig:
        return self._config

    def worker_profile(self) -> WorkerProfile:
        s = self._settings
        return WorkerProfile(
            source=f"provider {self._config.name}",
            provider=self._config.name,
            runtime="process",
            arch=host_arch(),
            region=s.region,
            cpu_cores=s.cpu_cores,
            memory_mb=s.memory_mb,
        )

    async def start(self) -> None:
        self._context.log_dir.mkdir(parents=True, exist_ok=True)
        self._context.work_dir.mkdir(parents=True, exist_ok=True)
        self._slots = [
            asyncio.create_task(self._keep_slot(i), name=f"local-worker-{i}")
            for i in range(self._settings.pool_size)
        ]
        log.info("local provider %s keeps %d workers", self._config.name, len(self._slots))

    async def _keep_slot(self, slot: int) -> None:
        while not self._stopping:
            worker_id = str(uuid.uuid4())
            started = asyncio.get_running_loop().time()
            try:
                outcome = f"its process exited with code {await self._run_worker(worker_id)}"
            except OSError as exc:
                outcome = f"its process could not start: {exc}"
            # Whatever its jobs left running goes now, before their retries can start.
            sweep_dead_ledgers(self._context.work_dir)
            if self._stopping:
                await self._context.worker_gone(worker_id, "stopped by its provider")
                return
            log.warning("local worker %s ended: %s; starting a replacement", worker_id, outcome)
            await self._context.worker_gone(worker_id, outcome)
            if asyncio.get_running_loop().time() - started < _FLAPPING_SECONDS:
                await asyncio.sleep(_FLAPPING_SECONDS)

    async def _run_worker(self, worker_id: str) -> int:
        token = await self._context.create_token(worker_id)
        s = self._settings
        env = os.environ | {
            "HODEI_SERVER_ADDRESS": self._context.server_address,
            "HODEI_OTP_TOKEN": token,
            "HODEI_WORKER_MANAGED": "1",
        }
        log_path = self._context.log_dir / f"worker-{worker_id}.log"
        with log_path.open("ab") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hodei",
                "worker",
                "--cpus",
                str(s.cpu_cores),
                "--memory-mb",
                str(s.memory_mb),
                "--region",
                s.region,
                "--work-dir",
                str(self._context.work_dir),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                env=env,
            )
        self._processes[worker_id] = process
        if self._stopping:
            process.send_signal(signal.SIGTERM)  # started while the provider was stopping
        try:
            return await process.wait()
        finally:
            del self._processes[worker_id]

    async def stop(self) -> None:
        self._stopping = True
        for process in self._processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        if not self._slots:
            return
        _, pending = await asyncio.wait(self._slots, timeout=STOP_TIMEOUT_SECONDS)
        if pending:
            for process in self._processes.values():
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            _, pending = await asyncio.wait(pending, timeout=5)
        for task in pending:
            task.cancel()
