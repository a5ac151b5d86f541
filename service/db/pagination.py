"""The page envelope every list answers with, and the queries behind it.

A list's `total` is never a scan: migration 0005's triggers keep exact counts
in `row_counts` (a few rows summed) and `post_counts` (one row per author),
committed with the rows they count.

Pages are LIMIT/OFFSET, as in the Flask service: the database walks the index
past `offset` rows, so a deep page costs in proportion to its depth, about
0.8 ms per 1,000 rows skipped here (page 50,000 of 20 on 1,000,000 users:
~0.8 s on a quiet machine). DB_COMMAND_TIMEOUT (5 s) bounds it: a page that
takes longer answers 503. Pages past the end cost nothing: the count decides
first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import BigInteger, Select, cast, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import PostCount, RowCount

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100

T = TypeVar("T")

USERS_LIVE = "users_live"
USERS_ACTIVE = "users_active"
POSTS_VISIBLE = "posts_visible"


def counter(name: str) -> Select[int]:
    """The exact count `name` (a constant above): the sum of its few shares."""
    if name not in (USERS_LIVE, USERS_ACTIVE, POSTS_VISIBLE):
        raise ValueError(f"no such counter: {name!r}")
    # Written into the SQL, not bound: a HotQuery takes only its caller's values.
    total = func.coalesce(func.sum(RowCount.n), literal_column("0"))
    return select(cast(total, BigInteger)).where(
        RowCount.name == literal_column(f"'{name}'")
    )


def posts_of(author_id: int) -> Select[int]:
    """The author's visible posts: none while the author is soft-deleted."""
    return select(PostCount.posts).where(
        PostCount.author_id == author_id, PostCount.author_live
    )


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
    session: AsyncSession,
    stmt: Select[T],
    *,
    total: Select[int],
    page: int,
    per_page: int,
) -> Page[T]:
    """`stmt`'s page; `total` counts its rows (`counter()`, `posts_of()`)."""
    page, per_page = clamp(page, per_page)
    counted = int(await session.scalar(total) or 0)
    offset = (page - 1) * per_page
    items: Sequence[T] = []
    if offset < counted:
        items = (await session.scalars(stmt.limit(per_page).offset(offset))).all()
    return Page(items=items, page=page, per_page=per_page, total=counted)
