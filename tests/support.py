"""The suite's helpers: database set-up, free ports, bearer headers, logins over
the API, and a user's JSON as the API answers it (tests/factories.py builds rows)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg
from alembic import command
from alembic.config import Config
from quart import Quart, Response
from quart.typing import TestClientProtocol as Client
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.config import normalize_database_url
from tests import backends

# The conftest's make_app / make_bound_app: `async with make_app(**changes) as app`.
AppMaker = Callable[..., AbstractAsyncContextManager[Quart]]
# Every factory user's password (tests/factories.py hashes it once).
PASSWORD = "password123"
LOGIN = "/api/v1/auth/login"
ROOT = Path(__file__).resolve().parent.parent
# The server the suite talks to (tests/backends.py picks it); it creates and
# drops its own databases there.
ADMIN_DSN = backends.postgres_dsn()


# The Flask service's schema as `db.create_all()` left it (FLASK-BEHAVIOUR.md),
# written out the way pg_dump shows a SERIAL column: an owned integer sequence,
# the named primary key and foreign key.
FLASK_DDL = (
    "CREATE SEQUENCE users_id_seq AS integer",
    """
    CREATE TABLE users (
        id integer NOT NULL DEFAULT nextval('users_id_seq'),
        email character varying(255) NOT NULL,
        password_hash character varying(255) NOT NULL,
        first_name character varying(100) NOT NULL,
        last_name character varying(100) NOT NULL,
        is_active boolean NOT NULL,
        is_admin boolean NOT NULL,
        created_at timestamp without time zone NOT NULL,
        updated_at timestamp without time zone NOT NULL,
        deleted_at timestamp without time zone,
        CONSTRAINT users_pkey PRIMARY KEY (id)
    )
    """,
    "ALTER SEQUENCE users_id_seq OWNED BY users.id",
    "CREATE UNIQUE INDEX ix_users_email ON users (email)",
    "CREATE SEQUENCE posts_id_seq AS integer",
    """
    CREATE TABLE posts (
        id integer NOT NULL DEFAULT nextval('posts_id_seq'),
        title character varying(200) NOT NULL,
        content character varying NOT NULL,
        author_id integer NOT NULL,
        created_at timestamp without time zone NOT NULL,
        updated_at timestamp without time zone NOT NULL,
        CONSTRAINT posts_pkey PRIMARY KEY (id),
        CONSTRAINT posts_author_id_fkey FOREIGN KEY (author_id) REFERENCES users(id)
    )
    """,
    "ALTER SEQUENCE posts_id_seq OWNED BY posts.id",
)


def database_url(name: str) -> str:
    base = ADMIN_DSN.rsplit("/", 1)[0]
    return normalize_database_url(f"{base}/{name}")


async def recreate_database(name: str) -> str:
    connection = await asyncpg.connect(ADMIN_DSN)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return database_url(name)


async def drop_database(name: str) -> None:
    connection = await asyncpg.connect(ADMIN_DSN)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def alembic_config() -> Config:
    return Config(toml_file=str(ROOT / "pyproject.toml"))


async def migrate(
    engine: AsyncEngine, command_name: str = "upgrade", revision: str = "head"
) -> None:
    config = alembic_config()

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        getattr(command, command_name)(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


@asynccontextmanager
async def migrated_database(name: str) -> AsyncIterator[AsyncEngine]:
    """A new database `name` at Alembic's head, dropped when the block ends."""
    engine = create_async_engine(await recreate_database(name))
    await migrate(engine)
    try:
        yield engine
    finally:
        await engine.dispose()
        await drop_database(name)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post_login(
    client: Client,
    email: str,
    password: str = PASSWORD,
    *,
    user_agent: str | None = None,
    ip: str | None = None,
) -> Response:
    """POST /auth/login from `ip` with a `User-Agent` (where given): the response."""
    return await client.post(
        LOGIN,
        json={"email": email, "password": password},
        headers={"User-Agent": user_agent} if user_agent is not None else None,
        scope_base={"client": (ip, 40000)} if ip is not None else None,
    )


async def login(
    client: Client,
    email: str,
    password: str = PASSWORD,
    *,
    user_agent: str | None = None,
    ip: str | None = None,
) -> dict[str, str]:
    """POST /auth/login, which must succeed: the token pair."""
    response = await post_login(client, email, password, user_agent=user_agent, ip=ip)
    assert response.status_code == 200, await response.get_data(as_text=True)
    tokens: dict[str, str] = await response.get_json()
    return tokens


class UserFields(Protocol):
    """What a user's JSON is made of: the model, or the Flask service's row."""

    @property
    def email(self) -> str: ...

    @property
    def first_name(self) -> str: ...

    @property
    def last_name(self) -> str: ...

    @property
    def is_active(self) -> bool: ...

    @property
    def is_admin(self) -> bool: ...

    @property
    def created_at(self) -> datetime: ...

    @property
    def updated_at(self) -> datetime: ...


def user_json(user: UserFields, user_id: int | None = None) -> dict[str, Any]:
    """The API's JSON of a user (`user_id` where the row's id is not `user.id`)."""
    return {
        "created_at": user.created_at.isoformat(),
        "email": user.email,
        "first_name": user.first_name,
        "full_name": f"{user.first_name} {user.last_name}",
        "id": getattr(user, "id", None) if user_id is None else user_id,
        "is_active": user.is_active,
        "is_admin": user.is_admin,
        "last_name": user.last_name,
        "updated_at": user.updated_at.isoformat(),
    }


# What production needs beyond the Flask deployment's variables (docs/MIGRATING.md):
# the Flask service had no reset mail.
RESET_MAIL = {
    "MAIL_BACKEND": "log",
    "PASSWORD_RESET_URL": "https://app.example.com/reset?token={token}",
}


def json_log_lines(path: Path, containing: str = "") -> list[dict[str, Any]]:
    """A served instance's JSON log records, read from its output file."""
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        if containing not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries
