"""Authentication of API callers: bearer tokens, dev mode, and per-token submission limits."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hodei.domain.auth import (
    DEV_TOKEN_PREFIX,
    TOKEN_PREFIX,
    Principal,
    RateLimitedError,
    Role,
    token_hash,
)
from hodei.domain.errors import AuthenticationError
from hodei.store.tokens import FoundToken, TokenRepository

# A looked-up token is trusted this long before it is read again (a revoke elsewhere takes
# effect within it; on this server at once).
CACHE_SECONDS = 5.0
DEV_ACTOR = "dev:local"  # dev mode, no token
MAX_TOKEN_CHARS = 100  # ours are 49


@dataclass
class _Bucket:
    tokens: float
    updated: float = field(default_factory=time.monotonic)


class Authenticator:
    """Turns an ``authorization`` header into a Principal, or says in one line why not."""

    def __init__(
        self,
        tokens: TokenRepository,
        *,
        dev_mode: bool,
        submit_rate_per_minute: float = 0.0,
        submit_burst: int = 0,
        limit_admins: bool = False,
    ) -> None:
        self._tokens = tokens
        self.dev_mode = dev_mode
        self._cache: dict[str, tuple[float, FoundToken | None]] = {}  # by token hash
        self._generation = 0
        self._rate = submit_rate_per_minute / 60.0
        self._burst = float(submit_burst or max(1, int(submit_rate_per_minute)))
        self._limit_admins = limit_admins
        self._buckets: dict[str, _Bucket] = {}

    async def authenticate(self, authorization: str | None) -> Principal:
        """The caller named by the header value (``Bearer TOKEN``).

        Raises:
            AuthenticationError: no token, a malformed header, an unknown, expired or revoked
                token, or a dev token outside dev mode.
        """
        if not authorization:
            if self.dev_mode:
                return Principal(DEV_ACTOR, Role.ADMIN)
            raise AuthenticationError("no token: send the header 'authorization: Bearer TOKEN'")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("the authorization header must be 'Bearer TOKEN'")
        if token.startswith(DEV_TOKEN_PREFIX):
            if not self.dev_mode:
                raise AuthenticationError(
                    "dev tokens are accepted only in dev mode (HODEI_DEV_MODE=1)"
                )
            return Principal(f"dev:{token.removeprefix(DEV_TOKEN_PREFIX) or 'local'}", Role.ADMIN)
        if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_CHARS:
            raise AuthenticationError("unknown token")  # not one of ours: no lookup, no cache
        found = await self._find(token)
        if found is None:
            raise AuthenticationError("unknown token")
        stored = found.token
        if stored.revoked_at is not None:
            raise AuthenticationError(f"token {stored.name} was revoked")
        if stored.expires_at is not None and stored.expires_at <= datetime.now(UTC):
            raise AuthenticationError(
                f"token {stored.name} expired at {stored.expires_at.isoformat(timespec='seconds')}"
            )
        return Principal(stored.name, stored.role, stored.id)

    async def _find(self, token: str) -> FoundToken | None:
        now = time.monotonic()
        key = token_hash(token)
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        generation = self._generation
        found = await self._tokens.find(token)
        if generation == self._generation:  # no revoke arrived while it was read
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now, found)
        return found

    def forget(self) -> None:
        """Drop every cached token (one was revoked), and any lookup still under way."""
        self._generation += 1
        self._cache.clear()

    def check_submit_rate(self, principal: Principal) -> None:
        """Count one submission against the caller's limit.

        Raises:
            RateLimitedError: over the limit, with when to try again.
        """
        if self._rate <= 0 or (principal.role is Role.ADMIN and not self._limit_admins):
            return
        now = time.monotonic()
        bucket = self._buckets.setdefault(principal.actor, _Bucket(self._burst, now))
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens < 1:
            retry_after = (1 - bucket.tokens) / self._rate
            raise RateLimitedError(
                f"{principal.actor} submits too fast: at most "
                f"{self._rate * 60:g} jobs a minute; try again in {retry_after:.1f} s",
                retry_after,
            )
        bucket.tokens -= 1
