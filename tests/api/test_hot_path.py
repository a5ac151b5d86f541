"""What a request no longer does: open a cookie session, build a UUID, load Redis."""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import re
from typing import Any

import pytest
from quart import Quart, request, session
from quart.sessions import NullSession
from quart.typing import TestClientProtocol as Client
from sqlalchemy import event
from werkzeug.exceptions import BadRequestKeyError

from service.db.request import app_database
from service.services.callers import SESSION_USER
from tests.support import ME, USERS, run_python_without_redis


async def test_request_gets_the_null_session_not_a_signed_cookie(app: Quart) -> None:
    async with app.test_request_context("/healthz"):
        assert isinstance(session._get_current_object(), NullSession)


async def test_response_sets_no_cookie(client: Client) -> None:
    response = await client.get("/healthz", headers={"Cookie": "session=forged"})

    assert "Set-Cookie" not in response.headers


async def test_generated_request_id_is_32_hex_digits(client: Client) -> None:
    response = await client.get("/healthz")

    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_worker_without_redis_url_does_not_load_the_redis_client() -> None:
    loaded = run_python_without_redis(
        "import sys, service.asgi; print(sorted(m for m in sys.modules"
        " if m.split('.')[0] == 'redis'))"
    )

    assert loaded.stdout.strip() == "[]"


async def asgi_get(
    app: Quart, target: str, headers: list[tuple[bytes, bytes]]
) -> list[dict[str, Any]]:
    """The messages the app sends for a GET, driven as Hypercorn drives it (no test
    client, whose own header handling is not the service's)."""
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "extensions": {},
    }
    sent: list[dict[str, Any]] = []
    requests = [{"type": "http.request", "body": b"", "more_body": False}]
    answered = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if requests:
            return requests.pop()
        # The connection closes once the answer is out.
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            answered.set()

    await app(scope, receive, send)  # type: ignore[arg-type]
    return sent


def raised_key_errors(profile: cProfile.Profile) -> int:
    """How many BadRequestKeyError were made while `profile` ran: werkzeug's
    Headers.get, setdefault and `in` make one for every header that is absent."""
    code = BadRequestKeyError.__init__.__code__
    key = (code.co_filename, code.co_firstlineno, code.co_name)
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    return int(stats[key][1]) if key in stats else 0


@pytest.mark.parametrize("target", [ME, f"{USERS}?page=1&per_page=20", "/healthz"])
async def test_serving_a_request_raises_no_header_lookup(
    app: Quart, user_headers: dict[str, str], target: str
) -> None:
    headers = [
        (name.lower().encode(), value.encode()) for name, value in user_headers.items()
    ]
    await asgi_get(app, target, headers)
    profile = cProfile.Profile()

    profile.enable()
    sent = await asgi_get(app, target, headers)
    profile.disable()

    assert sent[0]["status"] == 200
    assert raised_key_errors(profile) == 0


async def test_users_me_is_one_round_trip_the_token_checks(
    app: Quart, client: Client, user_headers: dict[str, str]
) -> None:
    """The second factors', passkeys' and accounts' work adds no query to the token
    check: /users/me answers from the row the check read, in its one query."""
    target = ME
    pool = app_database(app).engine.sync_engine.pool
    queries: list[str] = []

    def record(query: Any) -> None:
        queries.append(query.query)

    def watch(dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(record)

    def unwatch(dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.driver_connection.remove_query_logger(record)

    await client.get(target, headers=user_headers)
    event.listen(pool, "checkout", watch)
    event.listen(pool, "checkin", unwatch)
    try:
        response = await client.get(target, headers=user_headers)
        await asyncio.sleep(0.05)  # asyncpg calls its loggers soon, not now
    finally:
        event.remove(pool, "checkout", watch)
        event.remove(pool, "checkin", unwatch)

    assert response.status_code == 200
    assert queries == [SESSION_USER.asyncpg_sql]


async def test_request_blueprints_follow_the_matched_rule(app: Quart) -> None:
    async with app.test_request_context(ME):
        first = request.blueprints
        # The nested blueprint first, then its parent, as Quart lists them.
        assert first == ["api.users", "api"]
        assert request.blueprints is first  # computed once
        request.url_rule = None
        assert request.blueprints == []
