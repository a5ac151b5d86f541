"""Who a token belongs to: the check every protected request makes, in one query."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import DateTime
from sqlalchemy.ext.asyncio import AsyncConnection

from service.config import Settings
from service.errors import AuthError
from service.models import USER_RECORD_TYPES, UserRecord, utcnow
from service.security.tokens import Identity, TokenType, decode_token
from service.statements import HotQuery

REVOKED = "Token has been revoked"


@dataclass(frozen=True, slots=True)
class Caller:
    """A verified token and, when revocation is checked, its user's live row."""

    identity: Identity
    user: UserRecord | None


async def identify(
    connection: AsyncConnection,
    token: str,
    expected_type: TokenType,
    settings: Settings,
) -> Caller:
    """Decode the token; with revocation on, load and check its user and session.

    Revoked sessions and tokens, deleted and deactivated users all answer
    401 "Token has been revoked".
    """
    identity = decode_token(
        token, key=settings.jwt_secret_key, expected_type=expected_type
    )
    if not settings.revocation_check:
        return Caller(identity, None)
    if identity.session_id is not None:
        row = await SESSION_USER.fetch_row(
            connection, user_id=identity.user_id, session_id=identity.session_id
        )
        if row is not None:
            await _touch(connection, identity.session_id, row["last_used_at"], settings)
    else:
        row = await SESSIONLESS_USER.fetch_row(
            connection, user_id=identity.user_id, jti=identity.jti
        )
        if row is not None and _before_cutoff(identity, row["tokens_valid_after"]):
            row = None
    if row is None:
        raise AuthError(REVOKED, legacy_msg=True)
    user = UserRecord.from_row(row)
    # Admin rights come from the row, so a demoted admin loses them at once.
    return Caller(replace(identity, is_admin=user.is_admin), user)


async def _touch(
    connection: AsyncConnection,
    session_id: str,
    last_used_at: datetime,
    settings: Settings,
) -> None:
    now = utcnow()
    # A write per request would cost a commit each; a minute's precision will do.
    if (now - last_used_at).total_seconds() >= settings.session_touch_interval:
        await TOUCH_SESSION.execute(connection, session_id=session_id, now=now)


def _before_cutoff(identity: Identity, cutoff: datetime | None) -> bool:
    """A session-less (Flask-era) token issued before the user's last revoke-all."""
    return (
        cutoff is not None
        and identity.issued_at < cutoff.replace(tzinfo=UTC).timestamp()
    )


_USER_COLUMNS = (
    "u.id, u.email, u.first_name, u.last_name, u.is_active, u.is_admin, "
    "u.created_at, u.updated_at"
)
# A revoked session, a deleted or a deactivated user all make the row disappear.
SESSION_USER = HotQuery(
    f"SELECT {_USER_COLUMNS}, s.last_used_at FROM users u "  # noqa: S608 - constants
    "JOIN auth_sessions s ON s.user_id = u.id "
    "WHERE u.id = :user_id AND s.id = :session_id AND s.revoked_at IS NULL "
    "AND u.deleted_at IS NULL AND u.is_active",
    **USER_RECORD_TYPES,
    last_used_at=DateTime(),
)
SESSIONLESS_USER = HotQuery(
    f"SELECT {_USER_COLUMNS}, u.tokens_valid_after FROM users u "  # noqa: S608 - constants
    "WHERE u.id = :user_id AND u.deleted_at IS NULL AND u.is_active "
    "AND NOT EXISTS (SELECT 1 FROM revoked_tokens r WHERE r.jti = :jti)",
    **USER_RECORD_TYPES,
    tokens_valid_after=DateTime(),
)
TOUCH_SESSION = HotQuery(
    "UPDATE auth_sessions SET last_used_at = :now WHERE id = :session_id"
)
