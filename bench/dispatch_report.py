"""The report of bench/dispatch.py: its figures as a table and as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dispatch_figures import StatementStat, Summary

LATENCY_TARGET_RATIO = 5.0
THROUGHPUT_TARGET = 300.0


@dataclass
class Report:
    options: dict[str, Any]
    floors: dict[str, Summary] = field(default_factory=dict)
    floors_sum_ms: float = float("nan")
    latency_hops: dict[str, Summary] = field(default_factory=dict)
    latency_client: dict[str, Summary] = field(default_factory=dict)
    latency_not_succeeded: int = 0
    latency_ratio_spaced: float = float("nan")
    latency_ratio_back_to_back: float = float("nan")
    throughput_jobs_per_s: float = float("nan")
    throughput_succeeded_per_s: float = float("nan")
    throughput_window_s: float = float("nan")
    throughput_intake_per_s: float = float("nan")
    throughput_assigned_during_intake_per_s: float = float("nan")
    throughput_assigned_after_intake_per_s: float = float("nan")
    throughput_submit_rpc: Summary | None = None
    throughput_hops: dict[str, Summary] = field(default_factory=dict)
    throughput_submitted: int = 0
    throughput_succeeded: int = 0
    throughput_not_succeeded_fraction: float = float("nan")
    throughput_errors: dict[str, int] = field(default_factory=dict)
    throughput_timed_out: bool = False
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    latency_statements: list[StatementStat] = field(default_factory=list)
    throughput_statements: list[StatementStat] = field(default_factory=list)
    jobs_table_stats: dict[str, str] = field(default_factory=dict)
    profile_top: dict[str, list[tuple[str, float]]] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.latency_not_succeeded > 0 or self.throughput_not_succeeded_fraction != 0

    @property
    def meets_targets(self) -> bool:
        return (
            self.latency_ratio_spaced <= LATENCY_TARGET_RATIO
            and self.throughput_jobs_per_s >= THROUGHPUT_TARGET
        )


def summary_row(label: str, s: Summary | None) -> str:
    if s is None:
        return f"  {label:<52} (not measured)"
    return f"  {label:<52} {s.n:>5} {s.p50:>9.2f} {s.p90:>9.2f} {s.p99:>9.2f} {s.max:>9.2f}"


def statement_rows(stats: Sequence[StatementStat], jobs: int) -> list[str]:
    if not stats:
        return ["  (pg_stat_statements off)"]
    lines = [f"  {'statement':<48} {'calls':>7} {'per job':>8} {'mean ms':>8} {'total ms':>9}"]
    lines += [
        f"  {s.name:<48} {s.calls:>7} {s.calls / jobs:>8.2f} {s.mean_ms:>8.3f} {s.total_ms:>9.1f}"
        for s in stats
    ]
    return lines


def render_latency(report: Report, header: str) -> list[str]:
    lines = ["", "Latency, one job at a time (server timestamps in PostgreSQL)", header]
    lines += [summary_row(label, s) for label, s in report.latency_hops.items()]
    lines += ["", "Latency, as the client saw it", header]
    lines += [summary_row(label, s) for label, s in report.latency_client.items()]
    verdict = "meets" if report.latency_ratio_spaced <= LATENCY_TARGET_RATIO else "MISSES"
    lines += [
        "",
        f"  p50 submit->RUNNING / floor p50 (spaced):       {report.latency_ratio_spaced:6.1f}x  "
        f"({verdict} the {LATENCY_TARGET_RATIO:g}x target)",
        f"  p50 submit->RUNNING / floor p50 (back-to-back): "
        f"{report.latency_ratio_back_to_back:6.1f}x",
        f"  latency jobs that did not succeed: {report.latency_not_succeeded}",
        "",
        "Statements executed in the latency phase (execution time inside PostgreSQL only)",
    ]
    jobs = int(report.options["latency_jobs"])
    return lines + statement_rows(report.latency_statements, jobs)


def render_throughput(report: Report, header: str) -> list[str]:
    lines = [
        "",
        f"Throughput: {report.throughput_submitted} jobs, "
        f"{report.options['submitters']} concurrent submitters",
        header,
        summary_row("QueueJob RPC under load", report.throughput_submit_rpc),
    ]
    lines += [summary_row(label, s) for label, s in report.throughput_hops.items()]
    verdict = "meets" if report.throughput_jobs_per_s >= THROUGHPUT_TARGET else "MISSES"
    lines += [
        "",
        f"  jobs/s, first JobCreated -> last result:  {report.throughput_jobs_per_s:8.1f}  "
        f"({verdict} the {THROUGHPUT_TARGET:g} jobs/s target) over "
        f"{report.throughput_window_s:.2f} s",
        f"  succeeded jobs/s:                          {report.throughput_succeeded_per_s:8.1f}",
        f"  jobs created/s while submitting:           {report.throughput_intake_per_s:8.1f}",
        "  jobs assigned/s while submitting:          "
        f"{report.throughput_assigned_during_intake_per_s:8.1f}",
        "  jobs assigned/s after the last submit:     "
        f"{report.throughput_assigned_after_intake_per_s:8.1f}",
        f"  did not succeed: {report.throughput_not_succeeded_fraction:.4%} "
        f"({report.throughput_submitted - report.throughput_succeeded} jobs; "
        f"submit errors {report.throughput_errors or 'none'}"
        f"{'; the phase ran out of time' if report.throughput_timed_out else ''})",
        f"  jobs table afterwards: {report.jobs_table_stats}",
        "",
        "CPU seconds during the throughput phase (ms per job in brackets)",
    ]
    for part, seconds in report.cpu_seconds.items():
        per_job = seconds / max(report.throughput_submitted, 1) * 1000
        lines.append(f"  {part:<16} {seconds:8.2f} s  ({per_job:6.2f} ms/job)")
    lines += ["", "Statements executed in the throughput phase (inside PostgreSQL only)"]
    lines += statement_rows(report.throughput_statements, max(report.throughput_submitted, 1))
    for target, frames in report.profile_top.items():
        lines += ["", f"py-spy --gil: Hodei frames holding most samples of {target} (inclusive)"]
        lines += [f"  {share:6.1%}  {frame}" for frame, share in frames]
    return lines


def render(report: Report) -> str:
    header = f"  {'':<52} {'n':>5} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'max ms':>9}"
    lines = ["", f"Floors ({report.options['spacing_ms']:g} ms spacing where spaced)", header]
    lines += [summary_row(label, s) for label, s in report.floors.items()]
    lines.append(
        f"  sum of p50 floors on the submit->RUNNING path (3 statements, 1 gRPC round trip, "
        f"1 spawn): {report.floors_sum_ms:.2f} ms"
    )
    lines += render_latency(report, header)
    lines += render_throughput(report, header)
    return "\n".join(lines)


def write_json(report: Report, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"dispatch-{stamp}.json"
    data = asdict(report)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path
