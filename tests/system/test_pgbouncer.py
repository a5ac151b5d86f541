"""The app behind a real PgBouncer in transaction pooling mode.

In transaction mode consecutive transactions of one client connection may run
on different server connections, so a statement asyncpg prepared on one of
them is missing on the next. `db_statement_cache=False` turns off both
statement caches (docs/configuration.md, DB_STATEMENT_CACHE). The load runs
the login and the user list many times, concurrently, through a PgBouncer with
two server connections; the single-connection tests move an app connection to
another server connection on purpose, which shows the default (caches on)
failing every time.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg
import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool

from service import create_app
from service.config import Settings
from service.db.request import app_database
from tests.factories import committed_user, flask_token_for
from tests.support import (
    ADMIN_DSN,
    LOGIN,
    ME,
    USERS,
    bearer,
    database_url,
    drop_database,
    migrate,
    registration,
)
from tests.support import recreate_database as create_database
from tests.system.harness import SERVICE_USER, PgBouncer

DATABASE = f"service_pgbouncer_{os.getpid()}"
SERVER_CONNECTIONS = 2
ROUNDS = 30
CONCURRENCY = 10
PASSWORD = "bouncer-password-123"
EMAIL = "bounced@example.com"


@dataclass
class Outcome:
    status: int
    body: str


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        formatter = logging.Formatter()
        return "\n".join(formatter.format(record) for record in self.records)


@dataclass
class Load:
    outcomes: list[Outcome] = field(default_factory=list)
    log: str = ""
    client_connections: int = 0
    server_connections: int = 0


@pytest.fixture(scope="module")
async def bouncer_database() -> AsyncIterator[str]:
    # Migrated directly: PgBouncer is for the app's traffic.
    url = await create_database(DATABASE)
    try:
        engine = create_async_engine(url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()
        yield DATABASE
    finally:
        await drop_database(DATABASE)


@pytest.fixture(scope="module")
def pgbouncer(bouncer_database: str) -> Iterator[PgBouncer]:
    server = make_url(database_url(bouncer_database))
    bouncer = PgBouncer(
        database=bouncer_database,
        server_host=server.host or "127.0.0.1",
        server_port=server.port or 5432,
        pool_size=SERVER_CONNECTIONS,
    )
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.remove()


def bouncer_settings(bouncer: PgBouncer, **changes: Any) -> Settings:
    settings = Settings(
        env="testing",
        database_url=bouncer.url(),
        jwt_secret_key="ops-jwt-secret-key-0123456789-abcdefghij",
        secret_key="ops-secret-key-0123456789-abcdefghijkl",
        db_statement_cache=False,
        password_hash_threads=2,
    )
    return replace(settings, **changes)


async def register_and_login(client: Client, email: str) -> dict[str, str]:
    response = await client.post(
        USERS,
        json=registration(email, password=PASSWORD, first_name="Bouncer"),
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    response = await client.post(LOGIN, json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, await response.get_data(as_text=True)
    tokens = await response.get_json()
    return bearer(tokens["access_token"])


async def one_request(client: Client, number: int, headers: dict[str, str]) -> Outcome:
    # One login per round: each costs a password hash (~100 ms of CPU).
    if number == 0:
        response = await client.post(LOGIN, json={"email": EMAIL, "password": PASSWORD})
    elif number % 2:
        response = await client.get(
            USERS, query_string={"per_page": 5}, headers=headers
        )
    else:
        response = await client.get(ME, headers=headers)
    return Outcome(response.status_code, await response.get_data(as_text=True))


async def server_connections() -> int:
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        count: int = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", DATABASE
        )
    finally:
        await admin.close()
    return count


@pytest.fixture(scope="module")
async def load(pgbouncer: PgBouncer) -> Load:
    """ROUNDS x CONCURRENCY requests through PgBouncer, run once for the module."""
    records = Records()
    logging.getLogger().addHandler(records)
    result = Load()
    try:
        app = create_app(bouncer_settings(pgbouncer))
        async with app.test_app():
            client = app.test_client()
            headers = await register_and_login(client, EMAIL)
            for _ in range(ROUNDS):
                result.outcomes += await asyncio.gather(
                    *(one_request(client, n, headers) for n in range(CONCURRENCY))
                )
            engine: AsyncEngine = app_database(app).engine
            pool = engine.sync_engine.pool
            assert isinstance(pool, QueuePool)
            result.client_connections = pool.checkedin()
            result.server_connections = await server_connections()
    finally:
        logging.getLogger().removeHandler(records)
    result.log = records.text()
    return result


def mentions_prepared_statement(text: str) -> bool:
    return "prepared statement" in text.lower()


async def test_load_through_pgbouncer_every_response_2xx(load: Load) -> None:
    failures = [o for o in load.outcomes if not 200 <= o.status < 300]

    assert failures == []
    assert len(load.outcomes) == ROUNDS * CONCURRENCY


async def test_load_through_pgbouncer_no_prepared_statement_error(load: Load) -> None:
    assert [o for o in load.outcomes if mentions_prepared_statement(o.body)] == []
    assert not mentions_prepared_statement(load.log)


async def test_load_through_pgbouncer_app_connections_share_server_connections(
    load: Load,
) -> None:
    # What makes the load a test: more app connections than server connections,
    # so one app connection's transactions ran on several server connections.
    assert load.client_connections > SERVER_CONNECTIONS
    assert 0 < load.server_connections <= SERVER_CONNECTIONS


async def request_on_another_server_connection(
    bouncer: PgBouncer, *, statement_cache: bool
) -> tuple[Outcome, Outcome, str]:
    """The same request twice on one app connection, on two server connections.

    PgBouncer hands out its idle server connections last-used first: an outside
    transaction held open between the two requests takes the server connection
    the first request used, so the second runs on a new one.
    """
    user = await committed_user(database_url(DATABASE))
    settings = bouncer_settings(
        bouncer, db_statement_cache=statement_cache, db_pool_size=1, db_max_overflow=0
    )
    headers = bearer(flask_token_for(settings, user))
    records = Records()
    logging.getLogger().addHandler(records)
    try:
        app = create_app(settings)
        async with app.test_app():
            client = app.test_client()
            first = await client.get(
                USERS, query_string={"per_page": 5}, headers=headers
            )
            holder = await asyncpg.connect(
                user=SERVICE_USER,
                host="127.0.0.1",
                port=bouncer.port,
                database=DATABASE,
                statement_cache_size=0,
            )
            try:
                await holder.execute("BEGIN; SELECT 1")
                second = await client.get(
                    USERS, query_string={"per_page": 5}, headers=headers
                )
            finally:
                await holder.execute("ROLLBACK")
                await holder.close()
    finally:
        logging.getLogger().removeHandler(records)
    return (
        Outcome(first.status_code, await first.get_data(as_text=True)),
        Outcome(second.status_code, await second.get_data(as_text=True)),
        records.text(),
    )


async def test_statement_cache_off_other_server_connection_200(
    pgbouncer: PgBouncer,
) -> None:
    first, second, log = await request_on_another_server_connection(
        pgbouncer, statement_cache=False
    )

    assert (first.status, second.status) == (200, 200)
    assert not mentions_prepared_statement(log)


async def test_statement_cache_on_other_server_connection_fails(
    pgbouncer: PgBouncer,
) -> None:
    # Why the setting exists: with the default caches the second request reuses
    # a statement prepared on the first server connection, which the new one
    # does not have.
    first, second, log = await request_on_another_server_connection(
        pgbouncer, statement_cache=True
    )

    assert first.status == 200
    assert second.status == 500
    assert mentions_prepared_statement(log)
