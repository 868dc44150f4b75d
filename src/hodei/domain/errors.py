"""The error hierarchy. Each layer raises these; the API layers map them to status codes once."""

from __future__ import annotations

from dataclasses import dataclass


class HodeiError(Exception):
    """Root of every error Hodei raises on purpose.

    Attributes:
        retryable: whether the same call may succeed if simply tried again later.
    """

    retryable: bool = False


@dataclass(frozen=True)
class FieldViolation:
    """One broken rule on one field, e.g. ``resources.cpu_cores``: ``must be at most 256``."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ValidationError(HodeiError):
    """Input that breaks a rule. Names every field at fault."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        if not violations:
            raise ValueError("a ValidationError needs at least one violation")
        self.violations = tuple(violations)
        super().__init__("; ".join(str(v) for v in violations))

    @classmethod
    def single(cls, field: str, message: str) -> ValidationError:
        """A validation error about one field."""
        return cls([FieldViolation(field, message)])


def unstorable(value: str) -> str | None:
    """Why ``value`` cannot be kept as PostgreSQL text (a NUL, a lone surrogate), or None."""
    if "\x00" in value:
        return "must not contain a NUL character"
    try:
        value.encode()
    except UnicodeEncodeError:
        return "must be valid Unicode text (no lone surrogates)"
    return None


def storable(field: str, value: str) -> str:
    """``value`` when PostgreSQL can take it as text (e.g. a search term), else ValidationError."""
    if problem := unstorable(value):
        raise ValidationError.single(field, problem)
    return value


class NotFoundError(HodeiError):
    """The thing named does not exist."""


class ConflictError(HodeiError):
    """The request contradicts the current state (e.g. cancelling a finished job)."""


class FailedPreconditionError(HodeiError):
    """The system cannot do this now as configured (e.g. no provider can run the job)."""


class InvalidTransitionError(ConflictError):
    """A job state change that the lifecycle does not allow."""


class StaleAttemptError(ConflictError):
    """A message about an attempt that is no longer the job's current one (fencing)."""


class AuthenticationError(HodeiError):
    """Missing, wrong, used or expired credentials."""


class UnavailableError(HodeiError):
    """A dependency (database, worker) cannot be reached right now."""

    retryable = True
