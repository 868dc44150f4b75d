"""The keeper: a tiny process beside each worker that kills its jobs when the worker dies.

A worker killed with SIGKILL (the OOM killer, a crash, ``kill -9``) cannot stop its jobs, and
the kernel does not stop a process group because the process that started it died. So every
worker starts a keeper in a session of its own and keeps the write end of a pipe the keeper
reads. The kernel closes that end when the worker dies, however it dies; the keeper then kills
every job group in the worker's ledger and exits. A worker that leaves in order empties its
ledger first, and its keeper finds nothing to kill.

Run as ``python -m hodei.worker.keeper LEDGER_DIR`` with the pipe as standard input.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


class Keeper:
    """The keeper of one ledger, as its worker sees it."""

    def __init__(self, ledger: Path) -> None:
        read_end, self._write_end = os.pipe()  # neither end is inherited by job processes
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "hodei.worker.keeper", str(ledger)],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # out of reach of the terminal's Ctrl-C, of group kills
            )
        except BaseException:
            os.close(self._write_end)
            raise
        finally:
            os.close(read_end)

    @property
    def pid(self) -> int:
        return self._process.pid

    def close(self, timeout: float = 5.0) -> None:
        """Let the keeper go (it sweeps whatever the ledger still lists) and reap it."""
        if self._write_end < 0:
            return
        os.close(self._write_end)
        self._write_end = -1
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m hodei.worker.keeper LEDGER_DIR", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    while os.read(0, 4096):  # nothing is ever written: this returns b"" when the worker is gone
        pass
    from hodei.worker.groups import sweep_ledger

    killed = sweep_ledger(Path(argv[0]))
    if killed:
        print(f"hodei keeper: killed {killed} process(es) its worker left", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
