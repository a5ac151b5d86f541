"""List totals kept by triggers (migration 0005): exact under concurrent writers.

These tests commit on the real engine (concurrent transactions cannot share
the test's connection) and delete what they wrote. Each compares the counters
with a full scan of the tables, which is what `total` used to be.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from service import create_app
from service.config import Settings
from service.models import User
from tests.factories import PASSWORD_HASH, flask_headers_for
from tests.support import drop_database, migrate, migrate_sqlite, recreate_database

SCAN = """
SELECT 'users_live', count(*) FROM users WHERE deleted_at IS NULL
UNION ALL
SELECT 'users_active', count(*) FROM users WHERE deleted_at IS NULL AND is_active
UNION ALL
SELECT 'posts_visible', count(*) FROM posts p
JOIN users u ON u.id = p.author_id WHERE u.deleted_at IS NULL
"""
COUNTED = "SELECT name, sum(n) FROM row_counts GROUP BY name"
# Users whose post_counts row is missing or wrong, and rows without a user.
PER_AUTHOR_DRIFT = """
SELECT count(*) FROM users u LEFT JOIN post_counts c ON c.author_id = u.id
WHERE c.author_id IS NULL
   OR c.posts <> (SELECT count(*) FROM posts p WHERE p.author_id = u.id)
   OR c.author_live <> (u.deleted_at IS NULL)
"""
ORPHANS = (
    "SELECT count(*) FROM post_counts c"
    " WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = c.author_id)"
)
INSERT_USER = """
INSERT INTO users (email, password_hash, first_name, last_name, is_active,
                   is_admin, created_at, updated_at)
VALUES (:email, :hash, 'Count', 'Me', true, false, now(), now()) RETURNING id
"""
INSERT_POST = """
INSERT INTO posts (title, content, author_id, created_at, updated_at)
VALUES ('t', 'c', :author, now(), now())
"""


async def counts(connection: AsyncConnection) -> dict[str, dict[str, int]]:
    scanned: dict[str, int] = dict((await connection.execute(text(SCAN))).all())
    counted: dict[str, int] = dict((await connection.execute(text(COUNTED))).all())
    return {
        "scanned": {name: int(n) for name, n in scanned.items()},
        "counted": {name: int(counted.get(name) or 0) for name in scanned},
    }


async def assert_exact(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        seen = await counts(connection)
        assert seen["counted"] == seen["scanned"]
        assert await connection.scalar(text(PER_AUTHOR_DRIFT)) == 0
        assert await connection.scalar(text(ORPHANS)) == 0


@pytest.fixture
async def tag(engine: AsyncEngine) -> AsyncIterator[str]:
    """A unique e-mail prefix; the rows that carry it are deleted afterwards."""
    prefix = f"counts-{uuid.uuid4().hex[:10]}-"
    yield prefix
    async with engine.begin() as connection:
        mine = "SELECT id FROM users WHERE email LIKE :pattern"
        await connection.execute(
            text(f"DELETE FROM posts WHERE author_id IN ({mine})"),  # noqa: S608
            {"pattern": f"{prefix}%"},
        )
        await connection.execute(
            text("DELETE FROM users WHERE email LIKE :pattern"),
            {"pattern": f"{prefix}%"},
        )


async def insert_user(connection: AsyncConnection, email: str) -> int:
    user_id = await connection.scalar(
        text(INSERT_USER), {"email": email, "hash": PASSWORD_HASH}
    )
    assert isinstance(user_id, int)
    return user_id


async def test_counts_stay_exact_under_concurrent_writers(
    engine: AsyncEngine, tag: str
) -> None:
    async with engine.begin() as connection:
        seeded = [
            await insert_user(connection, f"{tag}seed{i}@x.io") for i in range(12)
        ]
        for author in seeded:
            await connection.execute(text(INSERT_POST), {"author": author})

    async def worker(number: int) -> None:
        rng = random.Random(number)
        for step in range(12):
            target = rng.choice(seeded)
            async with engine.begin() as connection:
                action = rng.randrange(6)
                if action == 0:  # a registration with a first post
                    new = await insert_user(connection, f"{tag}w{number}-{step}@x.io")
                    await connection.execute(text(INSERT_POST), {"author": new})
                elif action == 1:  # soft delete
                    await connection.execute(
                        text("UPDATE users SET deleted_at = now() WHERE id = :id"),
                        {"id": target},
                    )
                elif action == 2:  # restore
                    await connection.execute(
                        text("UPDATE users SET deleted_at = NULL WHERE id = :id"),
                        {"id": target},
                    )
                elif action == 3:
                    await connection.execute(text(INSERT_POST), {"author": target})
                elif action == 4:
                    await connection.execute(
                        text(
                            "UPDATE users SET is_active = NOT is_active WHERE id = :id"
                        ),
                        {"id": target},
                    )
                else:
                    await connection.execute(
                        text(
                            "DELETE FROM posts WHERE id = (SELECT min(id) FROM posts"
                            " WHERE author_id = :id)"
                        ),
                        {"id": target},
                    )

    await asyncio.gather(*(worker(number) for number in range(8)))

    await assert_exact(engine)


async def until_waiting_for_a_lock(engine: AsyncEngine, pid: int) -> None:
    async with engine.connect() as watcher:
        for _ in range(600):
            state = await watcher.scalar(
                text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": pid},
            )
            if state == "Lock":
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the second transaction never waited for the first")


@pytest.mark.parametrize("first", ["delete_author", "insert_post"])
async def test_post_racing_its_authors_soft_delete_is_counted_exactly(
    engine: AsyncEngine, tag: str, first: str
) -> None:
    async with engine.begin() as connection:
        author = await insert_user(connection, f"{tag}author@x.io")
        await connection.execute(text(INSERT_POST), {"author": author})

    async def delete_author(connection: AsyncConnection) -> None:
        await connection.execute(
            text("UPDATE users SET deleted_at = now() WHERE id = :id"), {"id": author}
        )

    async def insert_post(connection: AsyncConnection) -> None:
        await connection.execute(text(INSERT_POST), {"author": author})

    steps = {"delete_author": delete_author, "insert_post": insert_post}
    second = "insert_post" if first == "delete_author" else "delete_author"
    async with engine.connect() as one, engine.connect() as two:
        await one.begin()
        await steps[first](one)
        await two.begin()
        # Waits for `one` on the author's post_counts row.
        waiting = await two.scalar(text("SELECT pg_backend_pid()"))
        racing = asyncio.create_task(steps[second](two))
        await until_waiting_for_a_lock(engine, waiting)
        await one.commit()
        await racing
        await two.commit()

    await assert_exact(engine)


async def test_writer_does_not_wait_for_another_open_transaction_counting(
    engine: AsyncEngine, tag: str
) -> None:
    async with engine.connect() as open_one:
        await open_one.begin()
        await insert_user(open_one, f"{tag}open@x.io")

        async def register() -> None:
            async with engine.begin() as other:
                await insert_user(other, f"{tag}other@x.io")

        # One shared counter row would block here until open_one ends.
        await asyncio.wait_for(register(), timeout=30)
        await open_one.rollback()

    await assert_exact(engine)


async def test_share_of_a_closed_backend_is_folded_by_the_next_first_write(
    engine: AsyncEngine, tag: str
) -> None:
    writer = create_async_engine(engine.url)
    try:
        async with writer.begin() as connection:
            gone = await connection.scalar(text("SELECT pg_backend_pid()"))
            await insert_user(connection, f"{tag}gone@x.io")
    finally:
        await writer.dispose()
    async with engine.connect() as connection:
        for _ in range(200):  # the backend leaves pg_stat_activity as it exits
            active = await connection.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": gone},
            )
            if not active:
                break
            await asyncio.sleep(0.05)

    fresh = create_async_engine(engine.url)
    try:
        async with fresh.begin() as connection:
            await insert_user(connection, f"{tag}fresh@x.io")
        async with fresh.connect() as connection:
            shares = await connection.scalar(
                text("SELECT count(*) FROM row_counts WHERE shard = :pid"),
                {"pid": gone},
            )
    finally:
        await fresh.dispose()

    assert shares == 0
    await assert_exact(engine)


@pytest.fixture
async def real_app(settings: Settings) -> AsyncIterator[Quart]:
    app = create_app(settings)
    async with app.test_app():
        yield app


async def test_api_totals_exact_after_concurrent_registrations_deletes_restores(
    engine: AsyncEngine, real_app: Quart, settings: Settings, tag: str
) -> None:
    async with engine.begin() as connection:
        admin_id = await insert_user(connection, f"{tag}admin@x.io")
        await connection.execute(
            text("UPDATE users SET is_admin = true WHERE id = :id"), {"id": admin_id}
        )
        victims = [await insert_user(connection, f"{tag}v{i}@x.io") for i in range(6)]
        for victim in victims:
            await connection.execute(text(INSERT_POST), {"author": victim})
        await connection.execute(
            text("UPDATE users SET deleted_at = now() WHERE id = ANY(:ids)"),
            {"ids": victims[3:]},
        )
    admin = User(id=admin_id, is_admin=True)
    headers = flask_headers_for(settings, admin)
    client = real_app.test_client()

    async def call(method: str, path: str, **kwargs: Any) -> int:
        response = await client.open(path, method=method, headers=headers, **kwargs)
        return response.status_code

    register = [
        call(
            "POST",
            "/api/v1/users",
            json={
                "email": f"{tag}r{i}@x.io",
                "password": "password123",
                "first_name": "Reg",
                "last_name": "Ister",
            },
        )
        for i in range(6)
    ]
    delete = [call("DELETE", f"/api/v1/users/{v}") for v in victims[:3]]
    restore = [call("POST", f"/api/v1/users/{v}/restore") for v in victims[3:]]
    statuses = await asyncio.gather(*register, *delete, *restore)

    assert statuses == [201] * 6 + [204] * 3 + [200] * 3
    await assert_exact(engine)
    async with engine.connect() as connection:
        scanned = (await counts(connection))["scanned"]
    users = await client.get("/api/v1/users?per_page=1", headers=headers)
    everyone = await client.get(
        "/api/v1/users?per_page=1&active_only=false", headers=headers
    )
    posts = await client.get("/api/v1/posts?per_page=1", headers=headers)
    restored = await client.get(f"/api/v1/users/{victims[3]}/posts", headers=headers)
    deleted = await client.get(f"/api/v1/users/{victims[0]}/posts", headers=headers)
    assert (await users.get_json())["total"] == scanned["users_active"]
    assert (await everyone.get_json())["total"] == scanned["users_live"]
    assert (await posts.get_json())["total"] == scanned["posts_visible"]
    assert (await restored.get_json())["total"] == 1
    assert deleted.status_code == 404


@pytest.fixture
async def bare_database() -> AsyncIterator[AsyncEngine]:
    name = f"service_counts_{uuid.uuid4().hex[:8]}"
    engine = create_async_engine(await recreate_database(name))
    yield engine
    await engine.dispose()
    await drop_database(name)


async def test_upgrade_counts_existing_rows_and_downgrade_removes_the_counters(
    bare_database: AsyncEngine,
) -> None:
    await migrate(bare_database, "upgrade", "0004")
    async with bare_database.begin() as connection:
        ids = [await insert_user(connection, f"old{i}@x.io") for i in range(5)]
        for author in ids[:3]:
            await connection.execute(text(INSERT_POST), {"author": author})
        await connection.execute(
            text("UPDATE users SET deleted_at = now() WHERE id = :id"), {"id": ids[0]}
        )
        await connection.execute(
            text("UPDATE users SET is_active = false WHERE id = :id"), {"id": ids[1]}
        )

    await migrate(bare_database, "upgrade", "0005")
    await assert_exact(bare_database)
    async with bare_database.connect() as connection:
        assert (await counts(connection))["counted"] == {
            "users_live": 4,
            "users_active": 3,
            "posts_visible": 2,
        }

    await migrate(bare_database, "downgrade", "0004")
    async with bare_database.begin() as connection:
        leftovers = await connection.scalar(
            text(
                "SELECT (SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal)"
                " + (SELECT count(*) FROM pg_proc p JOIN pg_namespace s"
                "    ON s.oid = p.pronamespace WHERE s.nspname = 'public')"
                " + (SELECT count(*) FROM pg_tables WHERE tablename"
                "    IN ('row_counts', 'post_counts'))"
            )
        )
        assert leftovers == 0
        # Writes work without the triggers.
        await insert_user(connection, "after-downgrade@x.io")
        await connection.execute(text(INSERT_POST), {"author": ids[2]})


async def test_sqlite_counts_follow_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/counts.db"
    await migrate_sqlite(url, monkeypatch)
    engine = create_async_engine(url)
    insert_user_sqlite = INSERT_USER.replace("now()", "CURRENT_TIMESTAMP")
    insert_post_sqlite = INSERT_POST.replace("now()", "CURRENT_TIMESTAMP")
    try:
        async with engine.begin() as connection:
            ids = []
            for i in range(4):
                ids.append(
                    await connection.scalar(
                        text(insert_user_sqlite),
                        {"email": f"lite{i}@x.io", "hash": PASSWORD_HASH},
                    )
                )
            for author in ids[:3]:
                await connection.execute(text(insert_post_sqlite), {"author": author})
            await connection.execute(text(insert_post_sqlite), {"author": ids[0]})
            for statement in (
                "UPDATE users SET deleted_at = CURRENT_TIMESTAMP WHERE id = :a",
                "UPDATE users SET is_active = 0 WHERE id = :b",
                "UPDATE users SET deleted_at = CURRENT_TIMESTAMP WHERE id = :c",
                "UPDATE users SET deleted_at = NULL WHERE id = :c",
                "DELETE FROM posts WHERE author_id = :d",
                "DELETE FROM users WHERE id = :d",
            ):
                await connection.execute(
                    text(statement),
                    {"a": ids[0], "b": ids[1], "c": ids[2], "d": ids[3]},
                )
        async with engine.connect() as connection:
            seen = await counts(connection)
            drift = await connection.scalar(text(PER_AUTHOR_DRIFT))
            orphans = await connection.scalar(text(ORPHANS))
    finally:
        await engine.dispose()

    assert seen["counted"] == seen["scanned"]
    assert seen["counted"] == {"users_live": 2, "users_active": 1, "posts_visible": 2}
    assert (drift, orphans) == (0, 0)
