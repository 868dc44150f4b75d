"""Settings: defaults, and timings that contradict each other are refused with a clear error."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hodei.config import Settings


def test_the_defaults_are_consistent() -> None:
    settings = Settings()
    assert settings.lease_ttl_s >= 2 * settings.heartbeat_interval_s
    assert settings.timeout_grace_s > settings.cancel_grace_s


def test_a_lease_shorter_than_two_heartbeats_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"HODEI_LEASE_TTL_S \(3\) must be at least twice"):
        Settings(lease_ttl_s=3, heartbeat_interval_s=2)


def test_a_timeout_grace_within_the_kill_grace_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"HODEI_TIMEOUT_GRACE_S \(5\) must be greater"):
        Settings(timeout_grace_s=5, cancel_grace_s=10)


def test_the_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HODEI_LEASE_TTL_S", "3")
    monkeypatch.setenv("HODEI_HEARTBEAT_INTERVAL_S", "0.5")
    settings = Settings()
    assert (settings.lease_ttl_s, settings.heartbeat_interval_s) == (3, 0.5)
