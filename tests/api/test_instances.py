"""Two app instances sharing one PostgreSQL database and one Redis, as replicas do.

Each replica has its own engine and pool on the per-run test database (no
rolled-back test connection: what one commits, the other must see), and its
own throttle client on Redis. Rows and Redis keys the tests create are named
after unique emails and IPs and deleted at the end of each test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from typing import Any

import jwt
import pytest
from quart.typing import TestClientProtocol as Client
from redis.asyncio import Redis
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service import create_app
from service.config import Settings
from service.models import AuthSession, RevokedToken, User
from service.throttle.keys import account_key, ip_key
from tests import backends
from tests.factories import PASSWORD, flask_token_for, make_user
from tests.support import bearer, login, post_login

REDIS_URL = backends.redis_url()
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/users/me"
REVOKED = {"msg": "Token has been revoked", "error": "Token has been revoked"}
TOO_MANY = {"error": "Too many failed login attempts; try again later"}
SMALL_LIMITS = {"login_max_failures": 3, "login_max_failures_per_ip": 5}
RACE_ROUNDS = 5


@dataclass
class Committed:
    """What a test commits for real, so that it can all be deleted afterwards."""

    engine: AsyncEngine
    users: list[User] = field(default_factory=list)
    redis_keys: set[str] = field(default_factory=set)
    revoked_jtis: set[str] = field(default_factory=set)

    def email(self) -> str:
        email = f"replica-{uuid.uuid4().hex[:12]}@example.com"
        self.redis_keys.add(account_key(email))
        return email

    def ip(self) -> str:
        # A /64 of its own: the throttle budgets IPv6 clients per /64.
        hex_ = uuid.uuid4().hex
        ip = f"2001:db8:{hex_[:4]}:{hex_[4:8]}::{hex_[8:12]}"
        self.redis_keys.add(ip_key(ip))
        return ip

    async def user(self) -> User:
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            user = await make_user(session, email=self.email())
        self.users.append(user)
        return user

    async def session_row(self, sid: str) -> AuthSession:
        async with AsyncSession(self.engine) as session:
            row = await session.get(AuthSession, sid)
        assert row is not None
        return row

    async def clean_up(self) -> None:
        ids = [user.id for user in self.users]
        if ids:
            async with self.engine.begin() as connection:
                await connection.execute(
                    delete(AuthSession).where(AuthSession.user_id.in_(ids))
                )
                await connection.execute(delete(User).where(User.id.in_(ids)))
        if self.revoked_jtis:
            async with self.engine.begin() as connection:
                await connection.execute(
                    delete(RevokedToken).where(RevokedToken.jti.in_(self.revoked_jtis))
                )
        if self.redis_keys:
            redis: Redis = Redis.from_url(REDIS_URL)
            try:
                await redis.delete(*self.redis_keys)
            finally:
                await redis.aclose()


@pytest.fixture
async def committed(engine: AsyncEngine) -> AsyncIterator[Committed]:
    committed = Committed(engine)
    yield committed
    await committed.clean_up()


MakeReplicas = Callable[..., Awaitable[tuple[Client, Client]]]


@pytest.fixture
async def make_replicas(settings: Settings) -> AsyncIterator[MakeReplicas]:
    async with AsyncExitStack() as stack:

        async def make(**changes: Any) -> tuple[Client, Client]:
            replica_settings = replace(settings, redis_url=REDIS_URL, **changes)
            clients = []
            for _ in range(2):
                app = create_app(replica_settings)
                test_app = app.test_app()
                await test_app.startup()
                stack.push_async_callback(test_app.shutdown)
                clients.append(app.test_client())
            return clients[0], clients[1]

        yield make


async def attempt(client: Client, email: str, password: str, *, peer: str) -> Any:
    return await post_login(client, email, password, ip=peer)


def claims(settings: Settings, token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(
        token, settings.jwt_secret_key, algorithms=["HS256"]
    )
    return decoded


# --- revocation ---------------------------------------------------------------------


async def test_logout_on_one_replica_is_refused_on_the_other_at_once(
    make_replicas: MakeReplicas, committed: Committed
) -> None:
    a, b = await make_replicas()
    user = await committed.user()
    tokens = await login(a, user.email, ip=committed.ip())
    before = await a.get(ME, headers=bearer(tokens["access_token"]))

    logout = await b.post(LOGOUT, headers=bearer(tokens["access_token"]))
    me = await a.get(ME, headers=bearer(tokens["access_token"]))
    refreshed = await a.post(REFRESH, headers=bearer(tokens["refresh_token"]))

    assert (before.status_code, logout.status_code) == (200, 200)
    assert (me.status_code, await me.get_json()) == (401, REVOKED)
    assert (refreshed.status_code, await refreshed.get_json()) == (401, REVOKED)


LOGGED_OUT = (200, {"message": "Successfully logged out"})


async def test_concurrent_logouts_of_one_flask_token_answer_200_or_401(
    make_replicas: MakeReplicas, committed: Committed, settings: Settings
) -> None:
    # A client retrying a logout, or two tabs: the loser must not trip over the
    # winner's revoked_tokens row.
    a, b = await make_replicas()
    user = await committed.user()
    for _ in range(3):
        token = flask_token_for(settings, user)
        committed.revoked_jtis.add(claims(settings, token)["jti"])

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
    make_replicas: MakeReplicas, committed: Committed
) -> None:
    a, b = await make_replicas()
    user = await committed.user()
    peer = committed.ip()
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
    make_replicas: MakeReplicas, committed: Committed
) -> None:
    a, b = await make_replicas(**SMALL_LIMITS)
    user = await committed.user()
    for replica in (a, b, a):
        response = await attempt(
            replica, user.email, "wrong-password", peer=committed.ip()
        )
        assert response.status_code == 401

    on_a = await attempt(a, user.email, PASSWORD, peer=committed.ip())
    on_b = await attempt(b, user.email, PASSWORD, peer=committed.ip())

    for response in (on_a, on_b):
        assert response.status_code == 429
        assert await response.get_json() == TOO_MANY
        assert int(response.headers["Retry-After"]) > 0


async def test_account_throttle_reached_on_one_replica_answers_429_on_the_other(
    make_replicas: MakeReplicas, committed: Committed
) -> None:
    a, b = await make_replicas(**SMALL_LIMITS)
    user = await committed.user()
    for _ in range(3):
        await attempt(a, user.email, "wrong-password", peer=committed.ip())

    response = await attempt(b, user.email, PASSWORD, peer=committed.ip())

    assert response.status_code == 429
    assert await response.get_json() == TOO_MANY
    assert int(response.headers["Retry-After"]) > 0


async def test_concurrent_burst_gets_no_more_guesses_than_the_budget(
    make_replicas: MakeReplicas, committed: Committed
) -> None:
    # A guesser does not wait for answers: 20 guesses fired at once must not all
    # be checked against the password when the budget is 3.
    a, b = await make_replicas(**SMALL_LIMITS)
    user = await committed.user()

    responses = await asyncio.gather(
        *(
            attempt(replica, user.email, f"guess-{number}", peer=committed.ip())
            for number, replica in enumerate((a, b) * 10)
        )
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(401) <= SMALL_LIMITS["login_max_failures"], statuses
    assert set(statuses) <= {401, 429}, statuses


async def test_ip_throttle_reached_on_one_replica_answers_429_on_the_other(
    make_replicas: MakeReplicas, committed: Committed
) -> None:
    a, b = await make_replicas(**SMALL_LIMITS)
    user = await committed.user()
    peer = committed.ip()
    for _ in range(5):
        await attempt(a, committed.email(), "wrong-password", peer=peer)

    blocked = await attempt(b, user.email, PASSWORD, peer=peer)
    elsewhere = await attempt(b, user.email, PASSWORD, peer=committed.ip())

    assert blocked.status_code == 429
    assert elsewhere.status_code == 200


# --- the rotation race --------------------------------------------------------------


async def test_refresh_rotation_race_across_replicas_has_one_winner(
    make_replicas: MakeReplicas, committed: Committed, settings: Settings
) -> None:
    a, b = await make_replicas(refresh_rotation=True)
    user = await committed.user()
    peer = committed.ip()
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
        row = await committed.session_row(old["sid"])
        # One rotation: the row moved one step, from the login's jti to this one.
        assert (row.previous_refresh_jti, row.refresh_jti) == (
            old["jti"],
            claims(settings, successor)["jti"],
        )
        assert row.revoked_at is None
        onwards = await b.post(REFRESH, headers=bearer(successor))
        assert onwards.status_code == 200


async def test_refresh_rotation_race_rows_left_consistent(
    make_replicas: MakeReplicas, committed: Committed, settings: Settings
) -> None:
    # Many sessions racing at once, not one after another.
    a, b = await make_replicas(refresh_rotation=True)
    user = await committed.user()
    peer = committed.ip()
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
        row = await committed.session_row(
            claims(settings, tokens["access_token"])["sid"]
        )
        assert row.refresh_jti == claims(settings, pair.pop())["jti"]


async def test_committed_rows_are_visible_between_replicas(
    make_replicas: MakeReplicas, committed: Committed
) -> None:
    # The premise of the tests above: no shared transaction hides a commit.
    a, b = await make_replicas()
    user = await committed.user()
    tokens = await login(a, user.email, ip=committed.ip())

    sessions = await b.get(
        "/api/v1/auth/sessions", headers=bearer(tokens["access_token"])
    )

    assert sessions.status_code == 200
    assert [item["current"] for item in (await sessions.get_json())["sessions"]] == [
        True
    ]
    async with AsyncSession(committed.engine) as session:
        count = len(
            (
                await session.scalars(
                    select(AuthSession).where(AuthSession.user_id == user.id)
                )
            ).all()
        )
    assert count == 1
