"""The ``docker`` provider: workers on this host that run each job in a container.

It keeps between ``min_workers`` and ``max_workers`` workers: one more when jobs that want a
container have waited with no worker taking them, and it releases a worker that has been idle
for ``idle_timeout`` while there are more than the minimum (the server logs "released" and
writes WorkerReleased). The workers are ``hodei worker --runtime docker`` processes: the agent
runs on the host and talks to the engine; the jobs run in containers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass

from hodei.domain.placement import WorkerProfile
from hodei.domain.providers import ProviderConfig
from hodei.providers.base import ProviderContext, ProviderUnavailableError
from hodei.providers.processes import FLAPPING_SECONDS, HostShare, WorkerProcesses
from hodei.worker.containers import (
    DockerSettings,
    EngineUnavailableError,
    connect,
    remove_orphans,
)
from hodei.worker.groups import sweep_dead_ledgers

log = logging.getLogger(__name__)

SCALE_INTERVAL_SECONDS = 0.5
MAX_FLAPPING_PAUSE_SECONDS = 60.0


@dataclass(frozen=True)
class DockerProviderSettings:
    """The ``config`` of a docker provider."""

    containers: DockerSettings
    share: HostShare  # what each worker offers

    @classmethod
    def from_config(cls, config: ProviderConfig) -> DockerProviderSettings:
        extra = config.config
        return cls(
            containers=DockerSettings(
                default_image=str(extra.get("default_image") or DockerSettings.default_image),
                network=str(extra.get("network") or "none"),
                keep_containers=bool(extra.get("keep_containers", False)),
                docker_host=str(extra.get("docker_host", "")),
            ),
            share=HostShare.from_config(config),
        )

    def worker_args(self) -> list[str]:
        c = self.containers
        args = [
            *("--runtime", "docker"),
            *self.share.worker_args(),
            *("--default-image", c.default_image),
            *("--network", c.network),
        ]
        if c.docker_host:
            args += ["--docker-host", c.docker_host]
        if c.keep_containers:
            args.append("--keep-containers")
        return args


@dataclass
class _Worker:
    task: asyncio.Task[None]
    started_at: float
    idle_since: float
    released: bool = False


class DockerProvider:
    """Scales ``hodei worker --runtime docker`` processes between min and max workers."""

    def __init__(self, config: ProviderConfig, context: ProviderContext) -> None:
        self._config = config
        self._settings = DockerProviderSettings.from_config(config)
        self._context = context
        self._processes = WorkerProcesses(config.name, context)
        self._workers: dict[str, _Worker] = {}
        self._scaler: asyncio.Task[None] | None = None
        self._flapping_until = 0.0
        self._flapping_pause = FLAPPING_SECONDS  # doubled for each worker that dies young

    @property
    def config(self) -> ProviderConfig:
        return self._config

    def worker_profile(self) -> WorkerProfile:
        return self._settings.share.profile(self._config.name, "docker")

    def reconfigure(self, config: ProviderConfig) -> bool:
        self._config = config  # min, max and idle timeout: the next scaling round uses them
        return True

    async def start(self) -> None:
        try:
            api = await asyncio.to_thread(connect, self._settings.containers.docker_host, 5)
        except EngineUnavailableError as exc:
            raise ProviderUnavailableError(f"docker provider {self._config.name}: {exc}") from None
        api.close()
        self._scaler = asyncio.create_task(self._scale_loop(), name=f"docker-{self._config.name}")
        log.info(
            "docker provider %s keeps %d to %d workers",
            self._config.name,
            self._config.min_workers,
            self._config.max_workers,
        )

    async def stop(self) -> None:
        if self._scaler is not None:
            self._scaler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scaler
        await self._processes.stop([w.task for w in self._workers.values()])

    async def _scale_loop(self) -> None:
        while True:
            try:
                await self.scale()
            except Exception:
                log.exception("docker provider %s could not scale", self._config.name)
            await asyncio.sleep(SCALE_INTERVAL_SECONDS)

    async def scale(self) -> None:
        """One round: top up to the minimum, add a worker for waiting jobs, release idle ones."""
        if self._processes.stopping:
            return
        now = asyncio.get_running_loop().time()
        cfg = self._config
        load = await self._context.load(self.worker_profile(), list(self._workers))
        live = {i: w for i, w in self._workers.items() if not w.released}
        for worker_id, worker in live.items():
            if load.active.get(worker_id, 0) or worker_id not in load.ready:
                worker.idle_since = now
        starting = [i for i in live if i not in load.ready]
        if now < self._flapping_until:
            return
        if len(live) < cfg.min_workers:
            for _ in range(cfg.min_workers - len(live)):
                self._start_worker(now)
            return
        if load.pending and not starting and len(live) < cfg.max_workers:
            log.info(
                "docker provider %s: %d job(s) waiting, starting a worker (%d of at most %d)",
                cfg.name,
                load.pending,
                len(live) + 1,
                cfg.max_workers,
            )
            self._start_worker(now)
            return
        idle_timeout = cfg.idle_timeout.total_seconds()
        spare = len(live) - cfg.min_workers
        for worker_id, worker in sorted(live.items(), key=lambda item: item[1].idle_since):
            if spare <= 0 or load.pending:
                break
            if now - worker.idle_since >= idle_timeout and await self._release(
                worker_id, worker, now - worker.idle_since
            ):
                spare -= 1

    def _start_worker(self, now: float) -> None:
        worker_id = str(uuid.uuid4())
        task = asyncio.create_task(self._run_worker(worker_id), name=f"docker-worker-{worker_id}")
        self._workers[worker_id] = _Worker(task, started_at=now, idle_since=now)

    async def _release(self, worker_id: str, worker: _Worker, idle_for: float) -> bool:
        reason = f"idle for {idle_for:.0f} s"
        if not await self._context.worker_released(worker_id, reason):
            return False  # it took a job meanwhile
        worker.released = True
        log.info("docker provider %s released worker %s (%s)", self._config.name, worker_id, reason)
        self._processes.terminate(worker_id)
        return True

    async def _run_worker(self, worker_id: str) -> None:
        worker = self._workers[worker_id]
        try:
            code = await self._processes.run(worker_id, self._settings.worker_args())
            outcome = f"its process exited with code {code}"
        except OSError as exc:
            outcome = f"its process could not start: {exc}"
        finally:
            del self._workers[worker_id]
        # Whatever it left behind goes now, before the retries of its jobs start elsewhere.
        sweep_dead_ledgers(self._context.work_dir)
        await self._remove_containers(worker_id)
        if worker.released or self._processes.stopping:
            await self._context.worker_gone(worker_id, "stopped by its provider")
            return
        log.warning("docker worker %s ended: %s", worker_id, outcome)
        await self._context.worker_gone(worker_id, outcome)
        now = asyncio.get_running_loop().time()
        if now - worker.started_at < FLAPPING_SECONDS:
            # Its engine is down, say: try again later and later, not every few seconds.
            self._flapping_until = now + self._flapping_pause
            self._flapping_pause = min(self._flapping_pause * 2, MAX_FLAPPING_PAUSE_SECONDS)
        else:
            self._flapping_pause = FLAPPING_SECONDS

    async def _remove_containers(self, worker_id: str) -> None:
        def remove() -> int:
            api = connect(self._settings.containers.docker_host, 10)
            try:
                return remove_orphans(
                    api, worker_id=worker_id, keep=self._settings.containers.keep_containers
                )
            finally:
                api.close()

        try:
            removed = await asyncio.to_thread(remove)
        except EngineUnavailableError as exc:
            log.warning("could not remove the containers of worker %s: %s", worker_id, exc)
            return
        if removed:
            log.warning("removed %d container(s) worker %s left behind", removed, worker_id)
