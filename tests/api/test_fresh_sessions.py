"""Fresh sessions: a login or POST /auth/fresh makes the session fresh for
FRESH_SESSION_SECONDS; the routes that change an account's security want one.

Freshness lives on the session row, read by the token check's one query; the
tokens keep `fresh: false` as flask-jwt-extended's did. A stale session, and a
Flask-era token (no session), get flask-jwt-extended's 401 "Fresh token required".
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import jwt
from quart import Blueprint
from quart.typing import TestClientProtocol as Client
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.guards import (
    current_session,
    fresh_required,
    jwt_required,
    require_fresh,
)
from service.config import Settings
from service.models import AuthSession, User, utcnow
from service.request_state import request_state
from tests.factories import PASSWORD, flask_headers_for, login_headers, login_tokens
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


async def test_a_session_of_before_the_migration_is_stale(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    headers = await login_headers(session, settings, user)
    await session.execute(
        update(AuthSession).values(fresh_until=None, auth_method=None)
    )
    await session.commit()

    response = await client.delete(SESSIONS, headers=headers)

    assert response.status_code == 401
    assert await response.get_json() == FRESH_REQUIRED


async def test_a_flask_era_token_is_never_fresh(
    client: Client, settings: Settings, user: User
) -> None:
    response = await client.delete(SESSIONS, headers=flask_headers_for(settings, user))

    assert response.status_code == 401
    assert await response.get_json() == FRESH_REQUIRED


async def _stale_headers(
    session: AsyncSession, settings: Settings, user: User
) -> dict[str, str]:
    """A login's headers, its session (only) made stale."""
    tokens = await login_tokens(session, settings, user)
    sid = jwt.decode(tokens.access_token, options={"verify_signature": False})["sid"]
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == sid)
        .values(fresh_until=utcnow() - timedelta(seconds=1))
    )
    await session.commit()
    return bearer(tokens.access_token)


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


async def test_the_guard_reads_the_session_itself_without_revocation_check(
    make_app: AppMaker, session: AsyncSession, settings: Settings, user: User
) -> None:
    fresh = await login_headers(session, settings, user)
    stale = await _stale_headers(session, settings, user)
    async with make_app(guarded, revocation_check=False) as app:
        client = app.test_client()
        fresh_answer = await client.post("/fresh-guarded", headers=fresh)
        stale_answer = await client.post("/fresh-guarded", headers=stale)

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
    fresh = await login_headers(session, settings, user)
    stale = await _stale_headers(session, settings, user)
    async with make_app(guarded) as app:
        client = app.test_client()
        fresh_answer = await client.post("/fresh-decorated", headers=fresh)
        stale_answer = await client.post("/fresh-decorated", headers=stale)

    assert fresh_answer.status_code == 200
    assert stale_answer.status_code == 401
    assert await stale_answer.get_json() == FRESH_REQUIRED
