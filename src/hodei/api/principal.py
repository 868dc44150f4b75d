"""The caller of the API request being served, for both API layers (set by their auth)."""

from __future__ import annotations

import contextvars

from hodei.domain.auth import Principal

_PRINCIPAL: contextvars.ContextVar[Principal] = contextvars.ContextVar("hodei_principal")


def set_principal(principal: Principal) -> None:
    _PRINCIPAL.set(principal)


def current_principal() -> Principal:
    """The caller of the request being served."""
    return _PRINCIPAL.get()


def current_actor() -> str:
    """The actor audit events name for the request being served."""
    return _PRINCIPAL.get().actor
