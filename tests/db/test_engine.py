"""The hot-path statement runner, read slots, the password pool's priority, and
the database path of the suite's apps."""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import replace

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy import DateTime, select
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)

from service import create_app
from service.config import Settings
from service.db.engine import Database
from service.db.request import app_database, read_connection
from service.db.statements import HotQuery
from service.models import User
from service.security.passwords import PasswordHasher
from tests.factories import login_headers, make_user
from tests.support import AppMaker


def test_hot_query_numbers_named_parameters_for_asyncpg() -> None:
    query = HotQuery("SELECT CAST(:b AS text), :a, :b")

    assert query.names == ["b", "a"]
    assert query.asyncpg_sql == "SELECT CAST($1 AS text), $2, $1"


async def test_hot_query_rows_on_postgresql(connection: AsyncConnection) -> None:
    query = HotQuery(
        "SELECT CAST(:value AS int) + 1 AS answer, now() AS at", at=DateTime()
    )

    row = await query.fetch_row(connection, value=41)
    rows = await query.fetch_all(connection, value=1)

    assert row is not None
    assert row["answer"] == 42
    assert [r["answer"] for r in rows] == [2]


async def test_read_connections_wait_first_come_first_served(
    settings: Settings,
) -> None:
    # Two slots, six readers: never more than two connections out at once, and
    # those who asked last are served last (no one overtakes a waiter).
    app = create_app(replace(settings, db_pool_size=2, db_max_overflow=0))
    out, most, order = 0, 0, []

    async def reader(number: int) -> None:
        nonlocal out, most
        async with app.app_context(), read_connection():
            out += 1
            most = max(most, out)
            order.append(number)
            await asyncio.sleep(0.02)
            out -= 1

    async with app.test_app():
        tasks = []
        for number in range(6):
            tasks.append(asyncio.create_task(reader(number)))
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)

    assert most == 2
    assert sorted(order) == list(range(6))
    assert set(order[-2:]) == {4, 5}


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="POSIX priorities")
async def test_password_threads_run_at_the_configured_niceness() -> None:
    hasher = PasswordHasher(1, nice=7)
    try:
        loop = asyncio.get_running_loop()
        thread_nice = await loop.run_in_executor(
            hasher._pool,  # the pool is the thing under test
            lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
        )
    finally:
        hasher.shutdown()

    assert thread_nice == os.getpriority(os.PRIO_PROCESS, 0) + 7


# --- the suite's two apps: the default one, and the opt-in bound one ------------


async def test_the_default_app_reads_through_its_own_database(
    app: Quart, client: Client, session: AsyncSession, settings: Settings
) -> None:
    user = await make_user(session)
    headers = await login_headers(session, settings, user)
    database = app_database(app)
    slots = database.read_slots._value

    response = await client.get(f"/api/v1/users/{user.id}", headers=headers)

    assert response.status_code == 200
    assert (await response.get_json())["id"] == user.id
    # Production's path: its own engine, autocommit reads, every read slot back.
    assert isinstance(database, Database)
    assert database.read_sessions is not None  # autocommit reads of their own
    assert database.read_engine.get_execution_options()["isolation_level"] == (
        "AUTOCOMMIT"
    )
    assert database.read_slots._value == slots == settings.db_pool_size


async def test_a_bound_app_sees_the_tests_uncommitted_rows(
    make_bound_app: AppMaker,
    bound_database: Database,
    bound_sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    settings: Settings,
) -> None:
    async with bound_sessionmaker() as session:
        user = await make_user(session)
        headers = await login_headers(session, settings, user)

    async with make_bound_app() as app:
        assert app_database(app) is bound_database  # no engine of its own
        response = await app.test_client().get("/api/v1/users/me", headers=headers)

    assert response.status_code == 200
    assert (await response.get_json())["id"] == user.id
    async with engine.connect() as outside:  # the rows stay in the transaction
        assert await outside.scalar(select(User).where(User.id == user.id)) is None
