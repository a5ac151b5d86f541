"""Who a token belongs to: the check every protected request makes, in one query.

It reads through its own hot statements (db/statements.py) on a pooled driver
connection: one round trip, without the ORM, on every authenticated request.
With read replicas on, the same query reads the primary's WAL insert position:
the floor the request's reads need of a standby (db/replicas.py), without a
second round trip for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    String,
    bindparam,
    exists,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.sql.elements import Label

from service.config import Settings
from service.db.statements import HotConnection, HotQuery
from service.errors import AuthError
from service.models import (
    LIVE,
    NO_SESSION,
    USER_COLUMNS,
    AuthSession,
    RevokedToken,
    SessionRecord,
    User,
    UserRecord,
    utcnow,
)
from service.security.tokens import Identity, TokenType, decode_token

REVOKED = "Token has been revoked"

Connect = Callable[[], AbstractAsyncContextManager[HotConnection]]


@dataclass(frozen=True, slots=True)
class Caller:
    """A verified token and, when revocation is checked, its user's live row
    and its session's freshness and login method (read by the same query);
    with `read_position`, the primary's WAL insert position as that query ran."""

    identity: Identity
    user: UserRecord | None
    session: SessionRecord | None = None
    primary_position: str | None = None


async def identify(
    token: str,
    expected_type: TokenType,
    settings: Settings,
    *,
    connect: Connect,
    read_position: bool = False,
) -> Caller:
    """Decode the token; with revocation on, load and check its user and session
    (and, with `read_position`, the primary's WAL position in the same query).

    Revoked sessions and tokens, deleted and deactivated users all answer
    401 "Token has been revoked", and so do Flask-era tokens (no session)
    once ACCEPT_LEGACY_TOKENS is off: a Flask client logs in again on it.
    """
    identity = decode_token(
        token,
        key=settings.jwt_secret_key,
        expected_type=expected_type,
        fallbacks=settings.jwt_secret_key_fallbacks,
    )
    if identity.session_id is None and not settings.accept_legacy_tokens:
        raise AuthError(REVOKED, legacy_msg=True)
    if not settings.revocation_check:
        return Caller(identity, None)
    statements = POSITIONED if read_position else PLAIN
    async with connect() as connection:
        found = await _holder(
            connection,
            identity,
            touch_interval=settings.session_touch_interval,
            statements=statements,
        )
    if found is None:
        raise AuthError(REVOKED, legacy_msg=True)
    user, session, row = found
    # Admin rights come from the row, so a demoted admin loses them at once.
    return Caller(
        replace(identity, is_admin=user.is_admin),
        user,
        session,
        row["primary_position"] if read_position else None,
    )


async def token_holder(
    connection: HotConnection, identity: Identity, *, touch_interval: float
) -> tuple[UserRecord, SessionRecord] | None:
    """The token's live, active user and its session (NO_SESSION for a
    session-less token), if that session (or jti) is not revoked.

    Marks the session used at most once per `touch_interval` seconds.
    """
    found = await _holder(
        connection, identity, touch_interval=touch_interval, statements=PLAIN
    )
    return None if found is None else found[:2]


async def _holder(
    connection: HotConnection,
    identity: Identity,
    *,
    touch_interval: float,
    statements: tuple[HotQuery, HotQuery],
) -> tuple[UserRecord, SessionRecord, Mapping[str, Any]] | None:
    """token_holder's answer and the row it came from."""
    session_user, sessionless_user = statements
    if identity.session_id is not None:
        row = await session_user.fetch_row(
            connection, user_id=identity.user_id, session_id=identity.session_id
        )
        if row is None:
            return None
        await _touch(
            connection, identity.session_id, row["last_used_at"], touch_interval
        )
        session = SessionRecord(
            fresh_until=row["fresh_until"], auth_method=row["auth_method"]
        )
        return UserRecord.from_row(row), session, row
    row = await sessionless_user.fetch_row(
        connection, user_id=identity.user_id, jti=identity.jti
    )
    if row is None or _before_cutoff(
        identity, row["tokens_valid_after"], row["legacy_tokens_valid_after"]
    ):
        return None
    return UserRecord.from_row(row), NO_SESSION, row


async def _touch(
    connection: HotConnection,
    session_id: str,
    last_used_at: datetime,
    touch_interval: float,
) -> None:
    now = utcnow()
    # A write per request would cost a commit each; a minute's precision will do.
    if (now - last_used_at).total_seconds() >= touch_interval:
        await TOUCH_SESSION.execute(connection, session_id=session_id, now=now)


def _before_cutoff(
    identity: Identity, cutoff: datetime | None, legacy_cutoff: datetime | None
) -> bool:
    """A session-less (Flask-era) token issued before the user's last revoke-all,
    or at or before a logout (or an end of other sessions) of a Flask-era login."""
    issued_at = identity.issued_at
    return (
        cutoff is not None and issued_at < cutoff.replace(tzinfo=UTC).timestamp()
    ) or (
        legacy_cutoff is not None
        and issued_at <= legacy_cutoff.replace(tzinfo=UTC).timestamp()
    )


# The hot statements, planned once; each selects USER_COLUMNS, the fields of
# UserRecord. A revoked session, a session that started before the user's
# cut-off (a password change, reset, deactivation or delete that a login in
# flight raced), a deleted or a deactivated user all make the row disappear.
_SESSION_USER = (
    select(
        *USER_COLUMNS,
        AuthSession.last_used_at,
        AuthSession.fresh_until,
        AuthSession.auth_method,
    )
    .join(AuthSession, AuthSession.user_id == User.id)
    .where(
        User.id == bindparam("user_id"),
        AuthSession.id == bindparam("session_id"),
        AuthSession.revoked_at.is_(None),
        or_(
            User.tokens_valid_after.is_(None),
            AuthSession.created_at >= User.tokens_valid_after,
        ),
        LIVE,
    )
)
_SESSIONLESS_USER = select(
    *USER_COLUMNS, User.tokens_valid_after, User.legacy_tokens_valid_after
).where(
    User.id == bindparam("user_id"),
    LIVE,
    ~exists().where(RevokedToken.jti == bindparam("jti")),
)
# With read replicas (PostgreSQL only): the primary's insert position, read by
# the statement that reads the row (db/replicas.py's PRIMARY_POSITION_SQL's).
_PRIMARY_POSITION: Label[str] = literal_column(
    "pg_current_wal_insert_lsn()::text", String()
).label("primary_position")
SESSION_USER = HotQuery(_SESSION_USER)
SESSIONLESS_USER = HotQuery(_SESSIONLESS_USER)
PLAIN = (SESSION_USER, SESSIONLESS_USER)
POSITIONED = (
    HotQuery(_SESSION_USER.add_columns(_PRIMARY_POSITION)),
    HotQuery(_SESSIONLESS_USER.add_columns(_PRIMARY_POSITION)),
)
TOUCH_SESSION = HotQuery(
    update(AuthSession)
    .where(AuthSession.id == bindparam("session_id"))
    .values(last_used_at=bindparam("now"))
)
