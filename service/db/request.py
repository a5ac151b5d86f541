"""Where a request gets its database: the app's Database (db/engine.py), opened
and closed with serving, and each request's sessions and read runner."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from quart import Quart, current_app
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from service.config import Settings
from service.db.engine import Database
from service.db.reads import OnSession
from service.db.replicas import RequestReads
from service.db.statements import HotConnection
from service.request_state import request_state

T = TypeVar("T")
DATABASE_KEY = "database"


def init_app(app: Quart, settings: Settings, database: Database | None = None) -> None:
    """Serve on `database` (a test's), or on one opened from the settings."""

    @app.before_serving
    async def open_database() -> None:
        app.extensions[DATABASE_KEY] = database or Database.open(settings)

    @app.after_serving
    async def close_database() -> None:
        opened: Database | None = app.extensions.pop(DATABASE_KEY, None)
        # The app closes only what it opened; a given database is its giver's.
        if opened is not None and database is None:
            await opened.close()

    @app.teardown_appcontext
    async def close_sessions(_exc: BaseException | None) -> None:
        state = request_state()
        for session in (state.session, state.read_session):
            if session is not None:
                await session.close()
        state.session = state.read_session = None


def app_database(app: Quart) -> Database:
    """The database `app` serves on (only while it serves)."""
    database: Database = app.extensions[DATABASE_KEY]
    return database


def serving_database(app: Quart) -> Database | None:
    """The database `app` serves on, None when it does not serve."""
    database: Database | None = app.extensions.get(DATABASE_KEY)
    return database


def request_session(*, readonly: bool = False) -> AsyncSession:
    """This request's session, made on first use (no connection until a query).

    `readonly=True`: an autocommit session. Once the request has a
    transactional session, its reads use that one too, so they see its writes.
    """
    state = request_state()
    if state.session is not None:
        return state.session
    database = app_database(current_app)
    if readonly and database.read_sessions is not None:
        if state.read_session is None:
            state.read_session = database.read_sessions()
        return state.read_session
    state.session = database.sessions()
    return state.session


def read_connection() -> AbstractAsyncContextManager[AsyncConnection]:
    """A connection for this request's quick reads, held only around them."""
    return app_database(current_app).read_connection()


def hot_connection() -> AbstractAsyncContextManager[HotConnection]:
    """The token check's connection (Database.hot_connection)."""
    return app_database(current_app).hot_connection()


class RequestReadRunner:
    """Where this request's reads that decide nothing run, chosen when they run.

    A caught-up standby, when there are replicas (db/replicas.py); the
    primary's pooled read connections otherwise. A request that has begun
    writing reads its own transaction: it must see what it wrote.
    """

    async def run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        state = request_state()
        if state.session is not None:
            return await OnSession(state.session).run(work)
        if state.reads is None:
            database = app_database(current_app)
            state.reads = RequestReads(
                database.replicas, database.read_connection, state.primary_position
            )
        return await state.reads.run(work)


request_reads = RequestReadRunner()
