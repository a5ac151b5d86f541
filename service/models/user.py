"""Users: the Flask service's `users` table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    DateTime,
    Index,
    Integer,
    String,
    and_,
    func,
    text,
)
from sqlalchemy.orm import Mapped, WriteOnlyMapped, mapped_column, relationship

from service.models.base import Base, SoftDeleteMixin, TimestampMixin

if TYPE_CHECKING:
    from service.models.post import Post


class User(TimestampMixin, SoftDeleteMixin, Base):
    __tablename__ = "users"
    __table_args__ = (
        Index("ix_users_email", "email"),
        # One live account per address, whatever its letter case; soft-deleted
        # rows keep their address without blocking a new registration.
        Index(
            "uq_users_email_lower_live",
            func.lower(text("email")),
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
        Index("ix_users_created_at_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(255), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    first_name: Mapped[str] = mapped_column(String(100), nullable=False)
    last_name: Mapped[str] = mapped_column(String(100), nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Tokens issued before this moment are revoked (password change, reset):
    # the per-user cut-off that also covers Flask-era tokens without a session.
    tokens_valid_after: Mapped[datetime | None] = mapped_column(DateTime)
    # When the address was proven (verification or a confirmed change); NULL:
    # never, as for every Flask-era user. Not part of the User resource.
    email_verified_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Session-less (Flask-era) tokens issued at or before this moment are
    # revoked: a Flask-era logout, or ending all other sessions, sets it.
    # Sessions are untouched by it (they have their own revocation).
    legacy_tokens_valid_after: Mapped[datetime | None] = mapped_column(DateTime)

    posts: WriteOnlyMapped[Post] = relationship(back_populates="author")

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email}>"

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


# Soft-deleted users are gone for every read; deactivated ones can still be
# looked at, but neither log in nor act with a token they hold.
NOT_DELETED: ColumnElement[bool] = User.deleted_at.is_(None)
LIVE: ColumnElement[bool] = and_(NOT_DELETED, User.is_active)


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user as every route dumps it: plain values, nothing to load later.

    Its fields are the columns user reads select (USER_COLUMNS).
    """

    id: int
    email: str
    first_name: str
    last_name: str
    is_active: bool
    is_admin: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> UserRecord:
        return cls(
            id=row["id"],
            email=row["email"],
            first_name=row["first_name"],
            last_name=row["last_name"],
            is_active=bool(row["is_active"]),
            is_admin=bool(row["is_admin"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


USER_COLUMNS = tuple(getattr(User, name) for name in UserRecord.__dataclass_fields__)
