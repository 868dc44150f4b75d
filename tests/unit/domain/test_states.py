from __future__ import annotations

import pytest

from hodei.domain.errors import InvalidTransitionError
from hodei.domain.states import FINAL_STATES, JobState, allowed_sources, ensure_transition

S = JobState


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.PENDING, S.ASSIGNED),
        (S.PENDING, S.CANCELLED),
        (S.PENDING, S.FAILED),
        (S.ASSIGNED, S.RUNNING),
        (S.ASSIGNED, S.FAILED),
        (S.ASSIGNED, S.CANCELLED),
        (S.ASSIGNED, S.TIMEOUT),
        (S.RUNNING, S.SUCCEEDED),
        (S.RUNNING, S.FAILED),
        (S.RUNNING, S.CANCELLED),
        (S.RUNNING, S.TIMEOUT),
        (S.RUNNING, S.PENDING),
        (S.ASSIGNED, S.PENDING),
    ],
)
def test_lifecycle_allows(current: JobState, target: JobState) -> None:
    ensure_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.PENDING, S.RUNNING),
        (S.PENDING, S.SUCCEEDED),
        (S.PENDING, S.TIMEOUT),
        (S.ASSIGNED, S.SUCCEEDED),
        (S.RUNNING, S.ASSIGNED),
    ],
)
def test_lifecycle_refuses_skipping_steps(current: JobState, target: JobState) -> None:
    with pytest.raises(InvalidTransitionError, match=f"cannot become {target.value}"):
        ensure_transition(current, target)


@pytest.mark.parametrize("final", sorted(FINAL_STATES))
def test_end_states_are_final(final: JobState) -> None:
    assert final.is_final
    for target in JobState:
        with pytest.raises(InvalidTransitionError, match=f"already {final.value}"):
            ensure_transition(final, target)


def test_only_assigned_and_running_are_active() -> None:
    assert {s for s in JobState if s.is_active} == {S.ASSIGNED, S.RUNNING}


def test_allowed_sources_of_running() -> None:
    assert allowed_sources(S.RUNNING) == {S.ASSIGNED}
    assert allowed_sources(S.CANCELLED) == {S.PENDING, S.ASSIGNED, S.RUNNING}
