"""Where the CLI writes: stdout for results, stderr for progress and errors, never wrapped."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.text import Text

# Output that is not a terminal (a pipe, a file) gets no 80-column limit: tables keep whole ids
# and lines stay whole for grep.
_PIPE_WIDTH = 1000

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else _PIPE_WIDTH)


def print_error(message: str) -> None:
    """One line, ``error: …``; the message is shown as given, never read as markup."""
    err.print(Text.assemble(("error: ", "red"), message))


def print_status(message: str, style: str = "") -> None:
    """A status line on stderr, taken literally."""
    err.print(Text(message, style=style))
