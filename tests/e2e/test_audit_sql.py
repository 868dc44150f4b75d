"""The user guide's audit queries ("Verificación Avanzada"), verbatim, through psql."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import HodeiUp

pytestmark = pytest.mark.e2e

LATEST_EVENTS = """\
SELECT occurred_at, event_type, actor, payload
FROM audit_logs
ORDER BY occurred_at DESC
LIMIT 10;
"""
JOB_LIFECYCLE = """\
-- Reemplaza 'JOB_ID_AQUI' con el ID real de tu job
SELECT occurred_at, event_type, payload
FROM audit_logs
WHERE correlation_id = 'JOB_ID_AQUI'
ORDER BY occurred_at ASC;
"""
EVENT_COUNTS = """\
SELECT event_type, COUNT(*) as total
FROM audit_logs
GROUP BY event_type
ORDER BY total DESC;
"""
ORPHANED_JOBS = """\
-- Buscar jobs huérfanos (creados hace más de 5 min sin asignar)
SELECT * FROM audit_logs
WHERE event_type = 'JobCreated'
AND occurred_at < NOW() - INTERVAL '5 minutes'
AND correlation_id NOT IN (
    SELECT correlation_id FROM audit_logs WHERE event_type = 'JobAssigned'
);
"""
SECRET = "audit-secret-value-7f3e"


@pytest.fixture(scope="module")
def finished_job(hodei: HodeiUp) -> str:
    """A job of example 1, run to its end; its id."""
    submitted = hodei.cli(
        "job", "submit", 'echo "Hello from Hodei!" && date', "--image", "alpine:latest"
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert hodei.wait_job(job_id)["state"] == "SUCCEEDED"
    return job_id


def test_db_url_is_a_psql_url(hodei: HodeiUp) -> None:
    url = hodei.db_url()

    assert url.startswith("postgresql://")
    assert hodei.psql("select current_database()") == [["hodei"]]


def test_job_lifecycle_by_correlation_id(hodei: HodeiUp, finished_job: str) -> None:
    rows = hodei.psql(JOB_LIFECYCLE.replace("JOB_ID_AQUI", finished_job))

    assert [row[1] for row in rows] == [
        "JobCreated",
        "JobAssigned",
        "JobStatusChanged",
        "JobStatusChanged",
    ]
    transitions = hodei.psql(
        "SELECT event_type, payload->>'from', payload->>'to' FROM audit_logs "
        f"WHERE correlation_id = '{finished_job}' ORDER BY occurred_at ASC, id ASC"
    )
    assert transitions == [
        ["JobCreated", "", ""],
        ["JobAssigned", "", ""],
        ["JobStatusChanged", "ASSIGNED", "RUNNING"],
        ["JobStatusChanged", "RUNNING", "SUCCEEDED"],
    ]
    assigned = json.loads(rows[1][2])
    assert assigned["worker_id"] == hodei.get_job(finished_job)["worker_id"]


def test_latest_events(hodei: HodeiUp, finished_job: str) -> None:
    count = "SELECT count(*) FROM audit_logs"
    before = int(hodei.psql(count)[0][0])
    rows = hodei.psql(LATEST_EVENTS)
    after = int(hodei.psql(count)[0][0])

    # Workers add a heartbeat event now and then, so the total may grow meanwhile.
    assert min(10, before) <= len(rows) <= min(10, after)
    times = [datetime.fromisoformat(row[0]) for row in rows]
    assert times == sorted(times, reverse=True)
    for _, event_type, actor, payload in rows:
        assert event_type
        assert actor
        assert isinstance(json.loads(payload), dict)


def test_event_counts(hodei: HodeiUp, finished_job: str) -> None:
    rows = hodei.psql(EVENT_COUNTS)

    totals = {event_type: int(total) for event_type, total in rows}
    assert [int(total) for _, total in rows] == sorted(totals.values(), reverse=True)
    assert totals["JobCreated"] == hodei.job_count()
    assert totals["JobAssigned"] >= 1
    assert totals["JobStatusChanged"] >= 2


def test_orphaned_jobs_query_finds_none_of_ours(hodei: HodeiUp, finished_job: str) -> None:
    rows = hodei.psql(ORPHANED_JOBS)
    assert not any(finished_job in row for row in rows)

    # The same query without the 5 minutes of slack: our job was assigned, so still no row.
    rows = hodei.psql(ORPHANED_JOBS.replace("INTERVAL '5 minutes'", "INTERVAL '0 seconds'"))
    assert not any(finished_job in row for row in rows)


def test_secret_values_stay_out_of_audit_and_logs(hodei: HodeiUp) -> None:
    result = hodei.cli(
        "job", "run", 'echo "token=$API_TOKEN"', "--secret-env", f"API_TOKEN={SECRET}"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "token=***\n"

    leaks = hodei.psql(
        f"SELECT 'audit', id::text FROM audit_logs WHERE payload::text LIKE '%{SECRET}%' "
        f"UNION ALL SELECT 'log', job_id::text FROM job_logs WHERE line LIKE '%{SECRET}%'"
    )
    assert leaks == []
