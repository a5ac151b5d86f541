"""Server-side sessions: one per login, revocable, with optional refresh rotation."""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    DateTime,
    String,
    Update,
    case,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from service.errors import NotFoundError
from service.models import (
    LIVE,
    NO_SESSION,
    AuthSession,
    RevokedToken,
    SessionRecord,
    User,
    utcnow,
)
from service.models.session import PASSWORD, SECOND_FACTORS

# What str(uuid.uuid4()) gives, and any shorter run of its characters.
SESSION_ID = re.compile(r"[0-9A-Za-z-]{1,36}")


class SessionService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def open(
        self,
        *,
        user_id: int,
        password_hash: str,
        user_agent: str | None,
        ip: str | None,
        fresh_for: int,
        auth_method: str = PASSWORD,
    ) -> str | None:
        """Insert a session for the user only while the row still holds
        `password_hash` and is active and not deleted: one INSERT ... SELECT,
        the user's row locked FOR SHARE on PostgreSQL (a password change,
        reset, deactivation or delete either waits for this session and then
        revokes it, or commits first and leaves this SELECT nothing). SQLite
        runs one writer at a time. Fresh for `fresh_for` seconds. The session
        id, or None when the account is no longer as the credential check saw
        it; the caller commits.
        """
        session_id = str(uuid.uuid4())
        now = utcnow()
        # Never before the user's cut-off as this row has it: a clock behind
        # the one that wrote the cut-off must not make a new session look old.
        started = case(
            (User.tokens_valid_after > literal(now, DateTime), User.tokens_valid_after),
            else_=literal(now, DateTime),
        )
        row = (
            select(
                literal(session_id, String),
                User.id,
                started,
                started,
                literal((user_agent or None) and user_agent[:255], String),
                literal(ip[:45] if ip else None, String),
                literal(successor_jti(session_id), String),
                literal(now + timedelta(seconds=fresh_for), DateTime),
                literal(auth_method, String),
            )
            .where(User.id == user_id, User.password_hash == password_hash, LIVE)
            .with_for_update(read=True)
        )
        result = await self.session.execute(
            insert(AuthSession).from_select(
                [
                    AuthSession.id,
                    AuthSession.user_id,
                    AuthSession.created_at,
                    AuthSession.last_used_at,
                    AuthSession.user_agent,
                    AuthSession.ip,
                    AuthSession.refresh_jti,
                    AuthSession.fresh_until,
                    AuthSession.auth_method,
                ],
                row,
            )
        )
        return session_id if result.rowcount == 1 else None  # type: ignore[attr-defined]

    async def live(self, user_id: int, *, max_idle: int) -> Sequence[AuthSession]:
        """Sessions not revoked and used within `max_idle` seconds."""
        return (
            await self.session.scalars(
                select(AuthSession)
                .where(
                    AuthSession.user_id == user_id,
                    AuthSession.revoked_at.is_(None),
                    AuthSession.last_used_at > utcnow() - timedelta(seconds=max_idle),
                )
                .order_by(AuthSession.last_used_at.desc(), AuthSession.id)
            )
        ).all()

    async def record(self, session_id: str | None, *, user_id: int) -> SessionRecord:
        """A live session's freshness and login method; NO_SESSION for none."""
        if session_id is None:
            return NO_SESSION
        row = (
            await self.session.execute(
                select(AuthSession.fresh_until, AuthSession.auth_method).where(
                    AuthSession.id == session_id,
                    AuthSession.user_id == user_id,
                    AuthSession.revoked_at.is_(None),
                )
            )
        ).first()
        if row is None:
            return NO_SESSION
        return SessionRecord(fresh_until=row.fresh_until, auth_method=row.auth_method)

    async def refresh_freshness(
        self,
        session_id: str,
        *,
        user_id: int,
        fresh_for: int,
        second_factor: str | None = None,
    ) -> bool:
        """Commits; the live session counts as freshly authenticated again, and
        as one that used a second factor once `second_factor` was used."""
        values: dict[str, object] = {
            "fresh_until": utcnow() + timedelta(seconds=fresh_for)
        }
        if second_factor is not None:
            values["auth_method"] = case(
                (
                    AuthSession.auth_method.in_(sorted(SECOND_FACTORS)),
                    AuthSession.auth_method,
                ),
                else_=literal(second_factor, String),
            )
        result = await self.session.execute(
            _live_session(session_id, AuthSession.user_id == user_id).values(**values)
        )
        await self.session.commit()
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def revoke(self, session_id: str, *, user_id: int) -> None:
        """Commits; 404 for a session that is not a live one of the user.

        An id the service cannot have made (a NUL, text past the column's 36
        characters) names no session: answered before it reaches the database.
        """
        if not SESSION_ID.fullmatch(session_id) or not await self.end(
            session_id, user_id=user_id
        ):
            raise NotFoundError("Session not found")

    async def end(self, session_id: str, *, user_id: int) -> bool:
        """Commits; False when there was no live session of the user to end."""
        result = await self.session.execute(
            _live_session(session_id, AuthSession.user_id == user_id).values(
                revoked_at=utcnow()
            )
        )
        await self.session.commit()
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def revoke_all(self, user: User) -> None:
        """Every session, and through the per-user cut-off every session-less
        (Flask-era) token; the caller commits."""
        user.tokens_valid_after = utcnow()
        await self._revoke_sessions(user.id)

    async def revoke_others(self, user: User, *, keep: str | None) -> None:
        """Commits; also ends every session-less (Flask-era) token of the user,
        a Flask-era caller's own included (it has no session to keep)."""
        user.legacy_tokens_valid_after = utcnow()
        await self._revoke_sessions(user.id, keep=keep)
        await self.session.commit()

    async def end_legacy_tokens(self, user_id: int) -> None:
        """Ends every session-less (Flask-era) token of the user issued until
        now: a Flask-era logout cannot name its refresh token, so the cut-off
        ends it with the access token. The caller commits."""
        await self.session.execute(
            update(User)
            .where(User.id == user_id)
            .values(legacy_tokens_valid_after=utcnow())
            .execution_options(synchronize_session=False)
        )

    async def _revoke_sessions(self, user_id: int, *, keep: str | None = None) -> None:
        stmt = update(AuthSession).where(
            AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None)
        )
        if keep is not None:
            stmt = stmt.where(AuthSession.id != keep)
        await self.session.execute(stmt.values(revoked_at=utcnow()))

    async def revoke_token(self, jti: str, *, expires_at: int) -> None:
        """Block one session-less token until it expires anyway; the caller commits."""
        expiry = datetime.fromtimestamp(expires_at, UTC).replace(tzinfo=None)
        try:
            async with self.session.begin_nested():
                self.session.add(RevokedToken(jti=jti, expires_at=expiry))
        except IntegrityError:
            pass  # a concurrent logout of the same token got there first

    async def rotate(
        self, session_id: str, old_jti: str, *, grace: int
    ) -> tuple[str, int] | None:
        """Retire `old_jti` atomically: (successor jti, its iat), or None on reuse.

        Replicas racing on one refresh token run the same conditional UPDATE; one
        wins, and a loser inside the grace window re-derives the same successor.
        """
        issued_at = int(datetime.now(UTC).timestamp())
        rotated_at = datetime.fromtimestamp(issued_at, UTC).replace(tzinfo=None)
        successor = successor_jti(old_jti)
        result = await self.session.execute(
            _live_session(session_id, AuthSession.refresh_jti == old_jti).values(
                refresh_jti=successor,
                previous_refresh_jti=old_jti,
                rotated_at=rotated_at,
            )
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            await self.session.commit()
            return successor, issued_at
        row = await self.session.get(AuthSession, session_id, populate_existing=True)
        if (
            row is not None
            and row.revoked_at is None
            and row.previous_refresh_jti == old_jti
            and row.rotated_at is not None
            and row.rotated_at >= utcnow() - timedelta(seconds=grace)
        ):
            rotated = row.rotated_at.replace(tzinfo=UTC)
            return successor, int(rotated.timestamp())
        # A retired token came back: whoever holds it may be a thief, so the
        # whole session (every token descended from its login) ends.
        await self.session.execute(
            _live_session(session_id).values(revoked_at=utcnow())
        )
        await self.session.commit()
        return None


def _live_session(session_id: str, *conditions: ColumnElement[bool]) -> Update:
    """An UPDATE of the session while it is not revoked (and `conditions` hold)."""
    return update(AuthSession).where(
        AuthSession.id == session_id, *conditions, AuthSession.revoked_at.is_(None)
    )


def successor_jti(old_jti: str) -> str:
    """Derived, not random, so every replica computes the same successor."""
    digest = hmac.new(b"refresh-rotation", old_jti.encode(), hashlib.sha256).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))
