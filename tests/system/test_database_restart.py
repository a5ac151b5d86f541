"""The database goes away under a running app, and comes back.

A throwaway PostgreSQL cluster of the module's own (not the shared server) is
stopped and started under an app that built its own engine and pool, as in
production. While the database is down requests must fail fast with a 503 JSON
body; once it is back the same app must serve again without a restart. A
frozen cluster (SIGSTOP) stands for a host that vanished without closing its
connections: requests must still end, with a 503, in bounded time.

Run with -s to see the measured times ("[ops]" lines).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from quart.typing import TestClientProtocol as Client
from quart.wrappers import Response
from sqlalchemy.ext.asyncio import create_async_engine

from service import create_app
from service.config import Settings
from tests.factories import PASSWORD, committed_user, flask_token_for
from tests.support import LOGIN, ME, UNAVAILABLE, USERS, bearer, migrate
from tests.system.harness import PostgresCluster

DATABASE = "service"
# A stopped database refuses connections at once; the bound leaves room for a
# connect timeout (2 s below) but not for a hang.
ANSWER_WITHIN = 5.0
RECOVER_WITHIN = 5.0
# An unresponsive server can only be given up on by timeouts: a few seconds of
# them, never an open-ended wait.
UNRESPONSIVE_WITHIN = 10.0
UNRESPONSIVE_GUARD = 12.0
POLL_INTERVAL = 0.05


@dataclass
class Running:
    client: Client
    headers: dict[str, str]
    email: str


async def timed(
    request: Awaitable[Response], within: float | None = None
) -> tuple[Response, float]:
    """The response and the seconds it took (TimeoutError past `within`)."""
    started = time.perf_counter()
    response = await asyncio.wait_for(request, within)
    return response, time.perf_counter() - started


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="module")
async def database_url(cluster: PostgresCluster) -> str:
    admin = await asyncpg.connect(cluster.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await admin.close()
    url = cluster.url(DATABASE)
    engine = create_async_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    return url


@pytest.fixture
async def running_cluster(cluster: PostgresCluster) -> PostgresCluster:
    # A test that failed half-way may have left it stopped.
    if not await asyncio.to_thread(cluster.is_running):
        await asyncio.to_thread(cluster.start)
    return cluster


@pytest.fixture
def restart_settings(database_url: str) -> Settings:
    return Settings(
        env="testing",
        database_url=database_url,
        jwt_secret_key="ops-jwt-secret-key-0123456789-abcdefghij",
        secret_key="ops-secret-key-0123456789-abcdefghijkl",
        db_connect_timeout=2,
        readiness_timeout=1,
        password_hash_threads=2,
    )


@pytest.fixture
async def running(
    running_cluster: PostgresCluster, restart_settings: Settings
) -> AsyncIterator[Running]:
    user = await committed_user(restart_settings.database_url)
    # The app's own engine and pool: no test sessionmaker is injected.
    app = create_app(restart_settings)
    async with app.test_app():
        client = app.test_client()
        headers = bearer(flask_token_for(restart_settings, user))
        # The pool now holds a connection the restart will kill.
        response = await client.get(ME, headers=headers)
        assert response.status_code == 200
        yield Running(client, headers, user.email)


@pytest.fixture
async def database_frozen(
    running: Running, running_cluster: PostgresCluster
) -> AsyncIterator[Running]:
    await asyncio.to_thread(running_cluster.freeze)
    try:
        yield running
    finally:
        await asyncio.to_thread(running_cluster.thaw)


@pytest.fixture
async def database_down(
    running: Running, running_cluster: PostgresCluster
) -> AsyncIterator[Running]:
    await asyncio.to_thread(running_cluster.stop, "fast")
    yield running
    if not await asyncio.to_thread(running_cluster.is_running):
        await asyncio.to_thread(running_cluster.start)


def request_args(name: str, running: Running) -> tuple[str, str, dict[str, Any]]:
    if name == "me":
        return "GET", ME, {"headers": running.headers}
    if name == "list":
        return "GET", USERS, {"headers": running.headers}
    assert name == "login"
    return "POST", LOGIN, {"json": {"email": running.email, "password": PASSWORD}}


async def test_requests_work_while_database_up(running: Running) -> None:
    response = await running.client.get(USERS, headers=running.headers)

    assert response.status_code == 200
    assert (await response.get_json())["total"] >= 1


@pytest.mark.parametrize("name", ["me", "list", "login"])
async def test_request_database_stopped_answers_503_json_quickly(
    database_down: Running, name: str
) -> None:
    method, path, kwargs = request_args(name, database_down)

    started = time.perf_counter()
    response = await database_down.client.open(path, method=method, **kwargs)
    elapsed = time.perf_counter() - started

    print(  # noqa: T201 (the number for the operations note: pytest -s shows it)
        f"\n[ops] {method} {path} with the database stopped: "
        f"{response.status_code} in {elapsed * 1000:.1f} ms"
    )
    assert response.status_code == 503
    assert response.mimetype == "application/json"
    body = await response.get_data(as_text=True)
    assert "Traceback" not in body
    assert await response.get_json() == UNAVAILABLE
    assert elapsed < ANSWER_WITHIN


async def test_request_database_unresponsive_answers_503_within_bound(
    database_frozen: Running,
) -> None:
    # A host that vanished (power loss, partition) neither refuses nor answers:
    # the pooled connection's pre-ping and every query wait on TCP until a
    # client-side timeout ends them. Without one the request never returns.
    try:
        response, elapsed = await timed(
            database_frozen.client.get(ME, headers=database_frozen.headers),
            UNRESPONSIVE_GUARD,
        )
    except TimeoutError:
        pytest.fail(f"GET {ME} still waiting after {UNRESPONSIVE_GUARD} s")

    assert response.status_code == 503
    assert await response.get_json() == UNAVAILABLE
    assert elapsed < UNRESPONSIVE_WITHIN


async def test_readyz_database_unresponsive_503_within_bound(
    database_frozen: Running,
) -> None:
    response, elapsed = await timed(
        database_frozen.client.get("/readyz"), UNRESPONSIVE_GUARD
    )

    assert response.status_code == 503
    assert await response.get_json() == {"error": "Database unavailable"}
    assert elapsed < ANSWER_WITHIN


async def test_readyz_database_stopped_503(database_down: Running) -> None:
    response, elapsed = await timed(database_down.client.get("/readyz"))

    assert response.status_code == 503
    assert await response.get_json() == {"error": "Database unavailable"}
    assert elapsed < ANSWER_WITHIN


async def test_healthz_database_stopped_still_200(database_down: Running) -> None:
    response = await database_down.client.get("/healthz")

    assert response.status_code == 200
    assert await response.get_json() == {"status": "ok"}


async def test_database_restarted_app_recovers_without_restart(
    database_down: Running, running_cluster: PostgresCluster
) -> None:
    client, headers = database_down.client, database_down.headers
    assert (await client.get(ME, headers=headers)).status_code == 503

    await asyncio.to_thread(running_cluster.start, wait=False)
    deadline = time.monotonic() + 30
    while not await asyncio.to_thread(running_cluster.is_ready):
        assert time.monotonic() < deadline, "the database did not come back"
        await asyncio.sleep(0.01)
    accepting = time.perf_counter()
    statuses = []
    while True:
        response = await client.get(ME, headers=headers)
        statuses.append(response.status_code)
        recovered = time.perf_counter() - accepting
        if response.status_code == 200 or recovered > RECOVER_WITHIN:
            break
        await asyncio.sleep(POLL_INTERVAL)

    print(  # noqa: T201 (the number for the operations note: pytest -s shows it)
        f"\n[ops] database accepting connections -> first 200 on {ME}: "
        f"{recovered * 1000:.1f} ms after {len(statuses)} request(s) {statuses}"
    )
    assert statuses[-1] == 200
    assert recovered < RECOVER_WITHIN
    assert (await client.get("/readyz")).status_code == 200


async def test_pooled_connections_terminated_next_request_200(
    running: Running, running_cluster: PostgresCluster
) -> None:
    admin = await asyncpg.connect(running_cluster.dsn())
    try:
        pids = await admin.fetch(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            DATABASE,
        )
        # pg_terminate_backend only signals: wait until the backends are gone.
        for _ in range(500):
            alive = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = any($1::int[])",
                [row["pid"] for row in pids],
            )
            if not alive:
                break
            await asyncio.sleep(0.01)
        assert not alive
    finally:
        await admin.close()
    assert pids  # at least the app's idle pooled connection

    # pool_pre_ping notices the dead connection and opens a new one.
    response = await running.client.get(ME, headers=running.headers)

    assert response.status_code == 200
