"""Where a service's reads that decide nothing run: one seam, chosen by the app.

Display reads (lists, single users and posts, counts) go through a
`ReadRunner`, which may send them to a caught-up standby
(service/db/replicas.py). Everything that decides access or precedes a write
reads the service's own session on the primary instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from service.db.pagination import Page, paginate

T = TypeVar("T")


class ReadRunner(Protocol):
    async def run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """`work` on some connection; it may run more than once (a retry)."""
        ...


class OnSession:
    """Reads on the session's own connection: they see its uncommitted writes."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        return await work(await self.session.connection())


def orm_session(connection: AsyncConnection) -> AsyncSession:
    # Loaded objects outlive it: they are only serialized afterwards.
    return AsyncSession(bind=connection, expire_on_commit=False)


async def scalar_on(connection: AsyncConnection, statement: Select[Any]) -> Any:
    async with orm_session(connection) as session:
        return await session.scalar(statement)


async def page_on(
    connection: AsyncConnection,
    statement: Select[T],
    *,
    total: Select[int],
    page: int,
    per_page: int,
) -> Page[T]:
    async with orm_session(connection) as session:
        return await paginate(
            session, statement, total=total, page=page, per_page=per_page
        )
