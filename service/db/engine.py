"""The engine: its options, and Database, the sessions and connections reads and
writes get (opened and closed with serving by db/request.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from sqlalchemy import event
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
from sqlalchemy.util import greenlet_spawn

from service.config import Settings, prepare_sqlite_file
from service.db.replicas import ReplicaSet, create_replica_set
from service.db.statements import HotConnection
from service.models.base import sqlite_unicode_lower


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


DEFAULT_READ_SLOTS = 10


def make_sessionmaker(bind: Any) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(bind=bind, expire_on_commit=False)


class Database:
    """One process's engine, and the ways to it.

    Writes get transactional sessions. Reads get autocommit sessions and
    connections: no BEGIN and ROLLBACK, two round trips fewer per request
    (their few writes, a session's "last used", are single statements).
    `Database.open(settings)` makes the engines; a test binds the app to its own
    engine with `Database(engine)` or to its transaction with `on_connection`.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        read_slots: int = DEFAULT_READ_SLOTS,
        replicas: ReplicaSet | None = None,
    ) -> None:
        self.engine = engine
        # Hot standbys for the reads that decide nothing (DATABASE_REPLICA_URL).
        self.replicas = replicas
        self.sessions = make_sessionmaker(engine)
        self.read_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        # None: reads share the request's one session (a test's transaction).
        self.read_sessions: async_sessionmaker[AsyncSession] | None = make_sessionmaker(
            self.read_engine
        )
        # asyncio.Queue, under SQLAlchemy's pool, lets a newcomer take a
        # connection a woken waiter was about to get, and the waiter queues
        # again at the back: at 1000 connections some requests starved past 5 s.
        # asyncio.Semaphore is first come, first served; with at most pool_size
        # reads checked out, the pool's own queue never has to wait.
        self.read_slots = asyncio.Semaphore(max(read_slots, 1))

    @classmethod
    def on_connection(cls, connection: AsyncConnection) -> Database:
        """Every session and read on `connection`, inside the transaction its
        owner holds (a test's: requests see its rows, and it rolls them back).
        Services commit as in production; each commit releases a savepoint."""
        return _OnConnection(connection)

    @classmethod
    def open(cls, settings: Settings) -> Database:
        engine = create_engine(settings)
        replicas = None
        if settings.database_replica_urls:
            replicas = create_replica_set(
                engine.execution_options(isolation_level="AUTOCOMMIT"),
                {
                    url: create_engine(replace(settings, database_url=url))
                    for url in settings.database_replica_urls
                },
                max_lag=settings.db_replica_max_lag,
                ttl=settings.db_replica_status_ttl,
                check_timeout=min(settings.db_connect_timeout, 1.0),
            )
        return cls(engine, read_slots=settings.db_pool_size, replicas=replicas)

    @asynccontextmanager
    async def read_connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one quick autocommit read, back in the pool right after.

        Holding it only around the query keeps the pool small under high
        concurrency.
        """
        async with self.read_slots, self.read_engine.connect() as connection:
            yield connection

    @asynccontextmanager
    async def hot_connection(self) -> AsyncIterator[HotConnection]:
        """A connection for the token check, which every request makes.

        On asyncpg it is the pool's own: SQLAlchemy's Connection around it (its
        execution options, events and result machinery) cost about 40 us of a
        request's CPU, and HotQuery needs none of it. Elsewhere, a read connection.
        """
        if self.engine.dialect.driver != "asyncpg":
            async with self.read_connection() as connection:
                yield connection
            return
        async with self.read_slots:
            pooled = await self.engine.raw_connection()
            try:
                yield pooled
            finally:
                # Back to the pool; its reset on return is SQLAlchemy's, on
                # the greenlet the adapter needs.
                await greenlet_spawn(pooled.close)

    async def close(self) -> None:
        if self.replicas is not None:
            await self.replicas.dispose()
        await self.engine.dispose()


class _OnConnection(Database):
    def __init__(self, connection: AsyncConnection) -> None:
        super().__init__(connection.engine)
        self.connection = connection
        self.sessions = async_sessionmaker(
            bind=connection,
            expire_on_commit=False,
            join_transaction_mode="create_savepoint",
        )
        # Two sessions on one connection would roll back each other's savepoints.
        self.read_sessions = None

    @asynccontextmanager
    async def read_connection(self) -> AsyncIterator[AsyncConnection]:
        yield self.connection

    @asynccontextmanager
    async def hot_connection(self) -> AsyncIterator[HotConnection]:
        yield self.connection

    async def close(self) -> None:
        return None  # the connection is its owner's to close


def _replace_closed_connection(
    dbapi_connection: Any, _record: ConnectionPoolEntry, _proxy: Any
) -> None:
    """A pre-ping that costs no round trip.

    asyncpg marks a pooled connection closed as soon as the server ends it
    (restart, failover, pg_terminate_backend): the pool then connects anew
    instead of handing out a dead connection. SQLAlchemy's pool_pre_ping
    costs up to three round trips per checkout (BEGIN, ping, ROLLBACK).
    """
    if dbapi_connection.driver_connection.is_closed():
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
