"""The suite's helpers: database set-up, the API's paths and the answers tests
expect in full, the requests many tests make (logins, refreshes, password
changes), a user's and a post's JSON as the API answers them, and cases() for
parameter tables (tests/factories.py builds rows)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import pytest
from alembic import command
from alembic.config import Config
from quart import Quart, Response
from quart.typing import TestClientProtocol as Client
from redis.asyncio import Redis
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.config import normalize_database_url
from service.models import Post, User
from service.schemas.user import NewUser
from service.throttle.keys import account_key, ip_key
from tests import backends

# The conftest's make_app / make_bound_app: `async with make_app(**changes) as app`.
AppMaker = Callable[..., AbstractAsyncContextManager[Quart]]
# The conftest's start_app: `app = await start_app(**changes)`.
AppStarter = Callable[..., Awaitable[Quart]]
# The conftest's make_instances: `a, b = await make_instances(**changes)`.
InstancesMaker = Callable[..., Awaitable[tuple[Client, Client]]]
# Every factory user's password (tests/factories.py hashes it once).
PASSWORD = "password123"
ROOT = Path(__file__).resolve().parent.parent
# The server the suite talks to (tests/backends.py picks it); it creates and
# drops its own databases there.
ADMIN_DSN = backends.postgres_dsn()


# The API's paths, and the answers many tests expect in full.
API = "/api/v1"
LOGIN = f"{API}/auth/login"
REFRESH = f"{API}/auth/refresh"
LOGOUT = f"{API}/auth/logout"
PASSWORD_CHANGE = f"{API}/auth/password"
FORGOT = f"{API}/auth/password/forgot"
RESET = f"{API}/auth/password/reset"
SESSIONS = f"{API}/auth/sessions"
USERS = f"{API}/users"
ME = f"{USERS}/me"
POSTS = f"{API}/posts"
ACCOUNT = f"{API}/auth/account"
FRESH = f"{API}/auth/fresh"
MFA = f"{API}/auth/login/mfa"
PASSKEYS = f"{API}/auth/passkeys"
REVOKED = {"msg": "Token has been revoked", "error": "Token has been revoked"}
FRESH_REQUIRED = {"msg": "Fresh token required", "error": "Fresh token required"}
INVALID_CODE = {"error": "Invalid code"}
INVALID_MFA_TOKEN = {"error": "Invalid or expired mfa_token"}
MISSING_HEADER = {
    "msg": "Missing Authorization Header",
    "error": "Missing Authorization Header",
}
INVALID_CREDENTIALS = {"error": "Invalid email or password"}
TOO_MANY = {"error": "Too many failed login attempts; try again later"}
UNAVAILABLE = {"error": "Service unavailable"}
ROUTE_NOT_FOUND = {
    "error": "The requested URL was not found on the server. If you entered the URL "
    "manually please check your spelling and try again."
}
BAD_REQUEST = {
    "error": "The browser (or proxy) sent a request that this server could not "
    "understand."
}
NOT_JSON = {
    "error": "Did not attempt to load JSON data because the request Content-Type "
    "was not 'application/json'."
}
TOO_LARGE = {"error": "The data value transmitted exceeds the capacity limit."}
MISSING = ["Missing data for required field."]
METRICS_TOKEN = "metrics-token-0123456789abcdef"

# The Flask service's schema as `db.create_all()` left it (tests/parity/flask_original),
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


async def migrate_sqlite(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Alembic's upgrade to head on a SQLite `url`, as `alembic upgrade` runs it."""
    # env.py takes the URL from DATABASE_URL and calls asyncio.run itself, so the
    # command runs in a thread, away from the test's event loop.
    monkeypatch.setenv("DATABASE_URL", url)
    await asyncio.to_thread(command.upgrade, alembic_config(), "head")


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


def run_python_without_redis(
    script: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """`script` in a fresh interpreter of this venv at the repository's root, its
    output kept: the service configured on an in-memory SQLite and no Redis, `env`
    on top. Raises if the script fails."""
    environment = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    environment |= {"DATABASE_URL": "sqlite+aiosqlite:///:memory:", **env}
    return subprocess.run(  # noqa: S603 (this interpreter, the test's script)
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )


@contextmanager
def serve_get(
    answer: Callable[[BaseHTTPRequestHandler], tuple[str, bytes]],
) -> Iterator[int]:
    """An HTTP server on 127.0.0.1 answering every GET 200 with the content type
    and body `answer(request)` gives; its port, until the block ends."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            content_type, body = answer(self)
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test's output, not a line per request

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def cases(names: str, table: Mapping[str, Any]) -> pytest.MarkDecorator:
    """`@pytest.mark.parametrize` over a table of {id: the arguments}."""
    return pytest.mark.parametrize(names, list(table.values()), ids=list(table))


def unique_email(prefix: str = "user") -> str:
    """An address no other test, nor a run at the same time, has (for rows that
    are committed for real, or keys in a Redis other runs share)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


class Names:
    """Unique emails and IPs for the login throttle; the Redis keys they name
    are remembered, so that `delete_keys` can remove them afterwards."""

    def __init__(self, prefix: str = "throttle") -> None:
        self.prefix = prefix
        self.keys: set[str] = set()

    def email(self) -> str:
        return self.track(unique_email(self.prefix))

    def ip(self) -> str:
        # A /64 of its own: the throttle budgets IPv6 clients per /64.
        hex_ = uuid.uuid4().hex
        ip = f"2001:db8:{hex_[:4]}:{hex_[4:8]}::{hex_[8:12]}"
        self.keys.add(ip_key(ip))
        return ip

    def track(self, email: str) -> str:
        self.keys.add(account_key(email))
        return email

    async def delete_keys(self, redis_url: str) -> None:
        keys = [k for key in self.keys for k in (key, f"{key}:holds", f"{key}:settled")]
        if not keys:
            return
        redis: Redis = Redis.from_url(redis_url)
        try:
            await redis.delete(*keys)
        finally:
            await redis.aclose()


def registration(
    email: str,
    *,
    password: str = PASSWORD,
    first_name: str = "New",
    last_name: str = "User",
) -> NewUser:
    """The body of POST /users (what UserService.register takes) for `email`."""
    return {
        "email": email,
        "password": password,
        "first_name": first_name,
        "last_name": last_name,
    }


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
    client: Client, email: str, password: str = PASSWORD, **client_is: str | None
) -> dict[str, str]:
    """POST /auth/login (from post_login's `ip`, `user_agent`), which must
    succeed: the token pair."""
    response = await post_login(client, email, password, **client_is)
    assert response.status_code == 200, await response.get_data(as_text=True)
    tokens: dict[str, str] = await response.get_json()
    return tokens


async def send(client: Client, method: str, path: str, **options: Any) -> Response:
    """`client.open` for any method: quart.typing's protocol wrongly makes `json`
    required, and json=None would send a JSON null, not no body."""
    return await client.open(path, method=method, **options)


async def post_refresh(client: Client, token: str) -> Response:
    """POST /auth/refresh with `token`."""
    return await client.post(REFRESH, headers=bearer(token))


async def refreshed(client: Client, token: str) -> dict[str, str]:
    """POST /auth/refresh, which must succeed: the new tokens."""
    response = await post_refresh(client, token)
    assert response.status_code == 200, await response.get_data(as_text=True)
    tokens: dict[str, str] = await response.get_json()
    return tokens


async def get_me(client: Client, token: str) -> Response:
    """GET /users/me with `token`."""
    return await client.get(ME, headers=bearer(token))


async def change_password(
    client: Client,
    headers: dict[str, str] | None,
    new_password: str,
    current_password: str = PASSWORD,
) -> Response:
    """POST /auth/password with `headers` (None: without a token)."""
    return await client.post(
        PASSWORD_CHANGE,
        json={"current_password": current_password, "new_password": new_password},
        headers=headers,
    )


class UserFields(Protocol):
    """What a user's JSON is made of: the model, or the Flask service's row."""

    email: str
    first_name: str
    last_name: str
    is_active: bool
    is_admin: bool
    created_at: datetime
    updated_at: datetime


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


def post_json(post: Post, author: User) -> dict[str, Any]:
    return {
        "id": post.id,
        "title": post.title,
        "content": post.content,
        "author_id": author.id,
        "author": {"id": author.id, "full_name": author.full_name},
        "created_at": post.created_at.isoformat(),
        "updated_at": post.updated_at.isoformat(),
    }


# Five items, index 4 the newest, listed with a query: the indexes the page holds,
# and the page, per_page and pages the answer states.
PAGE_MATH = {
    "first": ({"page": "1", "per_page": "2"}, [4, 3], 1, 2, 3),
    "second": ({"page": "2", "per_page": "2"}, [2, 1], 2, 2, 3),
    "last-partial": ({"page": "3", "per_page": "2"}, [0], 3, 2, 3),
    "past-end": ({"page": "9", "per_page": "2"}, [], 9, 2, 3),
    "past-end-default-size": ({"page": "2"}, [], 2, 20, 1),
    "page-beyond-int32": ({"page": "99999999999"}, [], 99999999999, 20, 1),
    "page-beyond-int64": ({"page": str(2**63)}, [], 2**63, 20, 1),
    "page-1e20": ({"page": str(10**20)}, [], 10**20, 20, 1),
    "page-0": ({"page": "0", "per_page": "2"}, [4, 3], 1, 2, 3),
    "page-neg": ({"page": "-3", "per_page": "2"}, [4, 3], 1, 2, 3),
    "per_page-0": ({"per_page": "0"}, [4, 3, 2, 1, 0], 1, 20, 1),
    "per_page-negative": ({"per_page": "-5"}, [4, 3, 2, 1, 0], 1, 20, 1),
    "junk": ({"page": "abc", "per_page": "x"}, [4, 3, 2, 1, 0], 1, 20, 1),
    "exact-fit": ({"per_page": "5"}, [4, 3, 2, 1, 0], 1, 5, 1),
}


def page_json(
    key: str,
    items: list[Any],
    *,
    total: int,
    pages: int,
    page: int = 1,
    per_page: int = 20,
) -> dict[str, Any]:
    """A page of a list route as the API answers it: the items under `key`."""
    return {
        key: items,
        "page": page,
        "per_page": per_page,
        "total": total,
        "pages": pages,
    }


# The operations anyone may call, without a token.
PUBLIC_OPERATIONS = [
    "GET /healthz",
    "GET /readyz",
    "POST /api/v1/auth/email/confirm",
    "POST /api/v1/auth/email/verify",
    "POST /api/v1/auth/login",
    "POST /api/v1/auth/login/mfa",
    "POST /api/v1/auth/passkeys/login",
    "POST /api/v1/auth/passkeys/login/options",
    "POST /api/v1/auth/password/forgot",
    "POST /api/v1/auth/password/reset",
    "POST /api/v1/users",
]


# What production needs beyond the Flask deployment's variables (docs/MIGRATING.md):
# the Flask service had no reset mail, address verification, second factors nor
# passkeys.
RESET_MAIL = {
    "MFA_ENCRYPTION_KEY": "production-mfa-encryption-key-0123456789-abc",
    "MAIL_BACKEND": "log",
    "PASSWORD_RESET_URL": "https://app.example.com/reset?token={token}",
    "EMAIL_VERIFY_URL": "https://app.example.com/verify-email?token={token}",
    "EMAIL_CHANGE_URL": "https://app.example.com/confirm-email?token={token}",
    "WEBAUTHN_RP_ID": "app.example.com",
    "WEBAUTHN_ORIGINS": "https://app.example.com",
}
