"""Where a request gets its database: the one place that picks each request's
session and read connection (service/db/engine.py holds the engine)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from quart import Quart, current_app, g
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from service.config import Settings
from service.db.engine import Database
from service.db.reads import OnSession, ReadRunner
from service.db.replicas import ReplicaSet, RequestReads
from service.db.statements import HotConnection

DATABASE_KEY = "database"
ENGINE_KEY = "db_engine"
# Set before serving, it binds every session to that sessionmaker (a test's
# connection) and no engine is created.
SESSIONMAKER_KEY = "db_sessionmaker"


def init_app(app: Quart, settings: Settings) -> None:
    @app.before_serving
    async def open_database() -> None:
        if SESSIONMAKER_KEY in app.extensions:  # a test bound it to its connection
            return
        database = Database.open(settings)
        app.extensions[DATABASE_KEY] = database
        app.extensions[ENGINE_KEY] = database.engine
        app.extensions[SESSIONMAKER_KEY] = database.sessions

    @app.after_serving
    async def close_database() -> None:
        database: Database | None = app.extensions.pop(DATABASE_KEY, None)
        if database is not None:
            app.extensions.pop(ENGINE_KEY, None)
            app.extensions.pop(SESSIONMAKER_KEY, None)
            await database.close()

    @app.teardown_appcontext
    async def close_sessions(_exc: BaseException | None) -> None:
        sessions: dict[bool, AsyncSession] | None = g.pop("db_sessions", None)
        for session in (sessions or {}).values():
            await session.close()


def request_session(*, readonly: bool = False) -> AsyncSession:
    """This request's session, made on first use (no connection until a query).

    `readonly=True`: an autocommit session. Once the request has a
    transactional session, its reads use that one too, so they see its writes.
    """
    database: Database | None = current_app.extensions.get(DATABASE_KEY)
    if database is None:
        readonly = False  # bound to a test's connection: one session on it
    sessions: dict[bool, AsyncSession] | None = g.get("db_sessions")
    if sessions is None:
        sessions = g.db_sessions = {}
    if readonly and False in sessions:
        return sessions[False]
    session = sessions.get(readonly)
    if session is None:
        if database is not None:
            session = database.session(readonly=readonly)
        else:
            bound: async_sessionmaker[AsyncSession]
            bound = current_app.extensions[SESSIONMAKER_KEY]
            session = bound()
        sessions[readonly] = session
    return session


@asynccontextmanager
async def read_connection() -> AsyncIterator[AsyncConnection]:
    """A connection for this request's quick reads, held only around them.

    A test that bound the sessionmaker to its own connection gets that
    connection, so requests see the test's rows.
    """
    database: Database | None = current_app.extensions.get(DATABASE_KEY)
    if database is None:
        bind = current_app.extensions[SESSIONMAKER_KEY].kw["bind"]
        yield (
            bind
            if isinstance(bind, AsyncConnection)
            else await request_session(readonly=True).connection()
        )
        return
    async with database.read_connection() as connection:
        yield connection


@asynccontextmanager
async def hot_connection() -> AsyncIterator[HotConnection]:
    """The token check's connection (Database.hot_connection); in a test bound to
    its own connection, that one."""
    database: Database | None = current_app.extensions.get(DATABASE_KEY)
    if database is None:
        async with read_connection() as connection:
            yield connection
        return
    async with database.hot_connection() as connection:
        yield connection


def replica_set() -> ReplicaSet | None:
    database: Database | None = current_app.extensions.get(DATABASE_KEY)
    return database.replicas if database is not None else None


def request_reads() -> ReadRunner:
    """Where this request's reads that decide nothing run.

    A caught-up standby, when there are replicas (service/db/replicas.py); the
    primary's pooled read connections otherwise. A request that has begun
    writing reads its own transaction: it must see what it wrote.
    """
    sessions: dict[bool, AsyncSession] | None = g.get("db_sessions")
    if sessions and False in sessions:
        return OnSession(sessions[False])
    reads: RequestReads | None = g.get("db_reads")
    if reads is None:
        reads = g.db_reads = RequestReads(replica_set(), read_connection)
    return reads
