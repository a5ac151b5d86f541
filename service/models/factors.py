"""Second factors: a user's TOTP, recovery codes, and the tokens of logins that
wait for their second factor."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, utcnow


class TotpFactor(Base):
    """One per user: pending until a code confirms it (`confirmed_at`)."""

    __tablename__ = "totp_factors"

    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("users.id"), primary_key=True
    )
    # AES-GCM under MFA_ENCRYPTION_KEY (security/totp.py's SecretBox).
    secret: Mapped[str] = mapped_column(String(255), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime, default=utcnow, nullable=False
    )
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The step of the last code accepted: a code works once, even within its step.
    last_used_step: Mapped[int | None] = mapped_column(BigInteger)


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("users.id"), nullable=False, index=True
    )
    # SHA-256 of the normalized code; the code itself is shown once.
    code_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime, default=utcnow, nullable=False
    )
    used_at: Mapped[datetime | None] = mapped_column(DateTime)


class MfaToken(Base):
    """A login whose password was right, waiting for its second factor."""

    __tablename__ = "mfa_tokens"

    # SHA-256 of the token the client holds.
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("users.id"), nullable=False, index=True
    )
    # HMAC of the password hash the login checked: a password changed since
    # makes the token worthless.
    password_fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime, default=utcnow, nullable=False
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, index=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime)
