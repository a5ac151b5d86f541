"""Fixtures: one migrated PostgreSQL database; each test commits its rows, which
are deleted after it (or, opting in, runs in one rolled-back transaction)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, nullcontext
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings
from quart import Blueprint, Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)

from service import create_app
from service.config import Settings
from service.db.engine import Database, make_sessionmaker
from service.models import User
from service.models.base import Base
from service.security.passwords import PasswordHasher
from service.services.users import UserService
from tests import backends
from tests.conformance import AnswerLog
from tests.factories import login_headers, make_user, utcnow
from tests.mailbox import SmtpServer, smtp_server
from tests.support import (
    AppMaker,
    AppStarter,
    InstancesMaker,
    Names,
    migrated_database,
)

# The suite that gates CI gives the same result run after run: Hypothesis draws
# the same examples every time (`ci`). `make diff` explores with fresh random
# examples (`explore`); what it finds is kept as an explicit @example.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", derandomize=False, database=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Per run, so parallel runs on one server never drop each other's database.
TEST_DATABASE = f"service_test_{os.getpid()}"
JWT_KEY = "test-jwt-secret-key-0123456789-abcdefghij"


@pytest.fixture(scope="module")
def measurements(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Numbers worth a note, printed after the module whatever the verbosity,
    each line after the module's name."""
    lines: list[str] = []
    yield lines
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    if reporter is None or not lines:
        return
    name = request.module.__name__.rpartition(".")[2]
    with capture.global_and_fixture_disabled() if capture else nullcontext():
        reporter.write_line("")
        for line in lines:
            reporter.write_line(f"{name}: {line}")


@pytest.fixture(scope="session")
async def engine() -> AsyncIterator[AsyncEngine]:
    async with migrated_database(TEST_DATABASE) as engine:
        yield engine


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
async def committed(engine: AsyncEngine) -> AsyncIterator[None]:
    """The test's rows are committed for real, so that the app's own engines (its
    read engine and read slots included) see them; every row goes afterwards."""
    yield
    async with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(table.delete())


@pytest.fixture
def sessionmaker(
    engine: AsyncEngine, committed: None
) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


@pytest.fixture
def database(engine: AsyncEngine, committed: None) -> Database:
    """The production Database on the suite's engine, for an app the test makes:
    `create_app(settings, database=database)` opens no engine of its own."""
    return Database(engine)


@pytest.fixture
async def session(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


@asynccontextmanager
async def served_conforming(app: Quart) -> AsyncIterator[None]:
    """`app` served for the block; then every answer it gave must have been what
    the OpenAPI document says (tests/conformance.py)."""
    answers = AnswerLog()
    answers.install(app)
    async with app.test_app():
        yield
    assert answers.problems() == []


@pytest.fixture
def make_app(settings: Settings, committed: None) -> AppMaker:
    """`async with make_app(*blueprints, **changes) as app`: a served app of these
    settings on the production database path (its own engine, read engine and
    read slots), with the test's extra blueprints. Its answers must be what the
    OpenAPI document says (tests/conformance.py)."""

    @asynccontextmanager
    async def serve(*blueprints: Blueprint, **changes: Any) -> AsyncIterator[Quart]:
        app = create_app(replace(settings, **changes))
        for blueprint in blueprints:
            app.register_blueprint(blueprint)
        async with served_conforming(app):
            yield app

    return serve


@pytest.fixture
async def start_app(make_app: AppMaker) -> AsyncIterator[AppStarter]:
    """`app = await start_app(*blueprints, **changes)`: make_app's app, served
    until the test ends (for tests that want several)."""
    async with AsyncExitStack() as stack:

        async def start(*blueprints: Blueprint, **changes: Any) -> Quart:
            return await stack.enter_async_context(make_app(*blueprints, **changes))

        yield start


@pytest.fixture
def make_instances(start_app: AppStarter) -> InstancesMaker:
    """`a, b = await make_instances(**changes)`: clients of two apps, as two
    replicas are, each with its own engine and pool on the run's database (what
    one commits, the other must see) and its own client of the Redis."""

    async def make(**changes: Any) -> tuple[Client, Client]:
        redis_url = backends.redis_url()
        first, second = [
            await start_app(redis_url=redis_url, **changes) for _ in range(2)
        ]
        return first.test_client(), second.test_client()

    return make


@pytest.fixture
async def app(make_app: AppMaker) -> AsyncIterator[Quart]:
    async with make_app() as app:
        yield app


# Opt-in, for tests that need every request inside the test's transaction.


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as connection:
        transaction = await connection.begin()
        yield connection
        await transaction.rollback()


@pytest.fixture
def bound_database(connection: AsyncConnection) -> Database:
    # Services commit as in production; each commit only releases a savepoint
    # inside the test's transaction, which is rolled back at the end.
    return Database.on_connection(connection)


@pytest.fixture
def bound_sessionmaker(bound_database: Database) -> async_sessionmaker[AsyncSession]:
    return bound_database.sessions


@pytest.fixture
def make_bound_app(settings: Settings, bound_database: Database) -> AppMaker:
    """`async with make_bound_app(**changes) as app`: every session of the app on
    the test's transaction (Database.on_connection), no engine of its own; its
    answers held to the OpenAPI document as make_app's are."""

    @asynccontextmanager
    async def serve(**changes: Any) -> AsyncIterator[Quart]:
        app = create_app(replace(settings, **changes), database=bound_database)
        async with served_conforming(app):
            yield app

    return serve


@pytest.fixture
async def names() -> AsyncIterator[Names]:
    """Unique emails and IPs; the throttle keys they name go after the test."""
    names = Names()
    yield names
    await names.delete_keys(backends.redis_url())


@pytest.fixture
async def account(session: AsyncSession, names: Names) -> User:
    """A user whose address's throttle keys go after the test (tests on Redis)."""
    return await make_user(session, email=names.email())


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A cleartext SMTP server in the test (SMTP_URL `smtp.url`, ?starttls=off)."""
    with smtp_server() as server:
        yield server


@pytest.fixture
def hasher() -> Iterator[PasswordHasher]:
    hasher = PasswordHasher(threads=2)
    yield hasher
    hasher.shutdown()


@pytest.fixture
def users(session: AsyncSession, hasher: PasswordHasher) -> UserService:
    return UserService(session, hasher)


@pytest.fixture
def client(app: Quart) -> Client:
    return app.test_client()


@pytest.fixture
async def user(session: AsyncSession) -> User:
    return await make_user(
        session, email="test@example.com", first_name="Test", last_name="User"
    )


@pytest.fixture(params=["unknown", "soft-deleted"])
async def absent_user_id(request: pytest.FixtureRequest, session: AsyncSession) -> int:
    """An id the API knows no user by: never made, or the user soft-deleted."""
    if request.param == "unknown":
        return 999_999
    return (await make_user(session, deleted_at=utcnow())).id


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
async def user_headers(
    session: AsyncSession, settings: Settings, user: User
) -> dict[str, str]:
    return await login_headers(session, settings, user)


@pytest.fixture
async def admin_headers(
    session: AsyncSession, settings: Settings, admin_user: User
) -> dict[str, str]:
    return await login_headers(session, settings, admin_user)
