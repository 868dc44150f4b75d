"""How much CPU and memory each running job uses: all the processes of its group (or of the
session it leads), together."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class GroupUsage:
    cpu_percent: float  # 100 is one core busy
    memory_bytes: int


class GroupSampler:
    """Samples process groups; CPU is what the group used since the previous sample."""

    def __init__(self) -> None:
        self._previous: dict[int, tuple[float, float]] = {}  # pgid -> (monotonic, cpu seconds)

    def sample(self, pgids: set[int]) -> dict[int, GroupUsage]:
        """The usage of each group that still has processes (blocking: run it in a thread)."""
        totals: dict[int, list[float]] = {}
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                pgid = os.getpgid(process.pid)
                if pgid not in pgids:
                    # A member that made a group of its own stays in the job's session (a
                    # container's processes: its init leads the session, its command a group).
                    pgid = os.getsid(process.pid)
                    if pgid not in pgids:
                        continue
                with process.oneshot():
                    times = process.cpu_times()
                    rss = process.memory_info().rss
                # Children's times count what members already reaped (a shell's commands).
                cpu = times.user + times.system + times.children_user + times.children_system
                total = totals.setdefault(pgid, [0.0, 0.0])
                total[0] += cpu
                total[1] += float(rss)
        now = time.monotonic()
        usage: dict[int, GroupUsage] = {}
        for pgid, (cpu, memory) in totals.items():
            before = self._previous.get(pgid)
            percent = 0.0
            if before is not None and now > before[0]:
                # A member that exits takes its time along: never below zero.
                percent = max(0.0, (cpu - before[1]) / (now - before[0]) * 100)
                # A reaped member's time reappears in its parent's children times at once:
                # never more than every core busy.
                percent = min(percent, 100.0 * (os.cpu_count() or 1))
            self._previous[pgid] = (now, cpu)
            usage[pgid] = GroupUsage(round(percent, 1), int(memory))
        for gone in set(self._previous) - set(totals):
            del self._previous[gone]
        return usage
