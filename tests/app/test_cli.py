"""The Flask service's CLI (seed-db, create-admin) and start-up configuration."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Mapping
from pathlib import Path

import pytest
from alembic import command
from click.testing import Result
from quart import Quart

from service import create_app
from service.config import ConfigError, Settings
from tests.support import RESET_MAIL, alembic_config

PRODUCTION_JWT_KEY = "prod-jwt-secret-0123456789abcdefghijklmno"
PRODUCTION_SECRET_KEY = "prod-app-secret-0123456789abcdefghijklmno"
PRODUCTION_URL = "postgresql+asyncpg://app:pw@db.internal:5432/app"
SEEDED = [
    ("admin@example.com", 1),
    *((f"user{i}@example.com", 0) for i in range(1, 6)),
]


def production_env(**changes: str | None) -> dict[str, str]:
    env: dict[str, str | None] = {
        "APP_ENV": "production",
        "DATABASE_URL": PRODUCTION_URL,
        "JWT_SECRET_KEY": PRODUCTION_JWT_KEY,
        "SECRET_KEY": PRODUCTION_SECRET_KEY,
        **RESET_MAIL,
        **changes,
    }
    return {key: value for key, value in env.items() if value is not None}


@pytest.fixture
async def database_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A migrated SQLite file that DATABASE_URL names, in a development env."""
    path = tmp_path / "service.db"
    for name in ("APP_ENV", "ADMIN_EMAIL", "ADMIN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    monkeypatch.setenv("PASSWORD_HASH_THREADS", "2")
    # env.py calls asyncio.run, so Alembic runs away from the test's loop.
    await asyncio.to_thread(command.upgrade, alembic_config(), "head")
    return path


@pytest.fixture
def cli_app(database_file: Path) -> Quart:
    return create_app(Settings.from_env())


async def invoke(app: Quart, *args: str, input: str | None = None) -> Result:
    # The commands call asyncio.run, which cannot nest in the test's loop.
    runner = app.test_cli_runner()
    result: Result = await asyncio.to_thread(
        runner.invoke, args=list(args), input=input
    )
    return result


def users_in(path: Path) -> list[tuple[str, int]]:
    # Python 3.13 warns of a connection left open: `with` alone only commits.
    with contextlib.closing(sqlite3.connect(path)) as connection:
        rows = connection.execute("SELECT email, is_admin FROM users ORDER BY id")
        return [(email, is_admin) for email, is_admin in rows]


async def login_status(app: Quart, email: str, password: str) -> int:
    async with app.test_app():
        response = await app.test_client().post(
            "/api/v1/auth/login", json={"email": email, "password": password}
        )
    return response.status_code


async def test_seed_db_creates_admin_and_five_users(
    cli_app: Quart, database_file: Path
) -> None:
    result = await invoke(cli_app, "seed-db")
    assert result.exit_code == 0, result.output
    assert "Database seeded successfully!" in result.output
    assert users_in(database_file) == SEEDED


async def test_seed_db_run_twice_creates_nothing_new(
    cli_app: Quart, database_file: Path
) -> None:
    await invoke(cli_app, "seed-db")
    result = await invoke(cli_app, "seed-db")
    assert result.exit_code == 0, result.output
    assert "Created" not in result.output
    assert users_in(database_file) == SEEDED


async def test_create_admin_on_app_from_environment_writes_to_database_url(
    database_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What service.asgi (and so `quart --app service.asgi`) builds: no settings
    # passed, everything read from the environment. Were DATABASE_URL ignored,
    # the default instance/service.db would land in tmp_path, not the checkout.
    monkeypatch.chdir(tmp_path)
    result = await invoke(create_app(), "create-admin", "env@example.com", "envpass123")
    assert result.exit_code == 0, result.output
    assert users_in(database_file) == [("env@example.com", 1)]


async def test_seed_db_in_production_refuses_and_creates_nothing(
    database_file: Path,
) -> None:
    settings = Settings.from_env(
        production_env(DATABASE_URL=f"sqlite+aiosqlite:///{database_file}")
    )
    result = await invoke(create_app(settings), "seed-db")
    assert result.exit_code != 0
    assert "production" in result.output
    assert users_in(database_file) == []


@pytest.mark.parametrize(
    ("args", "typed", "says", "email", "password"),
    [
        pytest.param(
            ("boss@example.com", "bosspass123"),
            None,
            "Admin user boss@example.com created successfully!",
            "boss@example.com",
            "bosspass123",
            id="with-its-password",
        ),
        pytest.param(
            ("prompted@example.com",),
            "secretpass1\nsecretpass1\n",
            "Password",
            "prompted@example.com",
            "secretpass1",
            id="prompting-for-the-password",
        ),
    ],
)
async def test_create_admin_creates_admin_that_can_log_in(
    cli_app: Quart,
    database_file: Path,
    args: tuple[str, ...],
    typed: str | None,
    says: str,
    email: str,
    password: str,
) -> None:
    result = await invoke(cli_app, "create-admin", *args, input=typed)
    assert result.exit_code == 0, result.output
    assert says in result.output
    assert users_in(database_file) == [(email, 1)]
    assert await login_status(cli_app, email, password) == 200


@pytest.mark.parametrize("again", ["boss@example.com", "BOSS@Example.com"])
async def test_create_admin_existing_email_reports_already_exists(
    cli_app: Quart, database_file: Path, again: str
) -> None:
    await invoke(cli_app, "create-admin", "boss@example.com", "bosspass123")
    result = await invoke(cli_app, "create-admin", again, "otherpass123")
    assert result.exit_code == 0, result.output
    assert "already exists" in result.output
    assert users_in(database_file) == [("boss@example.com", 1)]


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("not-an-email", "validpass123", "Not a valid email address."),
        ("short@example.com", "short", "Length must be between 8 and 128."),
    ],
)
async def test_create_admin_invalid_input_fails_without_creating(
    cli_app: Quart, database_file: Path, email: str, password: str, message: str
) -> None:
    result = await invoke(cli_app, "create-admin", email, password)
    assert result.exit_code != 0
    assert message in result.output
    assert users_in(database_file) == []


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        ({"JWT_SECRET_KEY": None}, "JWT_SECRET_KEY"),
        ({"SECRET_KEY": None}, "SECRET_KEY"),
        ({"JWT_SECRET_KEY": ""}, "JWT_SECRET_KEY"),
        ({"JWT_SECRET_KEY": "changeme"}, "JWT_SECRET_KEY"),
        # The Flask-era fallback and the development defaults.
        ({"SECRET_KEY": "dev-secret-key-change-me-0123456789"}, "SECRET_KEY"),
        (
            {"JWT_SECRET_KEY": "development-jwt-secret-key-not-for-production"},
            "JWT_SECRET_KEY",
        ),
        ({"DATABASE_URL": None}, "DATABASE_URL"),
        ({"DATABASE_URL": ""}, "DATABASE_URL"),
    ],
)
def test_settings_from_env_production_refuses_missing_or_placeholder(
    changes: Mapping[str, str | None], names: str
) -> None:
    with pytest.raises(ConfigError, match=names):
        Settings.from_env(production_env(**changes))


@pytest.mark.parametrize(
    "url",
    [
        "postgres://app:pw@db.internal:5432/app",
        "postgresql://app:pw@db.internal:5432/app",
        "postgresql+asyncpg://app:pw@db.internal:5432/app",
    ],
)
def test_settings_from_env_production_accepts_postgres_urls_as_asyncpg(
    url: str,
) -> None:
    settings = Settings.from_env(production_env(DATABASE_URL=url))
    assert settings.env == "production"
    assert settings.database_url == "postgresql+asyncpg://app:pw@db.internal:5432/app"
    assert settings.jwt_secret_key == PRODUCTION_JWT_KEY
    assert settings.secret_key == PRODUCTION_SECRET_KEY


def soft_delete(path: Path, email: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute(
            "UPDATE users SET deleted_at = CURRENT_TIMESTAMP WHERE email = ?", (email,)
        )


async def test_create_admin_refuses_over_a_deleted_account_naming_it(
    cli_app: Quart, database_file: Path
) -> None:
    await invoke(cli_app, "create-admin", "gone@example.com", "gonepass123")
    soft_delete(database_file, "gone@example.com")

    result = await invoke(cli_app, "create-admin", "Gone@example.com", "newpass123")

    assert result.exit_code != 0
    assert "gone@example.com is a deleted account (id 1" in result.output
    assert "--restore" in result.output
    assert users_in(database_file) == [("gone@example.com", 1)]


async def test_create_admin_restore_brings_the_deleted_account_back(
    cli_app: Quart, database_file: Path
) -> None:
    await invoke(cli_app, "create-admin", "back@example.com", "backpass123")
    soft_delete(database_file, "back@example.com")

    result = await invoke(
        cli_app, "create-admin", "--restore", "back@example.com", "ignored123"
    )

    assert result.exit_code == 0, result.output
    assert "restored as an admin" in result.output
    assert users_in(database_file) == [("back@example.com", 1)]
    assert await login_status(cli_app, "back@example.com", "backpass123") == 200


async def test_create_admin_bootstrap_creates_the_first_admin_only(
    cli_app: Quart, database_file: Path
) -> None:
    first = await invoke(
        cli_app, "create-admin", "--bootstrap", "first@example.com", "firstpass123"
    )
    again = await invoke(
        cli_app, "create-admin", "--bootstrap", "other@example.com", "otherpass123"
    )

    assert first.exit_code == 0, first.output
    assert again.exit_code == 0, again.output
    assert "nothing to bootstrap" in again.output
    assert users_in(database_file) == [("first@example.com", 1)]


async def test_create_admin_bootstrap_after_the_admin_was_deleted_changes_nothing(
    cli_app: Quart, database_file: Path
) -> None:
    # A rollout (compose's migrate, the k8s Job) after operators deleted the
    # bootstrap admin: nobody comes back with the secret's password.
    await invoke(
        cli_app, "create-admin", "--bootstrap", "admin@example.com", "adm1n-pass"
    )
    soft_delete(database_file, "admin@example.com")

    result = await invoke(
        cli_app, "create-admin", "--bootstrap", "admin@example.com", "adm1n-pass"
    )

    assert result.exit_code == 0, result.output
    assert users_in(database_file) == [("admin@example.com", 1)]
    assert await login_status(cli_app, "admin@example.com", "adm1n-pass") == 401
