"""Alembic: adopting a Flask-era database, drift, round trips, email uniqueness."""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from quart.typing import TestClientProtocol as Client
from sqlalchemy import Row, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from werkzeug.security import generate_password_hash

from service import create_app
from service.config import Settings
from service.db import migrate as service_migrate
from service.models import Base
from tests.factories import PASSWORD, PASSWORD_HASH, at
from tests.support import (
    FLASK_DDL,
    USERS,
    alembic_config,
    drop_database,
    get_me,
    login,
    migrate,
    recreate_database,
    registration,
    user_json,
)

JWT_KEY = "migration-test-jwt-secret-0123456789-abcdef"
SECRET_KEY = "migration-test-secret-key-0123456789-abcdef"
LEGACY_PASSWORD = "oldpassword1"
_databases = itertools.count(1)

# Only the Flask columns: later revisions may add columns, never rewrite these.
FLASK_USER_COLUMNS = (
    "id, email, password_hash, first_name, last_name, is_active, is_admin, "
    "created_at, updated_at, deleted_at"
)
FLASK_POST_COLUMNS = "id, title, content, author_id, created_at, updated_at"


@functools.cache
def legacy_hash() -> str:
    # The pbkdf2 default of older Werkzeug releases; costly, so made once.
    return generate_password_hash(LEGACY_PASSWORD, method="pbkdf2:sha256:600000")


@dataclass
class FlaskUser:
    email: str
    first_name: str
    last_name: str
    created_at: datetime
    updated_at: datetime
    password_hash: str = PASSWORD_HASH
    is_admin: bool = False
    deleted_at: datetime | None = None
    is_active: bool = True


@dataclass(frozen=True)
class AdoptedDatabase:
    engine: AsyncEngine
    url: str
    ids: dict[str, int]
    users_before: Sequence[Row[Any]]
    posts_before: Sequence[Row[Any]]


# Flask's timestamps, microseconds and all.
SCRYPT_CREATED, SCRYPT_UPDATED = map(
    at, ["2025-03-01T09:30:15.123456", "2025-03-02T10:00:00.654321"]
)
SCRYPT_USER = FlaskUser(
    "flask.user@example.com", "Flask", "User", SCRYPT_CREATED, SCRYPT_UPDATED
)
GONE = at("2024-02-05T12:00:00.000002")
DELETED_USER = FlaskUser(
    "gone@example.com",
    "Gone",
    "User",
    at("2024-01-05T12:00:00.000001"),
    GONE,
    deleted_at=GONE,
)


def legacy_user() -> FlaskUser:
    # Mixed case as registered in Flask, and whole-second timestamps, which
    # Flask serialized without a fraction.
    return FlaskUser(
        email="Legacy.Admin@Example.com",
        password_hash=legacy_hash(),
        first_name="Legacy",
        last_name="Admin",
        is_admin=True,
        created_at=at("2023-06-01T08:00:00"),
        updated_at=at("2023-07-01T08:00:00"),
    )


@pytest.fixture
async def empty_database() -> AsyncIterator[tuple[AsyncEngine, str]]:
    name = f"service_migrations_{os.getpid()}_{next(_databases)}"
    url = await recreate_database(name)
    engine = create_async_engine(url)
    try:
        yield engine, url
    finally:
        await engine.dispose()
        await drop_database(name)


@pytest.fixture
def empty_engine(empty_database: tuple[AsyncEngine, str]) -> AsyncEngine:
    return empty_database[0]


@pytest.fixture
async def adopted(empty_database: tuple[AsyncEngine, str]) -> AdoptedDatabase:
    """A Flask-era database, stamped at 0001 and upgraded to head."""
    engine, url = empty_database
    async with engine.begin() as connection:
        for statement in FLASK_DDL:
            await connection.execute(text(statement))
        ids = {
            user.email: await insert_flask_user(connection, user)
            for user in (SCRYPT_USER, legacy_user(), DELETED_USER)
        }
        await connection.execute(
            text(
                "INSERT INTO posts (title, content, author_id, created_at, updated_at) "
                "VALUES ('Hello', 'From Flask', :author, :at, :at)"
            ),
            {"author": ids[SCRYPT_USER.email], "at": at("2025-03-03T01:02:03")},
        )
    users_before, posts_before = await flask_rows(engine)
    await migrate(engine, "stamp", "0001")
    await migrate(engine)
    return AdoptedDatabase(engine, url, ids, users_before, posts_before)


async def insert_flask_user(connection: AsyncConnection, user: FlaskUser) -> int:
    user_id = await connection.scalar(
        text(
            "INSERT INTO users (email, password_hash, first_name, last_name, "
            "is_active, is_admin, created_at, updated_at, deleted_at) VALUES "
            "(:email, :password_hash, :first_name, :last_name, :is_active, "
            ":is_admin, :created_at, :updated_at, :deleted_at) RETURNING id"
        ),
        {
            "email": user.email,
            "password_hash": user.password_hash,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "is_active": user.is_active,
            "is_admin": user.is_admin,
            "created_at": user.created_at,
            "updated_at": user.updated_at,
            "deleted_at": user.deleted_at,
        },
    )
    assert isinstance(user_id, int)
    return user_id


NEW_YEAR = at("2025-01-01T00:00:00")


async def insert_user(
    connection: AsyncConnection, email: str, deleted_at: datetime | None = None
) -> int:
    return await insert_flask_user(
        connection,
        FlaskUser(email, "Some", "One", NEW_YEAR, NEW_YEAR, deleted_at=deleted_at),
    )


async def insert_users(engine: AsyncEngine, *rows: tuple[str, str | None]) -> None:
    """Flask-era users in one transaction: (email, when it was soft-deleted)."""
    async with engine.begin() as connection:
        for email, deleted in rows:
            await insert_user(connection, email, at(deleted) if deleted else None)


async def flask_rows(
    engine: AsyncEngine,
) -> tuple[Sequence[Row[Any]], Sequence[Row[Any]]]:
    async with engine.connect() as connection:
        users = await connection.execute(
            text(f"SELECT {FLASK_USER_COLUMNS} FROM users ORDER BY id")  # noqa: S608
        )
        posts = await connection.execute(
            text(f"SELECT {FLASK_POST_COLUMNS} FROM posts ORDER BY id")  # noqa: S608
        )
        return users.all(), posts.all()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def schema_drift(engine: AsyncEngine) -> list[Any]:
    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as connection:
        return await connection.run_sync(compare)


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: set(inspect(sync).get_table_names())
        )


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


@asynccontextmanager
async def client_on(url: str) -> AsyncIterator[Client]:
    """A client of an app serving the database at `url` with its own engine."""
    app = create_app(
        Settings(
            env="testing",
            database_url=url,
            jwt_secret_key=JWT_KEY,
            secret_key=SECRET_KEY,
            password_hash_threads=2,
        )
    )
    async with app.test_app():
        yield app.test_client()


async def me_after_login(url: str, email: str, password: str) -> Any:
    """What GET /users/me answers after a login as `email`."""
    async with client_on(url) as client:
        tokens = await login(client, email, password)
        me = await get_me(client, tokens["access_token"])
        assert me.status_code == 200
        return await me.get_json()


async def test_adopt_flask_database_upgrade_rewrites_no_row(
    adopted: AdoptedDatabase,
) -> None:
    assert await flask_rows(adopted.engine) == (
        adopted.users_before,
        adopted.posts_before,
    )
    assert len(adopted.users_before) == 3
    assert len(adopted.posts_before) == 1
    assert await current_revision(adopted.engine) == head_revision()


async def test_adopt_flask_database_scrypt_user_logs_in_and_reads_itself(
    adopted: AdoptedDatabase,
) -> None:
    body = await me_after_login(adopted.url, SCRYPT_USER.email, PASSWORD)

    assert body == user_json(SCRYPT_USER, adopted.ids[SCRYPT_USER.email])


async def test_adopt_flask_database_pbkdf2_user_logs_in_and_reads_itself(
    adopted: AdoptedDatabase,
) -> None:
    user = legacy_user()

    body = await me_after_login(adopted.url, user.email, LEGACY_PASSWORD)

    # Re-hashing the old pbkdf2 hash at login may move updated_at; every other
    # field is the Flask row as it was.
    assert {**body, "updated_at": None} == {
        **user_json(user, adopted.ids[user.email]),
        "updated_at": None,
    }


async def test_adopt_flask_database_pbkdf2_login_rehashes_with_scrypt(
    adopted: AdoptedDatabase,
) -> None:
    user = legacy_user()
    async with client_on(adopted.url) as client:
        credentials = {"email": user.email, "password": LEGACY_PASSWORD}
        first = await client.post("/api/v1/auth/login", json=credentials)
        assert first.status_code == 200
        async with adopted.engine.connect() as connection:
            stored = await connection.scalar(
                text("SELECT password_hash FROM users WHERE id = :id"),
                {"id": adopted.ids[user.email]},
            )
        # Old methods are re-hashed on the next successful login.
        assert isinstance(stored, str)
        assert stored.startswith("scrypt:")
        second = await client.post("/api/v1/auth/login", json=credentials)
        assert second.status_code == 200


async def test_adopt_flask_database_soft_deleted_email_registers_again(
    adopted: AdoptedDatabase,
) -> None:
    async with client_on(adopted.url) as client:
        response = await client.post(
            USERS,
            json=registration(
                DELETED_USER.email,
                password="newpassword1",
                first_name="Back",
                last_name="Again",
            ),
        )
        assert response.status_code == 201
        body = await response.get_json()
    # A new account: the Flask id sequence goes on past the adopted rows.
    assert body["id"] > max(adopted.ids.values())
    assert body["email"] == DELETED_USER.email
    users_after, _posts = await flask_rows(adopted.engine)
    assert users_after[:3] == adopted.users_before


async def test_upgrade_from_empty_to_head_matches_models(
    empty_engine: AsyncEngine,
) -> None:
    await migrate(empty_engine)
    # Alembic compares PostgreSQL expression indexes (lower(email) ... WHERE
    # deleted_at IS NULL) since 1.12, so no entry needs to be ignored: any diff,
    # including on uq_users_email_lower_live, is real drift.
    assert await schema_drift(empty_engine) == []


async def test_downgrade_to_base_then_upgrade_again_restores_schema(
    empty_engine: AsyncEngine,
) -> None:
    await migrate(empty_engine)
    await migrate(empty_engine, "downgrade", "base")
    assert await table_names(empty_engine) == {"alembic_version"}
    assert await current_revision(empty_engine) is None
    await migrate(empty_engine)
    assert await current_revision(empty_engine) == head_revision()
    assert await schema_drift(empty_engine) == []


async def test_upgrade_with_live_emails_differing_in_case_refuses_and_changes_nothing(
    empty_engine: AsyncEngine,
) -> None:
    await migrate(empty_engine, "upgrade", "0001")
    await insert_users(
        empty_engine, ("A@x.com", None), ("a@x.com", None), ("b@x.com", None)
    )
    before = await flask_rows(empty_engine)
    with pytest.raises(Exception, match=r"a@x\.com"):
        await migrate(empty_engine)
    assert await current_revision(empty_engine) == "0001"
    assert await flask_rows(empty_engine) == before
    async with empty_engine.connect() as connection:
        indexes = await connection.run_sync(
            lambda sync: inspect(sync).get_indexes("users")
        )
    assert [(index["name"], index["unique"]) for index in indexes] == [
        ("ix_users_email", True)
    ]


async def test_upgrade_with_soft_deleted_email_differing_in_case_succeeds(
    empty_engine: AsyncEngine,
) -> None:
    await migrate(empty_engine, "upgrade", "0001")
    await insert_users(
        empty_engine, ("A@x.com", "2025-02-01T00:00:00"), ("a@x.com", None)
    )
    before = await flask_rows(empty_engine)
    await migrate(empty_engine)
    assert await current_revision(empty_engine) == head_revision()
    assert await flask_rows(empty_engine) == before


@pytest.mark.parametrize("second", ["dup@x.com", "DUP@X.COM"])
async def test_head_live_email_differing_only_in_case_is_rejected(
    empty_engine: AsyncEngine, second: str
) -> None:
    await migrate(empty_engine)
    await insert_users(empty_engine, ("Dup@x.com", None))
    with pytest.raises(IntegrityError):
        async with empty_engine.begin() as connection:
            await insert_user(connection, second)


async def test_head_soft_deleted_duplicates_in_any_case_are_allowed(
    empty_engine: AsyncEngine,
) -> None:
    await migrate(empty_engine)
    await insert_users(
        empty_engine,
        ("Dup@x.com", "2025-02-01T00:00:00"),
        ("dup@x.com", "2025-03-01T00:00:00"),
        ("DUP@x.com", None),
    )
    async with empty_engine.connect() as connection:
        count = await connection.scalar(
            text("SELECT count(*) FROM users WHERE lower(email) = 'dup@x.com'")
        )
    assert count == 3


async def test_downgrade_with_reregistered_email_refuses_and_changes_nothing(
    empty_engine: AsyncEngine,
) -> None:
    await migrate(empty_engine)
    await insert_users(
        empty_engine, ("x@x.com", "2025-02-01T00:00:00"), ("x@x.com", None)
    )
    before = await flask_rows(empty_engine)
    # 0001's unique index covers soft-deleted rows, so it cannot come back.
    with pytest.raises(Exception, match=r"x@x\.com"):
        await migrate(empty_engine, "downgrade", "0001")
    assert await current_revision(empty_engine) == head_revision()
    assert await flask_rows(empty_engine) == before


# ------------------------------------- the deploy path: `quart ... migrate`


async def run_migrate(url: str) -> bool:
    return await asyncio.to_thread(service_migrate.migrate, alembic_config(), url)


async def create_flask_tables(engine: AsyncEngine, *more: str) -> None:
    async with engine.begin() as connection:
        for statement in (*FLASK_DDL, *more):
            await connection.execute(text(statement))


async def test_migrate_adopts_a_never_stamped_flask_database(
    empty_database: tuple[AsyncEngine, str],
) -> None:
    engine, url = empty_database
    await create_flask_tables(engine)
    async with engine.begin() as connection:
        await insert_flask_user(connection, SCRYPT_USER)
    before, _ = await flask_rows(engine)

    adopted = await run_migrate(url)

    assert adopted is True
    assert await current_revision(engine) == head_revision()
    assert (await flask_rows(engine))[0] == before


async def test_migrate_upgrades_an_empty_then_a_migrated_database(
    empty_database: tuple[AsyncEngine, str],
) -> None:
    engine, url = empty_database

    first = await run_migrate(url)
    again = await run_migrate(url)

    assert (first, again) == (False, False)
    assert await current_revision(engine) == head_revision()


async def test_migrate_refuses_flask_tables_that_differ_and_changes_nothing(
    empty_database: tuple[AsyncEngine, str],
) -> None:
    engine, url = empty_database
    await create_flask_tables(engine, "ALTER TABLE posts ADD COLUMN summary text")

    with pytest.raises(service_migrate.MigrateError) as refused:
        await run_migrate(url)

    message = str(refused.value)
    assert "\n" not in message
    assert "differ from revision 0001 (remove_column posts.summary" in message
    assert "alembic stamp 0001" in message
    assert await table_names(engine) == {"users", "posts"}


async def test_migrate_refuses_a_database_of_other_tables_and_changes_nothing(
    empty_database: tuple[AsyncEngine, str],
) -> None:
    engine, url = empty_database
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE customers (id integer)"))

    with pytest.raises(service_migrate.MigrateError) as refused:
        await run_migrate(url)

    assert "\n" not in str(refused.value)
    assert "tables (customers) but no alembic_version" in str(refused.value)
    assert await table_names(engine) == {"customers"}


async def test_migrations_started_together_queue_and_all_succeed(
    empty_database: tuple[AsyncEngine, str],
) -> None:
    # k8s starts the new pods' init containers together: each runs migrate.
    engine, url = empty_database

    results = await asyncio.gather(*(run_migrate(url) for _ in range(3)))

    assert results == [False, False, False]
    assert await current_revision(engine) == head_revision()
