"""Passkeys: WebAuthn credentials, each a user's public key and its sign count."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, utcnow


class Passkey(Base):
    """One registered credential; the authenticator keeps its private key."""

    __tablename__ = "passkeys"

    id: Mapped[str] = mapped_column(
        String(36), primary_key=True, default=lambda: str(uuid.uuid4())
    )
    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("users.id"), nullable=False, index=True
    )
    # The authenticator's id for it (at most 1023 bytes, WebAuthn Level 3).
    credential_id: Mapped[bytes] = mapped_column(
        LargeBinary, nullable=False, unique=True
    )
    # COSE_Key bytes, as the attestation carried them.
    public_key: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    sign_count: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # The WebAuthn user handle the credential was created for: random, the same
    # for every passkey of a user, so an authenticator files them as one account.
    user_handle: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    # Comma-separated hints the browser gave (internal, hybrid, usb...).
    transports: Mapped[str | None] = mapped_column(String(255))
    backed_up: Mapped[bool] = mapped_column(nullable=False, default=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime, default=utcnow, nullable=False
    )
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
