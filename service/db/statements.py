"""HotQuery: a statement on a hot path, run on the driver itself where it can be."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Insert, Select, TextClause, TextualSelect, Update, text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from service.db.outages import is_connection_lost

_ASYNCPG = asyncpg_dialect()  # type: ignore[no-untyped-call]
Statement = TextClause | TextualSelect | Select[Any] | Insert | Update
# Where a HotQuery runs: a SQLAlchemy connection, or a pooled asyncpg connection
# checked out without one (Database.hot_connection, the token check's path).
HotConnection = AsyncConnection | PoolProxiedConnection


class HotQuery:
    """A statement on a hot path (every authenticated request runs one).

    On asyncpg it runs on the driver connection itself: asyncpg prepares it
    once per connection, and SQLAlchemy's statement and result machinery,
    about half the cost of a one-row read, is skipped. SQLAlchemy's asyncpg
    dialect compiles it once, here, to `$n` SQL and the parameters' order.
    Elsewhere (SQLite) it runs through SQLAlchemy. Either way inside whatever
    transaction the connection is in (none, on a read connection).
    """

    def __init__(self, statement: str | Statement, **column_types: Any) -> None:
        if isinstance(statement, str):
            statement = text(statement)
        if column_types and isinstance(statement, TextClause):
            statement = statement.columns(**column_types)
        self.statement: Statement = statement
        compiled = statement.compile(dialect=_ASYNCPG)
        self.asyncpg_sql = str(compiled)
        self.names = list(compiled.positiontup or ())

    async def fetch_row(
        self, connection: HotConnection, **params: Any
    ) -> Mapping[str, Any] | None:
        if on_driver(connection):
            record: Mapping[str, Any] | None = await self._on_driver(
                connection, "fetchrow", params
            )
            return record
        row = (await connection.execute(self.statement, params)).first()
        return None if row is None else dict(row._mapping)

    async def fetch_all(
        self, connection: HotConnection, **params: Any
    ) -> list[Mapping[str, Any]]:
        if on_driver(connection):
            records: list[Mapping[str, Any]] = await self._on_driver(
                connection, "fetch", params
            )
            return records
        result = await connection.execute(self.statement, params)
        return [dict(row) for row in result.mappings()]

    async def execute(self, connection: HotConnection, **params: Any) -> None:
        if on_driver(connection):
            await self._on_driver(connection, "execute", params)
        else:
            await connection.execute(self.statement, params)

    async def _on_driver(
        self, connection: HotConnection, method: str, params: dict[str, Any]
    ) -> Any:
        if isinstance(connection, AsyncConnection):
            raw = await connection.get_raw_connection()
        else:
            raw = connection
        args = [params[name] for name in self.names]
        try:
            return await getattr(raw.driver_connection, method)(self.asyncpg_sql, *args)
        except Exception as error:
            if not is_connection_lost(error):
                raise
            # SQLAlchemy never saw this error: without this it would pool the
            # broken connection again. The request answers 503 (outages.py).
            if isinstance(connection, AsyncConnection):
                await connection.invalidate()
            else:
                await greenlet_spawn(raw.invalidate)
            raise ConnectionError(f"database connection lost: {error!r}") from error


def on_driver(connection: HotConnection) -> bool:
    """A pooled driver connection is asyncpg's; SQLite's go through SQLAlchemy."""
    return (
        not isinstance(connection, AsyncConnection)
        or connection.dialect.driver == "asyncpg"
    )
