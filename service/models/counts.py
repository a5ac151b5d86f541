"""Counters the triggers of migration 0005 keep: a list's `total` without a scan."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class RowCount(Base):
    """One share of a counter; the counter is the sum of its shares."""

    __tablename__ = "row_counts"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    # PostgreSQL: the pid of the backend that writes this share (0: folded).
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, nullable=False)


class PostCount(Base):
    """A user's posts, and whether they are visible (the user is live)."""

    __tablename__ = "post_counts"

    # No foreign key: the triggers on users add and remove the rows.
    author_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    posts: Mapped[int] = mapped_column(BigInteger, nullable=False)
    author_live: Mapped[bool] = mapped_column(Boolean, nullable=False)
