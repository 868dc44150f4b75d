"""The one way a server component runs a loop in the background."""

from __future__ import annotations

import asyncio
import contextlib


class BackgroundLoop:
    """Runs ``_run`` as one task between ``start`` and ``stop``; subclasses name the task."""

    task_name = "hodei-background"
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        raise NotImplementedError
