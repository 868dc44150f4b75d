"""The seam every provider implements, and what the server lends them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hodei.domain.placement import WorkerProfile
from hodei.domain.providers import ProviderConfig


@dataclass(frozen=True)
class ProviderContext:
    """What the server gives a provider: how workers reach it and how to vouch for them."""

    server_address: str
    log_dir: Path
    work_dir: Path  # where its workers put job working directories and their ledgers
    # create_token(worker_id) -> a one-time token bound to this provider and worker id
    create_token: Callable[[str], Awaitable[str]]
    # worker_gone(worker_id, reason): the worker's process ended
    worker_gone: Callable[[str, str], Awaitable[None]]


class Provider(Protocol):
    """Keeps workers of one kind running."""

    @property
    def config(self) -> ProviderConfig: ...

    def worker_profile(self) -> WorkerProfile:
        """The shape of the workers this provider starts."""
        ...

    async def start(self) -> None:
        """Start keeping the configured workers running."""
        ...

    async def stop(self) -> None:
        """Stop every worker this provider started, and wait for them."""
        ...
