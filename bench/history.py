"""Do the web UI's History and Metrics pages stay fast with 100,000 jobs in the database?

Starts a PostgreSQL of its own (``EmbeddedPostgres``, fsync on) in a temporary directory, applies
the migrations, inserts ``--jobs`` jobs with four ``INSERT … SELECT … generate_series``, runs
``VACUUM (ANALYZE)``, starts the real ``hodei server`` on 127.0.0.1 and times with httpx, after 3
warm-up calls, what those pages ask for: ``GET /api/v1/jobs?page_size=50`` (the first page; page
20 by following ``next_page_token``, only the 20th request timed; ``state=FAILED``;
``name=backup``; created between 7 and 6 days ago), ``/api/v1/queue``, ``/api/v1/metrics`` with
``window=day`` and ``week``, and ``/api/v1/system``. Each is timed ``--repeat`` times (for at most
15 s) on one kept-alive connection, as a browser asks, and on a new connection per request. It
prints p50/p90/max (ms) and a verdict per request, p90 < 100 ms both ways (the UI refreshes these
every 1-2 s); then EXPLAIN (ANALYZE, BUFFERS) of the queries behind each request with the same
parameters (``list_jobs`` also as the generic plan that a statement psycopg has prepared, after 5
runs on a connection, may switch to); and writes ``--json-dir``/history-<UTC time>.json.

The jobs: a name from ten (two contain "backup") plus a number; ``created_at`` uniform over the
14 days before 11 minutes ago; ~70 % SUCCEEDED, 15 % FAILED, 5 % TIMEOUT, 5 % CANCELLED, 5 %
PENDING (the 2 % that would be RUNNING are PENDING: a RUNNING job needs a live worker's lease or
the reaper ends it mid-run). A job that ran has a worker id, ``assigned_at`` 0-2 s after
creation, ``started_at`` 50 ms later and ran 0.1 s-10 min (log-uniform; TIMEOUT: its
``timeout_ms``). No ``job_attempts`` or ``audit_logs`` rows: no timed request reads them.

Every process it starts is stopped by PID (the server by SIGTERM, then its process group by
SIGKILL; PostgreSQL by ``EmbeddedPostgres.stop``), also on failure, Ctrl-C or SIGTERM. Exit
codes: 0 every target met; 3 one missed; 2 the benchmark could not run; 130 interrupted.
Run from the repository: ``.venv/bin/python bench/history.py`` (100,000 jobs, ~2 minutes), or
e.g. ``.venv/bin/python bench/history.py --jobs 20000 --repeat 10 --keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, LiteralString

import httpx
import psycopg
from benchlib import LOOPBACK, BenchError, free_port, note
from psycopg import sql

from hodei.store.embedded import EmbeddedPostgres, EmbeddedPostgresError
from hodei.store.migrations import migrate
from hodei.store.queries import load_queries

TARGET_P90_MS = 100.0
WARMUP, PAGE_SIZE, DEEP_PAGE, INSERT_BATCHES = 3, 50, 20, 4
BUDGET_S = 15.0  # per request and connection mode: the timed calls stop after this long
READY_TIMEOUT_S, STOP_TIMEOUT_S = 60.0, 20.0
KEEP_ALIVE = "keep-alive"
MODES: dict[str, dict[str, str]] = {KEEP_ALIVE: {}, "new connection": {"Connection": "close"}}
QUERIES = load_queries()
NAMES = [
    "nightly-backup", "db-backup-verify", "build-web", "build-api", "test-integration",
    "deploy-staging", "etl-orders", "report-daily", "image-scan", "lint",
]  # fmt: skip
WORKER_IDS = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 5)]

SEED_SQL = """
INSERT INTO jobs (id, name, state, command_type, script, env, cpu_cores, memory_mb, timeout_ms,
                  priority, labels, attempt, worker_id, run_after, exit_code, error_message,
                  created_at, assigned_at, started_at, finished_at)
SELECT gen_random_uuid(), base || '-' || g, state,
       CASE WHEN mod(g, 10) = 0 THEN 'PYTHON' ELSE 'SHELL' END,
       'exec ./ci/' || base || '.sh --run ' || g, jsonb_build_object('RUN_ID', g::text),
       0.25 * (1 + mod(g, 4)), 256 * (1 + mod(g, 8)),
       CASE WHEN state = 'TIMEOUT' THEN run_ms ELSE 900000 END,
       CASE mod(g, 10) WHEN 0 THEN 3 WHEN 1 THEN 1 ELSE 2 END,
       jsonb_build_object('team', (ARRAY['platform', 'data', 'web'])[1 + mod(g, 3)]),
       CASE WHEN ran THEN 1 ELSE 0 END, CASE WHEN ran THEN (%(workers)s::uuid[])[1 + mod(g, 4)] END,
       created_at, CASE state WHEN 'SUCCEEDED' THEN 0 WHEN 'FAILED' THEN 1 + mod(g, 3) END,
       CASE state WHEN 'FAILED' THEN 'exit code ' || (1 + mod(g, 3))
                  WHEN 'TIMEOUT' THEN 'timed out after ' || run_ms || ' ms' ELSE '' END,
       created_at, CASE WHEN ran THEN created_at + wait END,
       CASE WHEN ran THEN created_at + wait + interval '50 ms' END,
       CASE WHEN ran THEN created_at + wait + interval '50 ms' + run_ms * interval '1 ms' END
FROM (
    SELECT *, state <> 'PENDING' AS ran FROM (
        SELECT *, CASE WHEN r < 0.70 THEN 'SUCCEEDED' WHEN r < 0.85 THEN 'FAILED'
                       WHEN r < 0.90 THEN 'TIMEOUT' WHEN r < 0.95 THEN 'CANCELLED'
                       ELSE 'PENDING' END AS state
        FROM (
            SELECT g, random() AS r, random() * interval '2 s' AS wait,
                   (%(names)s::text[])[1 + floor(random() * cardinality(%(names)s::text[]))::int]
                       AS base,
                   clock_timestamp() - interval '11 minutes' - random() * interval '14 days'
                       AS created_at,
                   round(100 * power(6000, random()))::bigint AS run_ms  -- 0.1 s to 10 min
            FROM generate_series(%(first)s::int, %(last)s::int) AS g
        ) raw
    ) typed
) s
"""


@dataclass
class Probe:
    """One request the UI makes, and the named queries behind it (for EXPLAIN)."""

    label: str
    path: str
    params: dict[str, str]
    queries: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    deep: bool = False  # follow next_page_token to page DEEP_PAGE and time that request


def list_params(**given: Any) -> dict[str, Any]:
    """The parameters of ``list_jobs`` as JobRepository.page passes them (limit: page + 1)."""
    names = ("states", "name", "created_after", "created_before", "after_created_at", "after_id")
    return {name: given.get(name) for name in names} | {"limit": PAGE_SIZE + 1}


def probes(now: datetime) -> list[Probe]:
    after, before = now - timedelta(days=7), now - timedelta(days=6)
    jobs, page = "/api/v1/jobs", {"page_size": str(PAGE_SIZE)}

    def listing(label: str, extra: dict[str, str], **db: Any) -> Probe:
        return Probe(label, jobs, page | extra, [("list_jobs", list_params(**db))])

    def metrics(window: str, length: timedelta, step: timedelta) -> Probe:
        buckets = int(length / step)
        since = now - step * buckets  # about what the server uses (it aligns on the step)
        trend: dict[str, Any] = {"step": step, "buckets": buckets, "since": since}
        queries = [("metrics_overview", {"since": now - length}), ("metrics_trend", trend)]
        return Probe(f"metrics window={window}", "/api/v1/metrics", {"window": window}, queries)

    window = {"created_after": after.isoformat(), "created_before": before.isoformat()}
    return [
        listing("jobs first page", {}),
        Probe(f"jobs page {DEEP_PAGE} (that request)", jobs, page, deep=True),
        listing("jobs state=FAILED", {"state": "FAILED"}, states=["FAILED"]),
        listing("jobs name=backup", {"name": "backup"}, name="backup"),
        listing("jobs created 7..6 days ago", window, created_after=after, created_before=before),
        Probe("queue", "/api/v1/queue", {}, [("queue_status", {})]),
        metrics("day", timedelta(days=1), timedelta(hours=1)),
        metrics("week", timedelta(days=7), timedelta(hours=6)),
        Probe("system", "/api/v1/system", {}),
    ]


class Server:
    """The real ``hodei server``, leading its own process group, its output in a file."""

    def __init__(self, url: str, work_dir: Path) -> None:
        self.http_port, grpc_port = free_port(), free_port()
        self.base_url = f"http://{LOOPBACK}:{self.http_port}"
        self.log_file = work_dir / "server.log"
        argv = [sys.executable, "-m", "hodei", "server", "--database-url", url, "--bind", LOOPBACK]
        env = os.environ | {"HODEI_DEV_MODE": "1"}  # loopback only: no tokens
        argv += ["--grpc-port", str(grpc_port), "--http-port", str(self.http_port)]
        argv += ["--data-dir", str(work_dir / "hodei")]
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env=env,
            )  # fmt: skip

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_file.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, client: httpx.Client) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"the server exited while starting:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise BenchError(f"the server was not ready within {READY_TIMEOUT_S:g} s")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to its process group; waits for it."""
        note(f"stopping the server (pid {self.process.pid})…")
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


def seed(url: str, jobs: int) -> dict[str, Any]:
    """Insert the jobs, VACUUM (ANALYZE); returns what the table holds."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT setseed(0.42)")
        step = -(-jobs // INSERT_BATCHES)
        for first in range(1, jobs + 1, step):
            last = min(jobs, first + step - 1)
            started = time.perf_counter()
            params = {"names": NAMES, "workers": WORKER_IDS, "first": first, "last": last}
            conn.execute(SEED_SQL, params)
            note(f"  jobs {first:,}..{last:,} inserted in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) jobs")
        note(f"  VACUUM (ANALYZE) jobs in {time.perf_counter() - started:.1f} s")
        rows = conn.execute("SELECT state, count(*) FROM jobs GROUP BY state ORDER BY 2 DESC")
        by_state = {str(state): int(n) for state, n in rows.fetchall()}
        size, version = conn.execute(
            "SELECT pg_total_relation_size('jobs'), current_setting('server_version')"
        ).fetchone() or (0, "")
    mb = round(int(size) / 2**20, 1)
    return {"by_state": by_state, "jobs_table_with_indexes_mb": mb, "postgres_version": version}


def fetch(client: httpx.Client, path: str, params: dict[str, str]) -> tuple[float, Any, int]:
    started = time.perf_counter()
    response = client.get(path, params=params)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise BenchError(f"GET {path} {params}: {response.status_code} {response.text[:300]}")
    return elapsed_ms, response.json(), len(response.content)


def call(client: httpx.Client, probe: Probe) -> tuple[float, int, Any]:
    """One sample: (ms, bytes, for a deep probe the last job of the page before)."""
    if not probe.deep:
        elapsed_ms, _, size = fetch(client, probe.path, probe.params)
        return elapsed_ms, size, None
    params, before = dict(probe.params), None
    for number in range(1, DEEP_PAGE + 1):
        elapsed_ms, body, size = fetch(client, probe.path, params)
        if number < DEEP_PAGE:
            if not body["next_page_token"]:
                raise BenchError(f"only {number} pages of {PAGE_SIZE} jobs: use more --jobs")
            params["page_token"], before = body["next_page_token"], body["jobs"][-1]
    return elapsed_ms, size, before


def time_calls(client: httpx.Client, probe: Probe, repeat: int) -> tuple[dict[str, Any], int]:
    """At most ``repeat`` calls and about BUDGET_S seconds: the figures, the last size."""
    samples: list[float] = []
    size, deadline = 0, time.monotonic() + BUDGET_S
    while len(samples) < repeat and (not samples or time.monotonic() < deadline):
        elapsed_ms, size, _ = call(client, probe)
        samples.append(elapsed_ms)
    ordered = sorted(samples)

    def rank(q: float) -> float:  # nearest rank
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    figures = {"p50_ms": rank(0.5), "p90_ms": rank(0.9), "max_ms": ordered[-1]}
    return figures | {"calls": len(samples), "samples_ms": [round(s, 2) for s in samples]}, size


def scans(node: dict[str, Any]) -> list[str]:
    """The table and index scans of a plan: index or table, loops, rows its filter removed."""
    found = []
    if "Relation Name" in node:
        text = f"{node['Node Type']} {node.get('Index Name') or node['Relation Name']}"
        loops, removed = node.get("Actual Loops", 1), node.get("Rows Removed by Filter", 0)
        text += f" x{loops}" if loops > 1 else ""
        found.append(text + (f" (filter -{removed:,} rows)" if removed else ""))
    for child in node.get("Plans", []):
        found += scans(child)
    return found


def explain(conn: psycopg.Connection[Any], name: str, params: dict[str, Any], generic: bool) -> Any:
    """EXPLAIN (ANALYZE, BUFFERS) of a named query with these parameters as a custom plan, or
    (PREPARE, then EXECUTE with plan_cache_mode = force_generic_plan) as the generic one."""
    text = QUERIES[name]
    head: LiteralString = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
    if not generic:
        return conn.execute(head + text, params).fetchone()
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] not in order:
            order.append(match[1])
        return f"${order.index(match[1]) + 1}"

    conn.execute("DEALLOCATE ALL")
    # The product's own queries.sql, with $n for its placeholders: not input.
    conn.execute("PREPARE probe AS " + re.sub(r"%\((\w+)\)s", number, text).replace("%%", "%"))
    conn.execute("SET plan_cache_mode = force_generic_plan")
    try:
        args = sql.SQL(", ").join(sql.Literal(params[n]) for n in order)
        return conn.execute(sql.SQL(head + "EXECUTE probe ({})").format(args)).fetchone()
    finally:
        conn.execute("RESET plan_cache_mode")


def explain_all(url: str, plans: list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
    results = []
    with psycopg.connect(url, autocommit=True) as conn:
        for label, name, params in plans:
            for generic in (False, True) if name == "list_jobs" else (False,):
                row = explain(conn, name, params, generic)
                doc = row[0][0] if row else {}
                plan = doc.get("Plan", {})
                buffers = plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
                results.append(
                    {"request": label, "query": name, "plan": "generic" if generic else "custom"}
                    | {"execution_ms": doc.get("Execution Time"), "buffers": buffers}
                    | {"jit_ms": doc.get("JIT", {}).get("Timing", {}).get("Total", 0.0)}
                    | {"scans": scans(plan)}
                )
    return results


def benchmark(url: str, server: Server, repeat: int) -> dict[str, Any]:
    """Warm up, then time every probe in both connection modes; PostgreSQL's side after."""
    plan = probes(datetime.now(UTC))
    requests: dict[str, Any] = {p.label: {"path": p.path, "params": p.params} for p in plan}
    with contextlib.ExitStack() as stack:
        clients = {
            mode: stack.enter_context(httpx.Client(base_url=server.base_url, headers=headers))
            for mode, headers in MODES.items()
        }
        server.wait_ready(clients[KEEP_ALIVE])
        note(f"warming up: {WARMUP} calls of each of {len(plan)} requests…")
        for probe in plan:
            last = [call(clients[KEEP_ALIVE], probe)[2] for _ in range(WARMUP)][-1]
            if probe.deep and last is not None:
                cursor = {"after_created_at": last["created_at"], "after_id": last["id"]}
                probe.queries = [("list_jobs", list_params(**cursor))]
        for probe in plan:
            for mode, client in clients.items():
                note(f"timing {probe.label}, {mode}: up to {repeat} calls…")
                timed, requests[probe.label]["response_bytes"] = time_calls(client, probe, repeat)
                requests[probe.label][mode] = timed
    report: dict[str, Any] = {"requests": requests}
    note("EXPLAIN (ANALYZE, BUFFERS) of the queries behind them…")
    report["explain"] = explain_all(url, [(p.label, *q) for p in plan for q in p.queries])
    return report


def worst_p90(figures: dict[str, Any]) -> float:
    return max(float(figures[mode]["p90_ms"]) for mode in MODES)


def render(report: dict[str, Any]) -> str:
    data, target = report["data"], f"p90 < {TARGET_P90_MS:g} ms"
    states = ", ".join(f"{k} {v:,}" for k, v in data["by_state"].items())
    lines = [
        f"\nHodei History/Metrics: {sum(data['by_state'].values()):,} jobs ({states}); jobs "
        f"table + indexes {data['jobs_table_with_indexes_mb']} MB; PostgreSQL "
        f"{data['postgres_version']}; up to {report['repeat']} timed calls per request and "
        f"connection mode, after {WARMUP} warm-ups\n",
        f"{'':31} {'keep-alive connection':>24}  {'new connection per request':>26}",
        f"{'request (ms)':31} {'p50':>8}{'p90':>8}{'max':>8}  {'p50':>8}{'p90':>8}{'max':>8}  "
        f"{'bytes':>7}  {target}",
    ]
    for label, f in report["requests"].items():
        cells = "  ".join(
            "".join(f"{f[mode][k]:8.1f}" for k in ("p50_ms", "p90_ms", "max_ms")) for mode in MODES
        )
        verdict = "ok" if worst_p90(f) < TARGET_P90_MS else "MISSED"
        lines.append(f"{label:31} {cells}  {f['response_bytes']:7,}  {verdict}")
    lines += ["", "PostgreSQL EXPLAIN (ANALYZE, BUFFERS), same parameters (ms; JIT included):"]
    lines.append(f"{'request':31} {'query':16} {'plan':7} {'exec':>7} {'JIT':>6} {'buffers':>7}")
    for e in report["explain"]:
        lines.append(
            f"{e['request']:31} {e['query']:16} {e['plan']:7} {e['execution_ms']:7.1f} "
            f"{e['jit_ms']:6.1f} {e['buffers']:7,}  {'; '.join(e['scans'])}"
        )
    lines.append("")
    for label, f in report["requests"].items():
        p90 = ", ".join(f"{f[m]['p90_ms']:.1f} ms {m} ({f[m]['calls']} calls)" for m in MODES)
        verdict = "ok" if worst_p90(f) < TARGET_P90_MS else "MISSED"
        lines.append(f"VERDICT {label}: p90 {p90}; target {target}: {verdict}")
    return "\n".join(lines)


def raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    work_dir = Path(tempfile.mkdtemp(prefix="hodei-bench-history-"))
    work_dir.chmod(0o755)  # root runs this; PostgreSQL runs as `postgres`
    pg = EmbeddedPostgres(work_dir / "pg", fsync=True)
    server: Server | None = None
    signal.signal(signal.SIGTERM, raise_interrupt)
    report: dict[str, Any] = vars(args) | {"command": " ".join([sys.executable, *sys.argv])}
    report |= {"started_utc": datetime.now(UTC).isoformat(), "load_before": os.getloadavg()}
    started = time.monotonic()
    try:
        note(f"starting PostgreSQL (fsync on) in {work_dir}…")
        url = asyncio.run(pg.start())
        asyncio.run(migrate(url))
        note(f"inserting {args.jobs:,} jobs…")
        report["data"] = seed(url, args.jobs)
        note("starting hodei server…")
        server = Server(url, work_dir)
        report |= benchmark(url, server, args.repeat)
    except (BenchError, EmbeddedPostgresError, psycopg.Error, httpx.HTTPError, OSError) as error:
        note(f"benchmark failed: {error}")
        if server is not None:
            note(f"server log:\n{server.log_tail()}")
        return 2
    except KeyboardInterrupt:
        note("interrupted")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all(server, pg, work_dir, args.keep)
    report["wall_s"] = round(time.monotonic() - started, 1)
    report["load_after"] = os.getloadavg()
    print(render(report))
    args.json_dir.mkdir(parents=True, exist_ok=True)
    path = args.json_dir / f"history-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    note(f"\nwrote {path} (wall time {report['wall_s']} s)")
    missed = [k for k, f in report["requests"].items() if not worst_p90(f) < TARGET_P90_MS]
    return 3 if missed else 0


def stop_all(server: Server | None, pg: EmbeddedPostgres, work_dir: Path, keep: bool) -> None:
    """The server, then PostgreSQL (each by its PID), then the directory unless --keep."""
    if server is not None:
        server.stop()
    note("stopping PostgreSQL…")
    try:
        asyncio.run(pg.stop())
    except EmbeddedPostgresError as error:
        note(f"PostgreSQL did not stop: {error}")
        keep = True
    if keep:
        note(f"kept {work_dir}")
    else:
        shutil.rmtree(work_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--jobs", type=int, default=100_000, help="jobs to insert")
    add("--repeat", type=int, default=30, help="timed calls per request and connection mode")
    add("--keep", action="store_true", help="keep the temporary directory (cluster, server log)")
    add("--json-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    if args.jobs < (DEEP_PAGE + 1) * PAGE_SIZE or args.repeat < 1:
        parser.error(f"--jobs >= {(DEEP_PAGE + 1) * PAGE_SIZE} and --repeat >= 1")
    sys.exit(run(args))


if __name__ == "__main__":
    main()
