"""Options several ``hodei`` commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="HODEI_DATA_DIR", help="Where Hodei keeps its state."),
]
DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="HODEI_DATABASE_URL",
        help="PostgreSQL URL; embedded when unset.",
        show_default=False,
    ),
]
