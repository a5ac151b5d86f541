"""An admin's view of a user's sessions: GET and DELETE /users/{id}/sessions."""

from __future__ import annotations

import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.models import User
from tests.factories import flask_headers_for, login_tokens, make_user
from tests.support import API, ME, REVOKED, bearer, login, send

ADMIN_REQUIRED = {"error": "Admin access required"}


def sessions_of(user_id: int) -> str:
    return f"{API}/users/{user_id}/sessions"


async def test_admin_lists_a_users_live_sessions(
    client: Client, user: User, admin_headers: dict[str, str]
) -> None:
    await login(client, user.email, ip="192.0.2.1", user_agent="phone")
    ended = await login(client, user.email, ip="192.0.2.2", user_agent="laptop")
    await client.post(f"{API}/auth/logout", headers=bearer(ended["access_token"]))

    response = await client.get(sessions_of(user.id), headers=admin_headers)

    body = await response.get_json()
    assert response.status_code == 200
    assert [(s["ip"], s["user_agent"], s["current"]) for s in body["sessions"]] == [
        ("192.0.2.1", "phone", False)
    ]


async def test_admin_ends_every_session_of_a_user(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    user: User,
    admin_user: User,
    admin_headers: dict[str, str],
) -> None:
    first = await login_tokens(session, settings, user)
    second = await login_tokens(session, settings, user)
    flask_era = flask_headers_for(settings, user)

    response = await send(client, "DELETE", sessions_of(user.id), headers=admin_headers)

    assert response.status_code == 204
    assert await response.get_data() == b""
    for headers in (bearer(first.access_token), bearer(second.access_token), flask_era):
        refused = await client.get(ME, headers=headers)
        assert (refused.status_code, await refused.get_json()) == (401, REVOKED)
    # The admin's own session is not the user's: it goes on.
    assert (await client.get(ME, headers=admin_headers)).status_code == 200
    events = await client.get(f"{API}/users/{user.id}/events", headers=admin_headers)
    [ended] = (await events.get_json())["events"]
    assert (ended["type"], ended["detail"]) == ("session_ended", "admin")
    listed = await client.get(sessions_of(user.id), headers=admin_headers)
    assert (await listed.get_json())["sessions"] == []


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_non_admin_cannot_see_or_end_anothers_sessions(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    user_headers: dict[str, str],
    method: str,
) -> None:
    other = await make_user(session)
    tokens = await login_tokens(session, settings, other)

    response = await send(client, method, sessions_of(other.id), headers=user_headers)

    assert response.status_code == 403
    assert await response.get_json() == ADMIN_REQUIRED
    assert (
        await client.get(ME, headers=bearer(tokens.access_token))
    ).status_code == 200


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_sessions_of_an_unknown_user_404(
    client: Client, admin_headers: dict[str, str], absent_user_id: int, method: str
) -> None:
    response = await send(
        client, method, sessions_of(absent_user_id), headers=admin_headers
    )

    assert response.status_code == 404
    assert await response.get_json() == {
        "error": f"User with id {absent_user_id} not found"
    }


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_admin_sessions_need_a_token(
    client: Client, user: User, method: str
) -> None:
    response = await send(client, method, sessions_of(user.id))

    assert response.status_code == 401
