"""What follows an attempt: a retry, an end state, or a cancel (DESIGN.md section 3).

The database applies the same rule atomically (function ``hodei_state_after_attempt`` in
migration 0002); a test checks that both agree on every case.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from hodei.domain.states import JobState


class AttemptOutcome(StrEnum):
    """How one attempt ended."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    LOST = "LOST"  # its lease ran out: the worker vanished
    RELEASED = "RELEASED"  # handed back unfinished by a draining worker; not counted


def state_after_attempt(
    outcome: AttemptOutcome,
    *,
    allow_retry: bool,
    max_attempts: int,
    counted_attempts: int,
    cancel_requested: bool,
) -> JobState:
    """The job's next state. ``counted_attempts`` includes the one that just ended."""
    if outcome in (AttemptOutcome.SUCCEEDED, AttemptOutcome.CANCELLED):
        return JobState(outcome.value)
    if cancel_requested:
        return JobState.CANCELLED
    if outcome is AttemptOutcome.RELEASED:
        return JobState.PENDING
    if allow_retry and counted_attempts < max_attempts:
        return JobState.PENDING
    if outcome is AttemptOutcome.LOST:
        return JobState.FAILED
    return JobState(outcome.value)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff between attempts: base * 2^(attempt-1), at most cap, +-25% jitter."""

    base: timedelta = timedelta(seconds=1)
    cap: timedelta = timedelta(minutes=5)
