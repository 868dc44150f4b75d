"""The ``local`` provider: workers as local subprocesses of the server, kept at pool size."""

from __future__ import annotations

import asyncio
import logging
import uuid

from hodei.domain.placement import WorkerProfile
from hodei.domain.providers import ProviderConfig
from hodei.providers.base import ProviderContext
from hodei.providers.processes import FLAPPING_SECONDS, HostShare, WorkerProcesses
from hodei.worker.groups import sweep_dead_ledgers

log = logging.getLogger(__name__)


class LocalProvider:
    """Runs ``hodei worker`` processes on this host and replaces any that exits."""

    def __init__(self, config: ProviderConfig, context: ProviderContext) -> None:
        self._config = config
        self._share = HostShare.from_config(config)
        self._pool_size = max(config.min_workers, 0)
        self._context = context
        self._processes = WorkerProcesses(config.name, context)
        self._slots: list[asyncio.Task[None]] = []

    @property
    def config(self) -> ProviderConfig:
        return self._config

    def worker_profile(self) -> WorkerProfile:
        return self._share.profile(self._config.name, "process")

    def reconfigure(self, config: ProviderConfig) -> bool:
        if max(config.min_workers, 0) != self._pool_size:
            return False  # another pool size: its slots are started once
        self._config = config
        return True

    async def start(self) -> None:
        self._slots = [
            asyncio.create_task(self._keep_slot(i), name=f"local-worker-{i}")
            for i in range(self._pool_size)
        ]
        log.info("local provider %s keeps %d workers", self._config.name, len(self._slots))

    async def _keep_slot(self, slot: int) -> None:
        args = self._share.worker_args()
        while not self._processes.stopping:
            worker_id = str(uuid.uuid4())
            started = asyncio.get_running_loop().time()
            try:
                code = await self._processes.run(worker_id, args)
                outcome = f"its process exited with code {code}"
            except OSError as exc:
                outcome = f"its process could not start: {exc}"
            # Whatever its jobs left running goes now, before their retries can start.
            sweep_dead_ledgers(self._context.work_dir)
            if self._processes.stopping:
                await self._context.worker_gone(worker_id, "stopped by its provider")
                return
            log.warning("local worker %s ended: %s; starting a replacement", worker_id, outcome)
            await self._context.worker_gone(worker_id, outcome)
            if asyncio.get_running_loop().time() - started < FLAPPING_SECONDS:
                await asyncio.sleep(FLAPPING_SECONDS)

    async def stop(self) -> None:
        await self._processes.stop(self._slots)
