"""Engine per app (created when serving starts), one AsyncSession per request."""

from __future__ import annotations

from typing import Any

from quart import Quart, current_app, g, request
from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
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
        app.extensions[READ_SESSIONMAKER_KEY] = make_sessionmaker(reads)

    @app.after_serving
    async def dispose_engine() -> None:
        engine: AsyncEngine | None = app.extensions.pop(ENGINE_KEY, None)
        if engine is not None:
            app.extensions.pop(SESSIONMAKER_KEY, None)
            app.extensions.pop(READ_SESSIONMAKER_KEY, None)
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
