"""Fresh sessions: a login or POST /auth/fresh makes the session fresh for
FRESH_SESSION_SECONDS; the routes that change an account's security want one.

Freshness lives on the session row, read by the token check's one query; the
tokens keep `fresh: false` as flask-jwt-extended's did. A stale session, and a
Flask-era token (no session), get flask-jwt-extended's 401 "Fresh token required".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import pytest
from quart import Blueprint, Response
from quart.typing import TestClientProtocol as Client
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.guards import (
    current_session,
    fresh_required,
    jwt_required,
    require_fresh,
)
from service.config import Settings
from service.models import User
from service.request_state import request_state
from tests.factories import (
    PASSWORD,
    flask_headers_for,
    login_headers,
    login_tokens,
    make_stale,
    set_session_row,
)
from tests.support import (
    API,
    FRESH,
    FRESH_REQUIRED,
    SESSIONS,
    TOO_MANY,
    AppMaker,
    bearer,
    login,
)

INVALID_PASSWORD = {"error": "Invalid password"}


async def test_a_login_makes_a_fresh_session(client: Client, user: User) -> None:
    tokens = await login(client, user.email)

    response = await client.delete(SESSIONS, headers=bearer(tokens["access_token"]))

    assert response.status_code == 204


async def test_tokens_keep_fresh_false_as_flask_issued_them(
    client: Client, user: User
) -> None:
    tokens = await login(client, user.email)

    for token in tokens["access_token"], tokens["refresh_token"]:
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["fresh"] is False


async def test_a_session_goes_stale_after_fresh_session_seconds(
    make_app: AppMaker, user: User
) -> None:
    async with make_app(fresh_session_seconds=1) as app:
        client = app.test_client()
        tokens = await login(client, user.email)
        await asyncio.sleep(1.1)

        response = await client.delete(SESSIONS, headers=bearer(tokens["access_token"]))

    assert response.status_code == 401
    assert await response.get_json() == FRESH_REQUIRED


async def login_with_session(
    session: AsyncSession, settings: Settings, user: User, **row: Any
) -> dict[str, str]:
    """A login's headers, its session's row (only) given the values `row`."""
    return await set_session_row(
        session, await login_headers(session, settings, user), **row
    )


async def headers_of_before_the_migration(
    session: AsyncSession, settings: Settings, user: User
) -> dict[str, str]:
    """A login's headers, its session row as the migration found it: no freshness."""
    return await login_with_session(
        session, settings, user, fresh_until=None, auth_method=None
    )


async def flask_era_headers(
    session: AsyncSession, settings: Settings, user: User
) -> dict[str, str]:
    return flask_headers_for(settings, user)


@pytest.mark.parametrize(
    "headers_of",
    [headers_of_before_the_migration, flask_era_headers],
    ids=["a-session-of-before-the-migration", "a-flask-era-token"],
)
async def test_a_token_with_no_fresh_session_is_never_fresh(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    user: User,
    headers_of: Callable[[AsyncSession, Settings, User], Awaitable[dict[str, str]]],
) -> None:
    headers = await headers_of(session, settings, user)

    response = await client.delete(SESSIONS, headers=headers)

    assert response.status_code == 401
    assert await response.get_json() == FRESH_REQUIRED


async def _stale_headers(
    session: AsyncSession, settings: Settings, user: User
) -> dict[str, str]:
    """A login's headers, its session (only) made stale."""
    return await make_stale(session, await login_headers(session, settings, user))


async def test_post_fresh_with_the_password_makes_the_session_fresh(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    headers = await _stale_headers(session, settings, user)

    fresh = await client.post(FRESH, headers=headers, json={"password": PASSWORD})
    ended = await client.delete(SESSIONS, headers=headers)

    assert fresh.status_code == 204
    assert await fresh.get_data() == b""
    assert ended.status_code == 204


async def test_post_fresh_with_a_wrong_password_is_401_and_the_session_stays_stale(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    headers = await _stale_headers(session, settings, user)

    fresh = await client.post(FRESH, headers=headers, json={"password": "wrong"})
    ended = await client.delete(SESSIONS, headers=headers)

    assert fresh.status_code == 401
    assert await fresh.get_json() == INVALID_PASSWORD
    assert ended.status_code == 401


async def test_wrong_passwords_at_post_fresh_spend_the_login_budget(
    make_app: AppMaker, session: AsyncSession, settings: Settings, user: User
) -> None:
    headers = await login_headers(session, settings, user)
    async with make_app(login_max_failures=2) as app:
        client = app.test_client()
        answers = [
            await client.post(FRESH, headers=headers, json={"password": "wrong"})
            for _ in range(3)
        ]
        login_after = await client.post(
            f"{API}/auth/login", json={"email": user.email, "password": PASSWORD}
        )

    assert [answer.status_code for answer in answers] == [401, 401, 429]
    assert await answers[2].get_json() == TOO_MANY
    assert answers[2].headers["Retry-After"]
    assert login_after.status_code == 429


async def test_post_fresh_with_a_flask_era_token_says_log_in_again(
    client: Client, settings: Settings, user: User
) -> None:
    response = await client.post(
        FRESH, headers=flask_headers_for(settings, user), json={"password": PASSWORD}
    )

    assert response.status_code == 401
    assert await response.get_json() == FRESH_REQUIRED


async def test_post_fresh_needs_a_token(client: Client) -> None:
    response = await client.post(FRESH, json={"password": PASSWORD})

    assert response.status_code == 401


# The guard others reuse, on a route of the test's own.
guarded = Blueprint("fresh_guarded", __name__)


@guarded.post("/fresh-guarded")
@jwt_required()
async def fresh_guarded() -> dict[str, object]:
    # Read by the token check already: the guard makes no query of its own.
    read_with_check = request_state().auth_session is not None
    await require_fresh()
    session = await current_session()
    return {"read_with_check": read_with_check, "method": session.auth_method}


@guarded.post("/fresh-decorated")
@jwt_required()
@fresh_required
async def fresh_decorated() -> dict[str, object]:
    return {}


async def test_the_guard_reads_freshness_from_the_token_checks_row(
    make_app: AppMaker, session: AsyncSession, settings: Settings, user: User
) -> None:
    tokens = await login_tokens(session, settings, user)
    async with make_app(guarded) as app:
        response = await app.test_client().post(
            "/fresh-guarded", headers=bearer(tokens.access_token)
        )

    assert response.status_code == 200
    assert await response.get_json() == {"read_with_check": True, "method": "password"}


async def fresh_then_stale(
    make_app: AppMaker,
    session: AsyncSession,
    settings: Settings,
    user: User,
    path: str,
    **changes: Any,
) -> tuple[Response, Response]:
    """The answers of the guarded app's POST `path`: a fresh session's, then a
    stale one's."""
    fresh = await login_headers(session, settings, user)
    stale = await _stale_headers(session, settings, user)
    async with make_app(guarded, **changes) as app:
        client = app.test_client()
        return (
            await client.post(path, headers=fresh),
            await client.post(path, headers=stale),
        )


async def test_the_guard_reads_the_session_itself_without_revocation_check(
    make_app: AppMaker, session: AsyncSession, settings: Settings, user: User
) -> None:
    fresh_answer, stale_answer = await fresh_then_stale(
        make_app, session, settings, user, "/fresh-guarded", revocation_check=False
    )

    assert fresh_answer.status_code == 200
    assert await fresh_answer.get_json() == {
        "read_with_check": False,
        "method": "password",
    }
    assert stale_answer.status_code == 401
    assert await stale_answer.get_json() == FRESH_REQUIRED


async def test_the_decorator_answers_fresh_token_required_for_a_stale_session(
    make_app: AppMaker, session: AsyncSession, settings: Settings, user: User
) -> None:
    fresh_answer, stale_answer = await fresh_then_stale(
        make_app, session, settings, user, "/fresh-decorated"
    )

    assert fresh_answer.status_code == 200
    assert stale_answer.status_code == 401
    assert await stale_answer.get_json() == FRESH_REQUIRED
