"""Declarative base and the Flask service's column mixins."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """Naive UTC, as the Flask service stored it in `timestamp without time zone`."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    # The Flask tables carry PostgreSQL's default constraint names (users_pkey,
    # posts_author_id_fkey); this convention reproduces them.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "%(table_name)s_%(column_0_name)s_fkey",
            "pk": "%(table_name)s_pkey",
        }
    )


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(
        DateTime, default=utcnow, nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime, default=utcnow, onupdate=utcnow, nullable=False
    )


class SoftDeleteMixin:
    deleted_at: Mapped[datetime | None] = mapped_column(
        DateTime, nullable=True, default=None
    )


def sqlite_unicode_lower(dbapi_connection: Any) -> None:
    """Make SQLite's lower() fold all of Unicode, as PostgreSQL's does.

    The case-insensitive email index is built on lower(email); SQLite's own
    lower() folds A-Z only, so "Ä" and "ä" would count as different addresses.
    """
    dbapi_connection.create_function(
        "lower",
        1,
        lambda text: None if text is None else str(text).lower(),
        deterministic=True,
    )
