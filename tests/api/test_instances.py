"""Two app instances sharing one PostgreSQL database and one Redis, as replicas do.

Each replica has its own engine and pool on the per-run test database (no
rolled-back test connection: what one commits, the other must see), and its
own throttle client on Redis. Rows and Redis keys the tests create are named
after unique emails and IPs and deleted at the end of each test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service.config import Settings
from service.models import AuthSession, User
from tests import backends
from tests.factories import PASSWORD, flask_token_for, make_user
from tests.support import (
    LOGOUT,
    ME,
    REFRESH,
    REVOKED,
    TOO_MANY,
    AppStarter,
    Names,
    bearer,
    login,
    post_login,
)

REDIS_URL = backends.redis_url()
SMALL_LIMITS = {"login_max_failures": 3, "login_max_failures_per_ip": 5}
RACE_ROUNDS = 5
MakeReplicas = Callable[..., Awaitable[tuple[Client, Client]]]


@pytest.fixture
async def make_replicas(start_app: AppStarter) -> MakeReplicas:
    """Two apps, each with its own engine and pool on the run's database (what one
    commits, the other must see) and its own throttle client on the Redis."""

    async def make(**changes: Any) -> tuple[Client, Client]:
        first, second = [
            await start_app(redis_url=REDIS_URL, **changes) for _ in range(2)
        ]
        return first.test_client(), second.test_client()

    return make


async def new_user(session: AsyncSession, names: Names) -> User:
    return await make_user(session, email=names.email())


async def session_row(engine: AsyncEngine, sid: str) -> AuthSession:
    async with AsyncSession(engine) as session:
        row = await session.get(AuthSession, sid)
    assert row is not None
    return row


async def attempt(client: Client, email: str, password: str, *, peer: str) -> Any:
    return await post_login(client, email, password, ip=peer)


def claims(settings: Settings, token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(
        token, settings.jwt_secret_key, algorithms=["HS256"]
    )
    return decoded


# --- revocation ---------------------------------------------------------------------


async def test_logout_on_one_replica_is_refused_on_the_other_at_once(
    make_replicas: MakeReplicas, session: AsyncSession, names: Names
) -> None:
    a, b = await make_replicas()
    user = await new_user(session, names)
    tokens = await login(a, user.email, ip=names.ip())
    before = await a.get(ME, headers=bearer(tokens["access_token"]))

    logout = await b.post(LOGOUT, headers=bearer(tokens["access_token"]))
    me = await a.get(ME, headers=bearer(tokens["access_token"]))
    refreshed = await a.post(REFRESH, headers=bearer(tokens["refresh_token"]))

    assert (before.status_code, logout.status_code) == (200, 200)
    assert (me.status_code, await me.get_json()) == (401, REVOKED)
    assert (refreshed.status_code, await refreshed.get_json()) == (401, REVOKED)


LOGGED_OUT = (200, {"message": "Successfully logged out"})


async def test_concurrent_logouts_of_one_flask_token_answer_200_or_401(
    make_replicas: MakeReplicas, session: AsyncSession, names: Names, settings: Settings
) -> None:
    # A client retrying a logout, or two tabs: the loser must not trip over the
    # winner's revoked_tokens row.
    a, b = await make_replicas()
    user = await new_user(session, names)
    for _ in range(3):
        token = flask_token_for(settings, user)

        responses = await asyncio.gather(
            *(replica.post(LOGOUT, headers=bearer(token)) for replica in (a, b, a, b))
        )

        answers = [(r.status_code, await r.get_json()) for r in responses]
        assert all(answer in (LOGGED_OUT, (401, REVOKED)) for answer in answers), (
            answers
        )
        assert LOGGED_OUT in answers
        me = await a.get(ME, headers=bearer(token))
        assert (me.status_code, await me.get_json()) == (401, REVOKED)


async def test_concurrent_logouts_of_one_session_answer_200_or_401(
    make_replicas: MakeReplicas, session: AsyncSession, names: Names
) -> None:
    a, b = await make_replicas()
    user = await new_user(session, names)
    peer = names.ip()
    for _ in range(3):
        tokens = await login(a, user.email, ip=peer)

        responses = await asyncio.gather(
            *(
                replica.post(LOGOUT, headers=bearer(tokens["access_token"]))
                for replica in (a, b, a, b)
            )
        )

        answers = [(r.status_code, await r.get_json()) for r in responses]
        assert all(answer in (LOGGED_OUT, (401, REVOKED)) for answer in answers), (
            answers
        )
        assert LOGGED_OUT in answers


# --- throttling ---------------------------------------------------------------------


async def test_account_failures_on_both_replicas_add_up_to_one_budget(
    make_replicas: MakeReplicas, session: AsyncSession, names: Names
) -> None:
    a, b = await make_replicas(**SMALL_LIMITS)
    user = await new_user(session, names)
    for replica in (a, b, a):
        response = await attempt(replica, user.email, "wrong-password", peer=names.ip())
        assert response.status_code == 401

    on_a = await attempt(a, user.email, PASSWORD, peer=names.ip())
    on_b = await attempt(b, user.email, PASSWORD, peer=names.ip())

    for response in (on_a, on_b):
        assert response.status_code == 429
        assert await response.get_json() == TOO_MANY
        assert int(response.headers["Retry-After"]) > 0


async def test_account_throttle_reached_on_one_replica_answers_429_on_the_other(
    make_replicas: MakeReplicas, session: AsyncSession, names: Names
) -> None:
    a, b = await make_replicas(**SMALL_LIMITS)
    user = await new_user(session, names)
    for _ in range(3):
        await attempt(a, user.email, "wrong-password", peer=names.ip())

    response = await attempt(b, user.email, PASSWORD, peer=names.ip())

    assert response.status_code == 429
    assert await response.get_json() == TOO_MANY
    assert int(response.headers["Retry-After"]) > 0


async def test_concurrent_burst_gets_no_more_guesses_than_the_budget(
    make_replicas: MakeReplicas, session: AsyncSession, names: Names
) -> None:
    # A guesser does not wait for answers: 20 guesses fired at once must not all
    # be checked against the password when the budget is 3.
    a, b = await make_replicas(**SMALL_LIMITS)
    user = await new_user(session, names)

    responses = await asyncio.gather(
        *(
            attempt(replica, user.email, f"guess-{number}", peer=names.ip())
            for number, replica in enumerate((a, b) * 10)
        )
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(401) <= SMALL_LIMITS["login_max_failures"], statuses
    assert set(statuses) <= {401, 429}, statuses


async def test_ip_throttle_reached_on_one_replica_answers_429_on_the_other(
    make_replicas: MakeReplicas, session: AsyncSession, names: Names
) -> None:
    a, b = await make_replicas(**SMALL_LIMITS)
    user = await new_user(session, names)
    peer = names.ip()
    for _ in range(5):
        await attempt(a, names.email(), "wrong-password", peer=peer)

    blocked = await attempt(b, user.email, PASSWORD, peer=peer)
    elsewhere = await attempt(b, user.email, PASSWORD, peer=names.ip())

    assert blocked.status_code == 429
    assert elsewhere.status_code == 200


# --- the rotation race --------------------------------------------------------------


async def test_refresh_rotation_race_across_replicas_has_one_winner(
    make_replicas: MakeReplicas,
    session: AsyncSession,
    names: Names,
    engine: AsyncEngine,
    settings: Settings,
) -> None:
    a, b = await make_replicas(refresh_rotation=True)
    user = await new_user(session, names)
    peer = names.ip()
    for _ in range(RACE_ROUNDS):
        tokens = await login(a, user.email, ip=peer)
        old = claims(settings, tokens["refresh_token"])

        responses = await asyncio.gather(
            *(
                replica.post(REFRESH, headers=bearer(tokens["refresh_token"]))
                for replica in (a, b, a, b)
            )
        )

        statuses = [response.status_code for response in responses]
        assert statuses == [200, 200, 200, 200]
        successors = {(await r.get_json())["refresh_token"] for r in responses}
        assert len(successors) == 1
        (successor,) = successors
        row = await session_row(engine, old["sid"])
        # One rotation: the row moved one step, from the login's jti to this one.
        assert (row.previous_refresh_jti, row.refresh_jti) == (
            old["jti"],
            claims(settings, successor)["jti"],
        )
        assert row.revoked_at is None
        onwards = await b.post(REFRESH, headers=bearer(successor))
        assert onwards.status_code == 200


async def test_refresh_rotation_race_rows_left_consistent(
    make_replicas: MakeReplicas,
    session: AsyncSession,
    names: Names,
    engine: AsyncEngine,
    settings: Settings,
) -> None:
    # Many sessions racing at once, not one after another.
    a, b = await make_replicas(refresh_rotation=True)
    user = await new_user(session, names)
    peer = names.ip()
    logins = [await login(a, user.email, ip=peer) for _ in range(3)]

    responses = await asyncio.gather(
        *(
            replica.post(REFRESH, headers=bearer(tokens["refresh_token"]))
            for tokens in logins
            for replica in (a, b)
        )
    )

    assert [response.status_code for response in responses] == [200] * 6
    bodies = [await response.get_json() for response in responses]
    for index, tokens in enumerate(logins):
        pair = {body["refresh_token"] for body in bodies[2 * index : 2 * index + 2]}
        assert len(pair) == 1
        row = await session_row(engine, claims(settings, tokens["access_token"])["sid"])
        assert row.refresh_jti == claims(settings, pair.pop())["jti"]


async def test_committed_rows_are_visible_between_replicas(
    make_replicas: MakeReplicas,
    session: AsyncSession,
    names: Names,
    engine: AsyncEngine,
) -> None:
    # The premise of the tests above: no shared transaction hides a commit.
    a, b = await make_replicas()
    user = await new_user(session, names)
    tokens = await login(a, user.email, ip=names.ip())

    sessions = await b.get(
        "/api/v1/auth/sessions", headers=bearer(tokens["access_token"])
    )

    assert sessions.status_code == 200
    assert [item["current"] for item in (await sessions.get_json())["sessions"]] == [
        True
    ]
    async with AsyncSession(engine) as session:
        count = len(
            (
                await session.scalars(
                    select(AuthSession).where(AuthSession.user_id == user.id)
                )
            ).all()
        )
    assert count == 1
