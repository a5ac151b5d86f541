"""The service on a real primary and a real streaming standby.

Each sequence writes, then reads, while the standby applies every write 2 s
late: the answers must be the primary's. Whether a read went to the standby
is read from the request log, the way an operator sees it; a standby that was
still behind after a read proves the read could not have used it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from quart import Quart
from quart.typing import TestClientProtocol as Client

from service import create_app
from service.config import Settings
from service.db.replicas import parse_lsn
from service.db.request import app_database
from tests.factories import (
    PASSWORD,
    committed_user,
    flask_headers_for,
)
from tests.support import (
    LOGIN,
    LOGOUT,
    ME,
    METRICS_TOKEN,
    REVOKED,
    USERS,
    bearer,
    registration,
    unique_email,
)
from tests.system.standbys import DATABASE, ReplicatedPair

JWT_KEY = "test-jwt-secret-key-0123456789-abcdefghij"


# Signs tokens as the served app's settings do.
SIGNER = Settings(jwt_secret_key=JWT_KEY)


def settings_for(pair: ReplicatedPair, **changes: Any) -> Settings:
    return Settings(
        env="testing",
        database_url=pair.primary_url(),
        database_replica_urls=(pair.replica_url(),),
        jwt_secret_key=JWT_KEY,
        secret_key="test-secret-key-0123456789-abcdefghijkl",
        password_hash_threads=2,
        metrics_token=METRICS_TOKEN,
        **changes,
    )


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Quart]:
    app = create_app(settings)
    async with app.test_app():
        yield app


@pytest.fixture
async def app(pair: ReplicatedPair) -> AsyncIterator[Quart]:
    async with serving(settings_for(pair)) as app:
        yield app


@pytest.fixture
def client(app: Quart) -> Client:
    return app.test_client()


async def primary_position(pair: ReplicatedPair) -> int:
    connection = await asyncpg.connect(pair.primary.dsn(DATABASE))
    try:
        return parse_lsn(await connection.fetchval("SELECT pg_current_wal_lsn()::text"))
    finally:
        await connection.close()


async def written(pair: ReplicatedPair, caplog: pytest.LogCaptureFixture) -> int:
    """Where the primary stands after a write; the access log is captured from now."""
    position = await primary_position(pair)
    caplog.set_level(logging.INFO, "service.access")
    return position


async def standby_has(pair: ReplicatedPair, position: int) -> bool:
    connection = await asyncpg.connect(pair.replica.dsn(DATABASE))
    try:
        replayed = await connection.fetchval("SELECT pg_last_wal_replay_lsn()::text")
        return parse_lsn(replayed) >= position
    finally:
        await connection.close()


def access_logs(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        record.fields  # type: ignore[attr-defined]
        for record in caplog.records
        if record.name == "service.access"
    ]


async def assert_read_on_primary_while_behind(
    pair: ReplicatedPair, caplog: pytest.LogCaptureFixture, written_at: int
) -> None:
    """The standby lacks the write even now: the last request cannot have used it."""
    if await standby_has(pair, written_at):
        return  # a machine slower than the 2 s delay: freshness was still checked
    last = access_logs(caplog)[-1]
    assert last["db_reads"] == {"primary": last["db_reads"]["primary"]}
    assert last["db_fallbacks"] == {"behind": last["db_reads"]["primary"]}


async def test_register_then_get(
    held_back: ReplicatedPair, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    reader = await committed_user(held_back.primary_url())
    email = unique_email("rr")
    created = await client.post(
        USERS,
        json=registration(email, last_name="Comer"),
    )
    assert created.status_code == 201
    body = await created.get_json()
    written_at = await written(held_back, caplog)

    got = await client.get(
        f"{USERS}/{body['id']}", headers=flask_headers_for(SIGNER, reader)
    )

    assert got.status_code == 200
    assert await got.get_json() == body
    await assert_read_on_primary_while_behind(held_back, caplog, written_at)


async def test_patch_then_list(
    held_back: ReplicatedPair, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    user = await committed_user(held_back.primary_url())
    await held_back.wait_caught_up()  # the standby knows the user, not the change
    name = uuid.uuid4().hex[:20]
    patched = await client.patch(
        f"{USERS}/{user.id}",
        json={"first_name": name},
        headers=flask_headers_for(SIGNER, user),
    )
    assert patched.status_code == 200
    written_at = await written(held_back, caplog)

    listed = await client.get(
        f"{USERS}?per_page=100", headers=flask_headers_for(SIGNER, user)
    )

    assert listed.status_code == 200
    [mine] = [u for u in (await listed.get_json())["users"] if u["id"] == user.id]
    assert mine["first_name"] == name
    await assert_read_on_primary_while_behind(held_back, caplog, written_at)


async def test_delete_then_get_as_another_user(
    held_back: ReplicatedPair, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await committed_user(held_back.primary_url(), is_admin=True)
    other = await committed_user(held_back.primary_url())
    doomed = await committed_user(held_back.primary_url())
    await held_back.wait_caught_up()  # the standby still shows the doomed user
    deleted = await client.delete(
        f"{USERS}/{doomed.id}", headers=flask_headers_for(SIGNER, admin)
    )
    assert deleted.status_code == 204
    written_at = await written(held_back, caplog)

    got = await client.get(
        f"{USERS}/{doomed.id}", headers=flask_headers_for(SIGNER, other)
    )

    assert got.status_code == 404
    await assert_read_on_primary_while_behind(held_back, caplog, written_at)
    listed = await client.get(
        f"{USERS}?per_page=100", headers=flask_headers_for(SIGNER, other)
    )
    assert doomed.id not in [u["id"] for u in (await listed.get_json())["users"]]


async def test_logout_then_any_request(
    held_back: ReplicatedPair, client: Client
) -> None:
    user = await committed_user(held_back.primary_url())
    login = await client.post(LOGIN, json={"email": user.email, "password": PASSWORD})
    assert login.status_code == 200
    token = (await login.get_json())["access_token"]
    headers = bearer(token)
    await held_back.wait_caught_up()  # the standby knows the live session
    assert (await client.post(LOGOUT, headers=headers)).status_code == 200

    for method, path in (
        ("GET", ME),
        ("GET", USERS),
        ("GET", f"{USERS}/{user.id}"),
        ("GET", "/api/v1/posts"),
        ("PATCH", f"{USERS}/{user.id}"),
    ):
        response = await client.open(
            path, method=method, headers=headers, json={} if method == "PATCH" else None
        )
        assert response.status_code == 401, (method, path)
        assert await response.get_json() == REVOKED


async def test_list_reads_of_a_quiet_primary_are_served_by_the_standby(
    pair: ReplicatedPair, caplog: pytest.LogCaptureFixture
) -> None:
    user = await committed_user(pair.primary_url())
    await pair.wait_caught_up()
    before = await pair.standby_commits()
    caplog.set_level(logging.INFO, "service.access")
    reads = 10
    async with serving(settings_for(pair)) as app:
        client = app.test_client()
        for _ in range(reads):
            response = await client.get(
                f"{USERS}?per_page=5", headers=flask_headers_for(SIGNER, user)
            )
            assert response.status_code == 200
        metrics = await client.get("/metrics", headers=bearer(METRICS_TOKEN))
        exported = _samples(await metrics.get_data(as_text=True))
    # The app is stopped: its standby connections are closed, and a closing
    # backend reports its statistics at once.
    name = f"127.0.0.1:{pair.replica.port}/{DATABASE}"
    logged = [entry for entry in access_logs(caplog) if entry["path"] == USERS]
    assert [entry["db_reads"] for entry in logged] == [{name: 1}] * reads
    assert exported[("db_replica_reads_total", name)] == reads
    # Each read is at least one transaction there (count and page: two).
    await pair.wait_for_standby_commits(before + reads)


@pytest.mark.parametrize("token", ["flask", "session"])
async def test_the_token_checks_own_query_reads_the_floor_of_the_reads(
    pair: ReplicatedPair, caplog: pytest.LogCaptureFixture, token: str
) -> None:
    user = await committed_user(pair.primary_url())
    reads = 5
    async with serving(settings_for(pair)) as app:
        client = app.test_client()
        if token == "flask":
            headers = flask_headers_for(SIGNER, user)
        else:
            login = await client.post(
                LOGIN, json={"email": user.email, "password": PASSWORD}
            )
            headers = bearer((await login.get_json())["access_token"])
        replicas = app_database(app).replicas
        assert replicas is not None
        # The first read looks the WAL's page layout up, once per process.
        first = await client.get(f"{USERS}?per_page=5", headers=headers)
        assert first.status_code == 200
        lookups = replicas.position.lookups
        await pair.wait_caught_up()

        for _ in range(reads):
            response = await client.get(f"{USERS}?per_page=5", headers=headers)
            assert response.status_code == 200

        assert replicas.position.lookups == lookups <= 1
    name = f"127.0.0.1:{pair.replica.port}/{DATABASE}"
    logged = [entry for entry in access_logs(caplog) if entry["path"] == USERS]
    assert [entry["db_reads"] for entry in logged[-reads:]] == [{name: 1}] * reads


async def test_stopping_the_standby_mid_run_fails_no_request(
    pair: ReplicatedPair, client: Client
) -> None:
    user = await committed_user(pair.primary_url())
    await pair.wait_caught_up()
    statuses: list[int] = []
    stopped = asyncio.Event()

    async def keep_reading() -> None:
        # Bounded: until a few rounds after the stop, whatever the machine's speed.
        after_stop = 0
        while after_stop < 20:
            response = await client.get(
                f"{USERS}?per_page=5", headers=flask_headers_for(SIGNER, user)
            )
            statuses.append(response.status_code)
            after_stop += stopped.is_set()

    readers = [asyncio.create_task(keep_reading()) for _ in range(4)]
    try:
        await asyncio.sleep(0.2)
        await asyncio.to_thread(pair.replica.stop, "fast")
        stopped.set()
        await asyncio.gather(*readers)
        assert set(statuses) == {200}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        [replica] = (await ready.get_json())["replicas"]
        assert replica["ready"] is False
        metrics = await client.get("/metrics", headers=bearer(METRICS_TOKEN))
        exported = _samples(await metrics.get_data(as_text=True))
        # Reads that found it gone (down) or lost it under them (failed).
        assert (
            exported[("db_replica_fallbacks_total", "down")]
            + exported[("db_replica_fallbacks_total", "failed")]
            > 0
        )
    finally:
        for reader in readers:
            reader.cancel()
        if not pair.replica.is_running():
            await asyncio.to_thread(pair.replica.start)
        await pair.wait_caught_up()


async def test_readyz_reports_each_replica(
    pair: ReplicatedPair, client: Client
) -> None:
    await pair.wait_caught_up()
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    body = await ready.get_json()
    assert body["status"] == "ready"
    [replica] = body["replicas"]
    assert replica["name"] == f"127.0.0.1:{pair.replica.port}/{DATABASE}"
    assert replica["ready"] is True


def _samples(text: str) -> dict[tuple[str, str], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            label = sample.labels.get("target") or sample.labels.get("reason") or ""
            found[(sample.name, label)] = sample.value
    return found
