"""The web UI's session: a token entered once on the login page, kept in an HttpOnly cookie.

``POST /api/v1/session`` checks the token and sets two cookies: ``hodei_session`` (the token,
HttpOnly) and ``hodei_csrf`` (random, readable by the page). A request authenticated by the
session cookie that changes something must echo ``hodei_csrf`` in the ``X-CSRF-Token`` header
(see ``hodei.api.http.auth``): another site can make the browser send the cookie, but cannot read
it. The cookies are SameSite=Strict as well, and Secure when the request came over TLS."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from hodei.api.http.models import Problem
from hodei.domain.auth import Principal
from hodei.domain.errors import AuthenticationError
from hodei.services.registry import Services

SESSION_COOKIE = "hodei_session"
CSRF_COOKIE = "hodei_csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_PATH = "/api/v1/session"

_REFUSED: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "No valid token"},
}


class SessionIn(BaseModel):
    """The token to log in with."""

    token: str = Field(max_length=1000)


class SessionOut(BaseModel):
    """Who the session is, what they may do, and whether the server needs no token at all."""

    actor: str
    role: str
    dev_mode: bool


def bearer(token: str) -> str:
    """The ``authorization`` header value that carries ``token``."""
    return f"Bearer {token}"


def session_routes(services: Services) -> APIRouter:
    """Log in, who am I, log out. Public routes (the middleware lets them through): each
    authenticates what it needs itself."""
    router = APIRouter()
    auth = services.auth

    def described(principal: Principal) -> SessionOut:
        return SessionOut(actor=principal.actor, role=principal.role.label, dev_mode=auth.dev_mode)

    @router.post(SESSION_PATH, tags=["session"], responses=_REFUSED)
    async def log_in(body: SessionIn, request: Request, response: Response) -> SessionOut:
        """Check a token and keep it in the session cookies."""
        token = body.token.strip()
        if not token:
            raise AuthenticationError("enter a token")
        principal = await auth.authenticate(bearer(token))
        secure = request.url.scheme == "https"
        response.set_cookie(
            SESSION_COOKIE, token, path="/", httponly=True, samesite="strict", secure=secure
        )
        response.set_cookie(
            CSRF_COOKIE,
            secrets.token_urlsafe(32),
            path="/",
            httponly=False,
            samesite="strict",
            secure=secure,
        )
        return described(principal)

    @router.get(SESSION_PATH, tags=["session"], responses=_REFUSED)
    async def who_am_i(request: Request) -> SessionOut:
        """The caller: by its ``authorization`` header, else its session cookie (in dev mode,
        neither is needed)."""
        header = request.headers.get("authorization")
        cookie = request.cookies.get(SESSION_COOKIE)
        if not header and cookie:
            header = bearer(cookie)
        return described(await auth.authenticate(header))

    @router.delete(SESSION_PATH, status_code=204, tags=["session"])
    async def log_out(request: Request) -> Response:
        """Forget the session cookies."""
        response = Response(status_code=204)
        secure = request.url.scheme == "https"
        for name, http_only in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
            response.delete_cookie(
                name, path="/", httponly=http_only, samesite="strict", secure=secure
            )
        return response

    return router
