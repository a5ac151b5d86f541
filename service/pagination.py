"""The page envelope every list answers with, and the two queries behind it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return (self.total + self.per_page - 1) // self.per_page

    def envelope(self, key: str) -> dict[str, Any]:
        return {
            key: self.items,
            "page": self.page,
            "per_page": self.per_page,
            "total": self.total,
            "pages": self.pages,
        }


def clamp(page: int, per_page: int) -> tuple[int, int]:
    """Out-of-range arguments get the nearest sensible page instead of a 500."""
    if per_page < 1:
        per_page = DEFAULT_PER_PAGE
    return max(page, 1), min(per_page, MAX_PER_PAGE)


async def paginate(
    session: AsyncSession, stmt: Select[T], *, page: int, per_page: int
) -> Page[T]:
    page, per_page = clamp(page, per_page)
    total = await session.scalar(
        select(func.count()).select_from(stmt.order_by(None).subquery())
    )
    total = total or 0
    offset = (page - 1) * per_page
    items: Sequence[T] = []
    if offset < total:
        items = (await session.scalars(stmt.limit(per_page).offset(offset))).all()
    return Page(items=items, page=page, per_page=per_page, total=total)
