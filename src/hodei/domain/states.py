"""The job state machine (DESIGN.md section 3): the one place that decides which changes are
legal."""

from __future__ import annotations

from enum import StrEnum

from hodei.domain.errors import InvalidTransitionError


class JobState(StrEnum):
    """Where a job is in its life."""

    PENDING = "PENDING"
    ASSIGNED = "ASSIGNED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"

    @property
    def is_final(self) -> bool:
        """True for the four end states, which never change again."""
        return self in FINAL_STATES

    @property
    def is_active(self) -> bool:
        """True while a worker holds the job (ASSIGNED or RUNNING)."""
        return self in (JobState.ASSIGNED, JobState.RUNNING)


FINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT}
)

_ALLOWED: dict[JobState, frozenset[JobState]] = {
    # PENDING -> FAILED: no worker or enabled provider can ever run the job (fail fast).
    JobState.PENDING: frozenset({JobState.ASSIGNED, JobState.CANCELLED, JobState.FAILED}),
    # ASSIGNED -> PENDING and RUNNING -> PENDING: a retry of a lost or failed attempt.
    JobState.ASSIGNED: frozenset(
        {
            JobState.RUNNING,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.TIMEOUT,
            JobState.PENDING,
        }
    ),
    JobState.RUNNING: frozenset(
        {
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.TIMEOUT,
            JobState.PENDING,
        }
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.TIMEOUT: frozenset(),
}


def can_transition(current: JobState, target: JobState) -> bool:
    """Whether the lifecycle allows going from ``current`` to ``target``."""
    return target in _ALLOWED[current]


def ensure_transition(current: JobState, target: JobState) -> None:
    """Raise InvalidTransitionError unless ``current -> target`` is allowed.

    Raises:
        InvalidTransitionError: the change is not part of the lifecycle.
    """
    if not can_transition(current, target):
        if current.is_final:
            raise InvalidTransitionError(f"the job is already {current.value}")
        raise InvalidTransitionError(f"a {current.value} job cannot become {target.value}")


def allowed_sources(target: JobState) -> frozenset[JobState]:
    """Every state from which ``target`` may be reached (used to guard SQL updates)."""
    return frozenset(state for state, targets in _ALLOWED.items() if target in targets)
