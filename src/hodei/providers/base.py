"""The seam every provider implements, and what the server lends them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from hodei.domain.errors import HodeiError
from hodei.domain.placement import WorkerProfile
from hodei.domain.providers import ProviderConfig, ProviderLoad


class ProviderUnavailableError(HodeiError):
    """A provider cannot run here now (its engine does not answer, say); it is not started."""


async def _no_load(profile: WorkerProfile, worker_ids: Sequence[str]) -> ProviderLoad:
    return ProviderLoad(pending=0)


async def _no_release(worker_id: str, reason: str) -> bool:
    return False


@dataclass(frozen=True)
class ProviderContext:
    """What the server gives a provider: how workers reach it and how to vouch for them."""

    server_address: str
    log_dir: Path
    work_dir: Path  # where its workers put job working directories and their ledgers
    # create_token(worker_id, provider) -> a one-time token bound to that provider and worker id
    create_token: Callable[[str, str], Awaitable[str]]
    # worker_gone(worker_id, reason): the worker's process ended
    worker_gone: Callable[[str, str], Awaitable[None]]
    # worker_released(worker_id, reason): the provider lets an idle worker go (WorkerReleased);
    # False when it holds a job after all, and stays
    worker_released: Callable[[str, str], Awaitable[bool]] = _no_release
    # load(profile, worker_ids): what waits for the provider's kind and shape of worker, and how
    # busy these workers of it are
    load: Callable[[WorkerProfile, Sequence[str]], Awaitable[ProviderLoad]] = _no_load
    # Settings the workers it starts need on top of the server's environment (TLS to reach it)
    worker_env: Mapping[str, str] = field(default_factory=dict)


class Provider(Protocol):
    """Keeps workers of one kind running."""

    @property
    def config(self) -> ProviderConfig: ...

    def worker_profile(self) -> WorkerProfile:
        """The shape of the workers this provider starts."""
        ...

    def reconfigure(self, config: ProviderConfig) -> bool:
        """Take new settings that leave its workers as they are (priority, scaling) while it
        runs; False when it must be restarted for them."""
        ...

    async def start(self) -> None:
        """Start keeping the configured workers running.

        Raises:
            ProviderUnavailableError: the provider cannot run here now.
        """
        ...

    async def stop(self) -> None:
        """Stop every worker this provider started, and wait for them."""
        ...
