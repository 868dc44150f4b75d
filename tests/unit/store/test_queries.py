from __future__ import annotations

import pytest

from hodei.store.migrations import available_migrations
from hodei.store.queries import load_queries, parse_queries


def test_named_queries_are_split_and_comments_dropped() -> None:
    queries = parse_queries("-- one --\n-- Does one.\nSELECT 1;\n\n-- two --\n-- Two.\nSELECT 2;")
    assert queries == {"one": "SELECT 1;", "two": "SELECT 2;"}


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        parse_queries("-- a --\nSELECT 1;\n-- a --\nSELECT 2;")


def test_the_package_queries_load() -> None:
    queries = load_queries()
    assert {"insert_job", "claim_jobs", "finish_job", "append_log_chunk"} <= queries.keys()
    assert "SKIP LOCKED" in queries["claim_jobs"]


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in available_migrations()]
    assert versions == list(range(1, len(versions) + 1))
