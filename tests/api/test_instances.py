"""Two app instances sharing one PostgreSQL database and one Redis, as replicas do.

Each replica has its own engine and pool on the per-run test database (no
rolled-back test connection: what one commits, the other must see), and its
own throttle client on Redis. Rows and Redis keys the tests create are named
after unique emails and IPs and deleted at the end of each test.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service.config import Settings
from service.models import AuthSession, User
from tests.factories import flask_token_for, make_user
from tests.support import (
    LOGOUT,
    REFRESH,
    REVOKED,
    InstancesMaker,
    Names,
    bearer,
    get_me,
    login,
    post_refresh,
)

RACE_ROUNDS = 5


async def session_row(engine: AsyncEngine, sid: str) -> AuthSession:
    async with AsyncSession(engine) as session:
        row = await session.get(AuthSession, sid)
    assert row is not None
    return row


def claims(settings: Settings, token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(
        token, settings.jwt_secret_key, algorithms=["HS256"]
    )
    return decoded


# --- revocation ---------------------------------------------------------------------


async def test_logout_on_one_replica_is_refused_on_the_other_at_once(
    make_instances: InstancesMaker, account: User, names: Names
) -> None:
    a, b = await make_instances()
    tokens = await login(a, account.email, ip=names.ip())
    before = await get_me(a, tokens["access_token"])

    logout = await b.post(LOGOUT, headers=bearer(tokens["access_token"]))
    me = await get_me(a, tokens["access_token"])
    refreshed = await post_refresh(a, tokens["refresh_token"])

    assert (before.status_code, logout.status_code) == (200, 200)
    assert (me.status_code, await me.get_json()) == (401, REVOKED)
    assert (refreshed.status_code, await refreshed.get_json()) == (401, REVOKED)


LOGGED_OUT = (200, {"message": "Successfully logged out"})


async def test_concurrent_logouts_of_one_flask_token_answer_200_or_401(
    make_instances: InstancesMaker,
    session: AsyncSession,
    names: Names,
    settings: Settings,
) -> None:
    # A client retrying a logout, or two tabs: the loser must not trip over the
    # winner's revoked_tokens row. A user each round: a Flask-era logout also
    # ends that user's Flask-era tokens issued up to that second (MIGRATING.md).
    a, b = await make_instances()
    for _ in range(3):
        account = await make_user(session, email=names.email())
        token = flask_token_for(settings, account)

        responses = await asyncio.gather(
            *(replica.post(LOGOUT, headers=bearer(token)) for replica in (a, b, a, b))
        )

        answers = [(r.status_code, await r.get_json()) for r in responses]
        assert all(answer in (LOGGED_OUT, (401, REVOKED)) for answer in answers), (
            answers
        )
        assert LOGGED_OUT in answers
        me = await get_me(a, token)
        assert (me.status_code, await me.get_json()) == (401, REVOKED)


async def test_concurrent_logouts_of_one_session_answer_200_or_401(
    make_instances: InstancesMaker, account: User, names: Names
) -> None:
    a, b = await make_instances()
    peer = names.ip()
    for _ in range(3):
        tokens = await login(a, account.email, ip=peer)

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


# --- the rotation race --------------------------------------------------------------


@dataclass
class Race:
    """Two instances that rotate refresh tokens, and a user logging in on them."""

    a: Client
    b: Client
    user: User
    peer: str


@pytest.fixture
async def race(make_instances: InstancesMaker, account: User, names: Names) -> Race:
    a, b = await make_instances(refresh_rotation=True)
    return Race(a, b, account, names.ip())


async def test_refresh_rotation_race_across_replicas_has_one_winner(
    race: Race, engine: AsyncEngine, settings: Settings
) -> None:
    a, b, account, peer = race.a, race.b, race.user, race.peer
    for _ in range(RACE_ROUNDS):
        tokens = await login(a, account.email, ip=peer)
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
        onwards = await post_refresh(b, successor)
        assert onwards.status_code == 200


async def test_refresh_rotation_race_rows_left_consistent(
    race: Race, engine: AsyncEngine, settings: Settings
) -> None:
    # Many sessions racing at once, not one after another.
    logins = [await login(race.a, race.user.email, ip=race.peer) for _ in range(3)]
    a, b = race.a, race.b

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
    make_instances: InstancesMaker,
    account: User,
    names: Names,
    engine: AsyncEngine,
) -> None:
    # The premise of the tests above: no shared transaction hides a commit.
    a, b = await make_instances()
    tokens = await login(a, account.email, ip=names.ip())

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
                    select(AuthSession).where(AuthSession.user_id == account.id)
                )
            ).all()
        )
    assert count == 1
