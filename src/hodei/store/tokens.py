"""API tokens in PostgreSQL: only their hashes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from hodei.domain.auth import Role, check_token_name, new_token, token_hash
from hodei.domain.errors import ConflictError, NotFoundError
from hodei.store.database import Database, Row


@dataclass(frozen=True)
class ApiToken:
    """A token as stored: never the token itself."""

    id: str
    name: str
    role: Role
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class FoundToken:
    token: ApiToken
    now: datetime  # the database's clock when it was looked up


def _token(row: Row) -> ApiToken:
    return ApiToken(
        id=str(row["id"]),
        name=row["name"],
        role=Role.parse(row["role"]),
        created_by=row["created_by"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


class TokenRepository:
    """Create, find, list and revoke API tokens (each change audited)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self, name: str, role: Role, actor: str, expires_in: timedelta | None = None
    ) -> tuple[str, ApiToken]:
        """A new token, and what is stored of it. The token is shown once and never again.

        Raises:
            ValidationError: a bad name.
            ConflictError: a token of that name exists.
        """
        token = new_token()
        expires_at = None
        if expires_in is not None:
            row = await self._db.fetch_one("database_now")
            assert row is not None
            expires_at = row["now"] + expires_in
        row = await self._db.fetch_one(
            "create_api_token",
            {
                "id": str(uuid.uuid4()),
                "name": check_token_name(name),
                "role": role.label,
                "token_hash": token_hash(token),
                "actor": actor,
                "expires_at": expires_at,
            },
        )
        if row is None:
            raise ConflictError(f"a token named {name!r} exists; revoke it or pick another name")
        return token, _token(row)

    async def find(self, token: str) -> FoundToken | None:
        """The stored token for this token, if any (revoked and expired ones too)."""
        row = await self._db.fetch_one("find_api_token", {"token_hash": token_hash(token)})
        return None if row is None else FoundToken(_token(row), row["now"])

    async def list(self) -> list[ApiToken]:
        return [_token(row) for row in await self._db.fetch_all("list_api_tokens")]

    async def revoke(self, name: str, actor: str) -> ApiToken:
        """Raises NotFoundError when no token of that name is active."""
        row = await self._db.fetch_one("revoke_api_token", {"name": name, "actor": actor})
        if row is None:
            raise NotFoundError(f"no active token named {name!r}")
        return _token(row)
