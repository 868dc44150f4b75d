"""Who is asking, and what they may do: API tokens, roles, dev mode."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import IntEnum

from hodei.domain.errors import HodeiError, ValidationError

TOKEN_PREFIX = "hodei_"
DEV_TOKEN_PREFIX = "dev-"
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_DURATION = re.compile(r"^(\d{1,6})([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class Role(IntEnum):
    """What a token may do; each role may do all that the ones below it may."""

    VIEWER = 1  # read everything but secrets
    OPERATOR = 2  # also submit and cancel jobs
    ADMIN = 3  # also manage providers and tokens

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls[value.strip().upper()]
        except KeyError:
            raise ValidationError.single("role", "one of admin, operator, viewer") from None


class PermissionDeniedError(HodeiError):
    """The caller is known but its role does not allow this."""


class RateLimitedError(HodeiError):
    """Too many requests of this kind from this caller: try again after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the actor its audit events name, and its role."""

    actor: str
    role: Role
    token_id: str = ""  # empty for dev mode

    def require(self, role: Role, action: str) -> None:
        """Raises PermissionDeniedError when this caller's role is below ``role``."""
        if self.role < role:
            raise PermissionDeniedError(
                f"{self.actor} is {self.role.label}: {action} needs the {role.label} role"
            )


def new_token() -> str:
    """A fresh API token: 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What is stored of a token (it is random enough that a plain SHA-256 is the right hash)."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_token_name(name: str) -> str:
    """The name is the audit actor of what the token does: plain, and not the server's own."""
    if name.lower() == "system":
        raise ValidationError.single("name", "'system' is the server's own actor name")
    if not _TOKEN_NAME.fullmatch(name):
        raise ValidationError.single(
            "name", "1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )
    return name


def parse_duration(value: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s``."""
    match = _DURATION.match(value.strip())
    if match is None or int(match.group(1)) == 0:
        raise ValidationError.single(
            "expires", f"a positive duration such as 30d, 12h or 90m, not {value!r}"
        )
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
