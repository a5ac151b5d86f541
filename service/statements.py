"""HotQuery: a statement on a hot path, run on the driver itself where it can be."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Insert, Select, TextClause, TextualSelect, Update, text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from service.outages import is_connection_lost

_ASYNCPG = asyncpg_dialect()  # type: ignore[no-untyped-call]
Statement = TextClause | TextualSelect | Select[Any] | Insert | Update


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
        self, connection: AsyncConnection, **params: Any
    ) -> Mapping[str, Any] | None:
        if connection.dialect.driver == "asyncpg":
            record: Mapping[str, Any] | None = await self._on_driver(
                connection, "fetchrow", params
            )
            return record
        row = (await connection.execute(self.statement, params)).first()
        return None if row is None else dict(row._mapping)

    async def fetch_all(
        self, connection: AsyncConnection, **params: Any
    ) -> list[Mapping[str, Any]]:
        if connection.dialect.driver == "asyncpg":
            records: list[Mapping[str, Any]] = await self._on_driver(
                connection, "fetch", params
            )
            return records
        result = await connection.execute(self.statement, params)
        return [dict(row) for row in result.mappings()]

    async def execute(self, connection: AsyncConnection, **params: Any) -> None:
        if connection.dialect.driver == "asyncpg":
            await self._on_driver(connection, "execute", params)
        else:
            await connection.execute(self.statement, params)

    async def _on_driver(
        self, connection: AsyncConnection, method: str, params: dict[str, Any]
    ) -> Any:
        raw = await connection.get_raw_connection()
        args = [params[name] for name in self.names]
        try:
            return await getattr(raw.driver_connection, method)(self.asyncpg_sql, *args)
        except Exception as error:
            if not is_connection_lost(error):
                raise
            # SQLAlchemy never saw this error: without this it would pool the
            # broken connection again. The request answers 503 (outages.py).
            await connection.invalidate()
            raise ConnectionError(f"database connection lost: {error!r}") from error
