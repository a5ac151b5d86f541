"""Engine per app (created when serving starts), one AsyncSession per request."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from quart import Quart, current_app, g, request
from sqlalchemy import event, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from service.config import Settings, prepare_sqlite_file
from service.models.base import sqlite_unicode_lower

SESSIONMAKER_KEY = "db_sessionmaker"
READ_SESSIONMAKER_KEY = "db_read_sessionmaker"
READ_ENGINE_KEY = "db_read_engine"
READ_SLOTS_KEY = "db_read_slots"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ENGINE_KEY = "db_engine"


def create_engine(settings: Settings) -> AsyncEngine:
    if settings.is_sqlite:
        prepare_sqlite_file(settings.database_url)
        engine = create_async_engine(settings.database_url)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        return engine
    options: dict[str, Any] = {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
        "pool_pre_ping": settings.db_pool_pre_ping,
        # A stopped database must fail requests fast (503), not hang them.
        # A database that stops answering (a frozen host, a partition) must not
        # hold requests forever either: no statement here runs for seconds.
        "connect_args": {
            "timeout": settings.db_connect_timeout,
            "command_timeout": settings.db_command_timeout,
        },
    }
    url = settings.database_url
    if not settings.db_statement_cache:
        # PgBouncer in transaction mode: both caches must be off.
        options["connect_args"]["statement_cache_size"] = 0
        url += ("&" if "?" in url else "?") + "prepared_statement_cache_size=0"
    engine = create_async_engine(url, **options)
    event.listen(engine.sync_engine, "checkout", _replace_closed_connection)
    return engine


def make_sessionmaker(bind: Any) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(bind=bind, expire_on_commit=False)


def init_app(app: Quart, settings: Settings) -> None:
    @app.before_serving
    async def create_engine_for_app() -> None:
        if SESSIONMAKER_KEY in app.extensions:  # a test bound it to its connection
            return
        engine = create_engine(settings)
        app.extensions[ENGINE_KEY] = engine
        app.extensions[SESSIONMAKER_KEY] = make_sessionmaker(engine)
        # Reads run without BEGIN and ROLLBACK: two round trips fewer per request.
        # Their few writes (a session's "last used") are single statements.
        reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        app.extensions[READ_ENGINE_KEY] = reads
        # asyncio.Queue, under SQLAlchemy's pool, lets a newcomer take a
        # connection a woken waiter was about to get, and the waiter queues
        # again at the back: at 1000 connections some requests starved past 5 s.
        # asyncio.Semaphore is first come, first served; with at most pool_size
        # reads checked out, the pool's own queue never has to wait.
        app.extensions[READ_SLOTS_KEY] = asyncio.Semaphore(
            max(settings.db_pool_size, 1)
        )
        app.extensions[READ_SESSIONMAKER_KEY] = make_sessionmaker(reads)

    @app.after_serving
    async def dispose_engine() -> None:
        engine: AsyncEngine | None = app.extensions.pop(ENGINE_KEY, None)
        if engine is not None:
            app.extensions.pop(SESSIONMAKER_KEY, None)
            app.extensions.pop(READ_SESSIONMAKER_KEY, None)
            app.extensions.pop(READ_ENGINE_KEY, None)
            app.extensions.pop(READ_SLOTS_KEY, None)
            await engine.dispose()

    @app.teardown_appcontext
    async def close_session(_exc: BaseException | None) -> None:
        session: AsyncSession | None = g.pop("db_session", None)
        if session is not None:
            await session.close()


def request_session() -> AsyncSession:
    """The current request's session, opened on first use (autocommit for reads)."""
    session: AsyncSession | None = g.get("db_session")
    if session is None:
        extensions = current_app.extensions
        sessionmaker: async_sessionmaker[AsyncSession] = extensions[SESSIONMAKER_KEY]
        if request.method in READ_METHODS:
            sessionmaker = extensions.get(READ_SESSIONMAKER_KEY, sessionmaker)
        session = g.db_session = sessionmaker()
    return session


@asynccontextmanager
async def read_connection() -> AsyncIterator[AsyncConnection]:
    """A connection for one quick autocommit read, back in the pool right after.

    Holding it only around the query keeps the pool small under high
    concurrency. A test that bound the sessionmaker to its own connection gets
    that connection, so requests see the test's rows.
    """
    engine: AsyncEngine | None = current_app.extensions.get(READ_ENGINE_KEY)
    if engine is None:
        bind = current_app.extensions[SESSIONMAKER_KEY].kw["bind"]
        yield (
            bind
            if isinstance(bind, AsyncConnection)
            else await request_session().connection()
        )
        return
    slots: asyncio.Semaphore = current_app.extensions[READ_SLOTS_KEY]
    async with slots, engine.connect() as connection:
        yield connection


class HotQuery:
    """A statement on a hot path (every authenticated request runs one).

    On asyncpg it runs on the driver connection itself: asyncpg prepares it
    once per connection, and SQLAlchemy's statement and result machinery,
    about half the cost of a one-row read, is skipped. Elsewhere (SQLite) it
    runs as `text()` through SQLAlchemy. Either way inside whatever
    transaction the connection is in (none, on `read_connection()`).
    """

    def __init__(self, sql: str, **column_types: Any) -> None:
        self.names = list(dict.fromkeys(_PARAMETER.findall(sql)))
        self.asyncpg_sql = _PARAMETER.sub(
            lambda m: f"${self.names.index(m[1]) + 1}", sql
        )
        self.statement = (
            text(sql).columns(**column_types) if column_types else text(sql)
        )

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
            if not _connection_lost(error):
                raise
            # SQLAlchemy never saw this error: without this it would pool the
            # broken connection again. The request answers 503 (errors.py).
            await connection.invalidate()
            raise ConnectionError(f"database connection lost: {error!r}") from error


def _connection_lost(error: Exception) -> bool:
    if isinstance(
        error,
        asyncpg.InterfaceError
        | asyncpg.exceptions.InternalClientError
        | asyncpg.PostgresConnectionError
        | OSError,
    ):
        return True
    sqlstate = getattr(error, "sqlstate", None) or ""
    return sqlstate[:2] in ("53", "57")


# `:name`, but not the `::` of a PostgreSQL cast.
_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")


def _replace_closed_connection(
    dbapi_connection: Any, _record: ConnectionPoolEntry, _proxy: Any
) -> None:
    """A pre-ping that costs no round trip.

    asyncpg marks a pooled connection closed as soon as the server ends it
    (restart, failover, pg_terminate_backend): the pool then connects anew
    instead of handing out a dead connection. SQLAlchemy's pool_pre_ping
    costs up to three round trips per checkout (BEGIN, ping, ROLLBACK).
    """
    if dbapi_connection._connection.is_closed():
        raise DisconnectionError("connection closed by the server")


def _sqlite_on_connect(
    dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry
) -> None:
    sqlite_unicode_lower(dbapi_connection)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
