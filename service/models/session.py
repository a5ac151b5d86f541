"""Login sessions and revoked token ids: the state that makes logout real."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, utcnow


class AuthSession(Base):
    """One login: its access and refresh tokens carry its id as the `sid` claim."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(
        String(36), primary_key=True, default=lambda: str(uuid.uuid4())
    )
    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("users.id"), nullable=False, index=True
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime, default=utcnow, nullable=False
    )
    last_used_at: Mapped[datetime] = mapped_column(
        DateTime, default=utcnow, nullable=False
    )
    user_agent: Mapped[str | None] = mapped_column(String(255))
    ip: Mapped[str | None] = mapped_column(String(45))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Refresh rotation: the jti that may refresh now, and the one it replaced
    # (accepted again only within the grace window, to answer a duplicate).
    refresh_jti: Mapped[str | None] = mapped_column(String(36))
    previous_refresh_jti: Mapped[str | None] = mapped_column(String(36))
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Until when the session counts as freshly authenticated (a login, a second
    # factor, POST /auth/fresh), and how its login was made: NULL on the
    # sessions of before, which are stale password sessions.
    fresh_until: Mapped[datetime | None] = mapped_column(DateTime)
    auth_method: Mapped[str | None] = mapped_column(String(16))


class RevokedToken(Base):
    """A token without a session (minted by the Flask service) that logged out."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(36), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, index=True)


# How a session's login was made (AuthSession.auth_method); NULL is a password.
PASSWORD = "password"  # noqa: S105  (a method's name, not a secret)
TOTP = "totp"
RECOVERY_CODE = "recovery_code"
PASSKEY = "passkey"
SECOND_FACTORS = frozenset({TOTP, RECOVERY_CODE, PASSKEY})


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What the routes ask of the caller's session, read with the token check."""

    fresh_until: datetime | None
    auth_method: str | None

    def is_fresh(self, now: datetime) -> bool:
        return self.fresh_until is not None and now < self.fresh_until

    @property
    def used_second_factor(self) -> bool:
        return self.auth_method in SECOND_FACTORS


# A session-less (Flask-era) token: never fresh, a password login.
NO_SESSION = SessionRecord(fresh_until=None, auth_method=None)
