"""Fixtures: one migrated PostgreSQL database, a rolled-back transaction per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from service import create_app
from service.api.database import SESSIONMAKER_KEY
from service.config import Settings
from service.models import User
from tests.factories import headers_for, make_user
from tests.support import drop_database, migrate, recreate_database

# Per run, so parallel runs on one server never drop each other's database.
TEST_DATABASE = f"service_test_{os.getpid()}"
JWT_KEY = "test-jwt-secret-key-0123456789-abcdefghij"


@pytest.fixture(scope="session")
async def engine() -> AsyncIterator[AsyncEngine]:
    url = await recreate_database(TEST_DATABASE)
    engine = create_async_engine(url)
    await migrate(engine)
    yield engine
    await engine.dispose()
    await drop_database(TEST_DATABASE)


@pytest.fixture(scope="session")
def database_url(engine: AsyncEngine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(
        env="testing",
        database_url=database_url,
        jwt_secret_key=JWT_KEY,
        secret_key="test-secret-key-0123456789-abcdefghijkl",
        password_hash_threads=2,
    )


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as connection:
        transaction = await connection.begin()
        yield connection
        await transaction.rollback()


@pytest.fixture
def sessionmaker(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    # Services commit as in production; each commit only releases a savepoint
    # inside the test's transaction, which is rolled back at the end.
    return async_sessionmaker(
        bind=connection,
        expire_on_commit=False,
        join_transaction_mode="create_savepoint",
    )


@pytest.fixture
async def session(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


@pytest.fixture
async def app(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Quart]:
    app = create_app(settings)
    app.extensions[SESSIONMAKER_KEY] = sessionmaker
    async with app.test_app():
        yield app


@pytest.fixture
def client(app: Quart) -> Client:
    return app.test_client()


@pytest.fixture
async def user(session: AsyncSession) -> User:
    return await make_user(
        session, email="test@example.com", first_name="Test", last_name="User"
    )


@pytest.fixture
async def admin_user(session: AsyncSession) -> User:
    return await make_user(
        session,
        email="admin@example.com",
        first_name="Admin",
        last_name="User",
        is_admin=True,
    )


@pytest.fixture
def user_headers(settings: Settings, user: User) -> dict[str, str]:
    return headers_for(settings, user)


@pytest.fixture
def admin_headers(settings: Settings, admin_user: User) -> dict[str, str]:
    return headers_for(settings, admin_user)
