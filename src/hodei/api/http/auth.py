"""Every request to ``/api/`` is authenticated (``Authorization: Bearer TOKEN``, else the web
UI's session cookie) and checked against the role its method and path need, WebSockets included.
A request authenticated by the cookie that changes something must carry the CSRF token too. The
web app's files, the probes, the API description and the session routes are public."""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import cookie_parser

from hodei.api.http.session import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE, SESSION_PATH, bearer
from hodei.api.principal import set_principal
from hodei.domain.auth import PermissionDeniedError, RateLimitedError, Role
from hodei.domain.errors import AuthenticationError, HodeiError
from hodei.services.auth import Authenticator

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_PUBLIC_API = ("/api/openapi.json", "/api/docs")
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


def required_role(method: str, path: str) -> Role | None:
    """The role a request needs; None for the public ones. Reads need a viewer, job changes
    an operator, anything else (providers, tokens) an admin."""
    if not path.startswith("/api/") or path.startswith(_PUBLIC_API):
        return None
    if path.rstrip("/") == SESSION_PATH:
        return None
    if method in _READS:
        return Role.VIEWER
    if path.startswith("/api/v1/jobs"):
        return Role.OPERATOR
    return Role.ADMIN


class AuthMiddleware:
    """ASGI middleware: admit the caller (or answer 401/403/429 with a one-line reason), then
    serve the request with the caller as the current principal."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self._app = app
        self._auth = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        method = "GET" if scope["type"] == "websocket" else scope["method"]
        path: str = scope["path"]
        role = required_role(method, path)
        if role is None:
            await self._app(scope, receive, send)
            return
        try:
            credentials = _credentials(scope, method)
            if credentials is None and self._auth.dev_mode:
                _check_dev_request(scope, method)
            if scope["type"] == "websocket":
                _check_same_origin(scope)
            principal = await self._auth.authenticate(credentials)
            principal.require(role, f"{method} {path}")
            if method == "POST" and path.rstrip("/") == "/api/v1/jobs":
                self._auth.check_submit_rate(principal)
        except HodeiError as error:
            await _refuse(scope, send, error)
            return
        set_principal(principal)
        await self._app(scope, receive, send)


def _credentials(scope: Scope, method: str) -> str | None:
    """The ``authorization`` header, else the session cookie as one (checking, for a change,
    that the CSRF header matches the CSRF cookie)."""
    header = _header(scope, b"authorization")
    if header:
        return header
    cookies = cookie_parser(_header(scope, b"cookie") or "")
    session = cookies.get(SESSION_COOKIE)
    if not session:
        return None
    if method not in _READS:
        expected = cookies.get(CSRF_COOKIE, "")
        sent = _header(scope, CSRF_HEADER.encode()) or ""
        if not expected or not secrets.compare_digest(sent.encode(), expected.encode()):
            raise PermissionDeniedError("missing or wrong CSRF token")
    return bearer(session)


def _host_name(host: str) -> str:
    """``localhost`` of ``localhost:8080``, ``[::1]`` of ``[::1]:8080``."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _check_dev_request(scope: Scope, method: str) -> None:
    """Dev mode admits a request with no credentials as an admin: only when it was addressed to
    a loopback name (a page whose name an attacker re-pointed at 127.0.0.1 sends its own name
    as Host) and, for a change, came from this server's own pages (Origin)."""
    host = (_header(scope, b"host") or "").strip().lower()
    if _host_name(host) not in _LOOPBACK_NAMES:
        raise PermissionDeniedError(
            "dev mode answers only requests addressed to 127.0.0.1 or localhost; use an API token"
        )
    if method not in _READS or scope["type"] == "websocket":
        _check_same_origin(scope)


def _check_same_origin(scope: Scope) -> None:
    """A browser names the page that sent a request in Origin: it must be this server."""
    origin = _header(scope, b"origin")
    if origin is None:
        return  # not a browser
    host = (_header(scope, b"host") or "").strip().lower()
    if origin.strip().lower().split("://", 1)[-1].rstrip("/") != host:
        raise PermissionDeniedError(f"a request from {origin} may not act on this server")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _refuse(scope: Scope, send: Send, error: HodeiError) -> None:
    status, headers = 403, [(b"content-type", b"application/json")]
    if isinstance(error, AuthenticationError):
        status = 401
        headers.append((b"www-authenticate", b'Bearer realm="hodei"'))
    elif isinstance(error, RateLimitedError):
        status = 429
        headers.append((b"retry-after", str(max(1, round(error.retry_after))).encode()))
    elif not isinstance(error, PermissionDeniedError):
        status = 500
    if scope["type"] == "websocket":
        # Refused before the handshake: the client sees an HTTP 403 for the upgrade.
        await send({"type": "websocket.close", "code": 1008, "reason": str(error)[:120]})
        return
    body = json.dumps({"detail": str(error)}).encode()
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
