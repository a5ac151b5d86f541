"""Smoke pass of the API on the embedded SQLite default, migrated by Alembic."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy import func, select, update

from service import create_app
from service.config import Settings
from service.db.request import app_database
from service.models import User
from service.schemas.user import NewUser
from tests.support import (
    PASSWORD,
    bearer,
    login,
    migrate_sqlite,
    post_refresh,
    registration,
)


@pytest.fixture
async def sqlite_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Quart]:
    url = f"sqlite+aiosqlite:///{tmp_path}/service.db"
    await migrate_sqlite(url, monkeypatch)
    app = create_app(
        Settings(env="development", database_url=url, password_hash_threads=2)
    )
    async with app.test_app():
        yield app


@pytest.fixture
def sqlite_client(sqlite_app: Quart) -> Client:
    return sqlite_app.test_client()


def new_user(email: str) -> NewUser:
    return registration(email, first_name="Sam", last_name="Lite")


async def register(client: Client, email: str) -> dict[str, Any]:
    response = await client.post("/api/v1/users", json=new_user(email))
    assert response.status_code == 201
    body: dict[str, Any] = await response.get_json()
    return body


async def make_admin(app: Quart, email: str) -> None:
    async with app_database(app).sessions() as session:
        await session.execute(
            update(User).where(User.email == email).values(is_admin=True)
        )
        await session.commit()


async def count_rows(app: Quart, email: str) -> int:
    async with app_database(app).sessions() as session:
        count = await session.scalar(
            select(func.count()).where(func.lower(User.email) == email.lower())
        )
    assert isinstance(count, int)
    return count


async def test_sqlite_register_returns_user_201(sqlite_client: Client) -> None:
    response = await sqlite_client.post(
        "/api/v1/users", json=new_user("sam@example.com")
    )
    assert response.status_code == 201
    body = await response.get_json()
    assert body == {
        "created_at": body["created_at"],
        "email": "sam@example.com",
        "first_name": "Sam",
        "full_name": "Sam Lite",
        "id": 1,
        "is_active": True,
        "is_admin": False,
        "last_name": "Lite",
        "updated_at": body["updated_at"],
    }


@pytest.mark.parametrize(
    ("registered", "again"),
    [
        ("Sam@Example.com", "sam@EXAMPLE.COM"),
        ("Ärger@example.com", "ärger@example.com"),
    ],
    ids=["ascii", "non-ascii"],
)
async def test_sqlite_register_email_in_other_case_is_400(
    sqlite_app: Quart, sqlite_client: Client, registered: str, again: str
) -> None:
    await register(sqlite_client, registered)
    response = await sqlite_client.post("/api/v1/users", json=new_user(again))
    assert response.status_code == 400
    assert await response.get_json() == {
        "error": "Validation failed",
        "errors": {"email": ["Email already registered."]},
    }
    assert await count_rows(sqlite_app, registered.lower()) == 1


async def test_sqlite_login_then_me_returns_caller(sqlite_client: Client) -> None:
    registered = await register(sqlite_client, "me@example.com")
    tokens = await login(sqlite_client, "ME@example.com")
    assert tokens["token_type"] == "bearer"
    response = await sqlite_client.get(
        "/api/v1/users/me", headers=bearer(tokens["access_token"])
    )
    assert response.status_code == 200
    assert await response.get_json() == registered


async def test_sqlite_list_users_paginates_newest_first(sqlite_client: Client) -> None:
    first = await register(sqlite_client, "one@example.com")
    second = await register(sqlite_client, "two@example.com")
    third = await register(sqlite_client, "three@example.com")
    token = (await login(sqlite_client, "one@example.com"))["access_token"]
    page_one = await sqlite_client.get(
        "/api/v1/users?page=1&per_page=2", headers=bearer(token)
    )
    page_two = await sqlite_client.get(
        "/api/v1/users?page=2&per_page=2", headers=bearer(token)
    )
    assert page_one.status_code == 200
    assert await page_one.get_json() == {
        "users": [third, second],
        "page": 1,
        "per_page": 2,
        "total": 3,
        "pages": 2,
    }
    assert await page_two.get_json() == {
        "users": [first],
        "page": 2,
        "per_page": 2,
        "total": 3,
        "pages": 2,
    }


async def test_sqlite_patch_own_names_returns_changed_user(
    sqlite_client: Client,
) -> None:
    registered = await register(sqlite_client, "patch@example.com")
    token = (await login(sqlite_client, "patch@example.com"))["access_token"]
    response = await sqlite_client.patch(
        f"/api/v1/users/{registered['id']}",
        json={"first_name": "Pat", "last_name": "Ched"},
        headers=bearer(token),
    )
    assert response.status_code == 200
    body = await response.get_json()
    assert body == {
        **registered,
        "first_name": "Pat",
        "last_name": "Ched",
        "full_name": "Pat Ched",
        "updated_at": body["updated_at"],
    }


async def test_sqlite_admin_delete_then_email_registers_again(
    sqlite_app: Quart, sqlite_client: Client
) -> None:
    await register(sqlite_client, "boss@example.com")
    await make_admin(sqlite_app, "boss@example.com")
    victim = await register(sqlite_client, "victim@example.com")
    token = (await login(sqlite_client, "boss@example.com"))["access_token"]
    deleted = await sqlite_client.delete(
        f"/api/v1/users/{victim['id']}", headers=bearer(token)
    )
    assert deleted.status_code == 204
    assert await deleted.get_data() == b""
    gone = await sqlite_client.get(
        f"/api/v1/users/{victim['id']}", headers=bearer(token)
    )
    assert gone.status_code == 404
    again = await sqlite_client.post(
        "/api/v1/users", json=new_user("Victim@example.com")
    )
    assert again.status_code == 201
    assert (await again.get_json())["id"] != victim["id"]
    # The soft-deleted row stays beside the new account.
    assert await count_rows(sqlite_app, "victim@example.com") == 2


async def test_sqlite_refresh_returns_new_access_token(sqlite_client: Client) -> None:
    await register(sqlite_client, "fresh@example.com")
    tokens = await login(sqlite_client, "fresh@example.com")
    response = await post_refresh(sqlite_client, tokens["refresh_token"])
    assert response.status_code == 200
    body = await response.get_json()
    assert body["token_type"] == "bearer"
    me = await sqlite_client.get(
        "/api/v1/users/me", headers=bearer(body["access_token"])
    )
    assert me.status_code == 200


async def test_sqlite_logout_returns_message(sqlite_client: Client) -> None:
    await register(sqlite_client, "bye@example.com")
    access = (await login(sqlite_client, "bye@example.com"))["access_token"]
    response = await sqlite_client.post("/api/v1/auth/logout", headers=bearer(access))
    assert response.status_code == 200
    assert await response.get_json() == {"message": "Successfully logged out"}


def test_settings_from_empty_env_default_to_sqlite_under_instance() -> None:
    settings = Settings.from_env({})
    assert settings.env == "development"
    assert settings.is_sqlite
    prefix = "sqlite+aiosqlite:///"
    assert settings.database_url.startswith(prefix)
    path = Path(settings.database_url.removeprefix(prefix))
    assert path.is_absolute()
    assert path.parts[-2:] == ("instance", "service.db")


async def test_sqlite_login_with_non_ascii_capital_in_email_succeeds(
    sqlite_client: Client,
) -> None:
    # SQLite's lower() folds ASCII only; Python's str.lower() folds Unicode.
    await register(sqlite_client, "Ärger@example.com")
    response = await sqlite_client.post(
        "/api/v1/auth/login",
        json={"email": "Ärger@example.com", "password": PASSWORD},
    )
    assert response.status_code == 200
