"""Named SQL queries, loaded once from ``sql/queries.sql``.

A query starts with a line ``-- name --`` followed by a one-line ``-- description``.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import LiteralString

_HEADER = re.compile(r"^-- ([a-z_]+) --$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, LiteralString]:
    """Split a .sql file into {name: sql}. Raises ValueError on a duplicate or empty query."""
    parts = _HEADER.split(text)
    queries: dict[str, LiteralString] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sql = "\n".join(line for line in body.strip().splitlines() if not line.startswith("--"))
        if not sql.strip():
            raise ValueError(f"query {name!r} is empty")
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        # The text comes from a file shipped in the package, never from input.
        queries[name] = sql.strip()
    return queries


def load_queries() -> dict[str, LiteralString]:
    """The package's named queries."""
    text = resources.files("hodei.store").joinpath("sql/queries.sql").read_text("utf-8")
    return parse_queries(text)


def load_schema() -> str:
    """The picture of the whole schema (``sql/schema.sql``)."""
    return resources.files("hodei.store").joinpath("sql/schema.sql").read_text("utf-8")
