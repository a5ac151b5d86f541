"""Second factors raced over HTTP against served instances (hypercorn,
PostgreSQL, Redis): one mfa_token finished twice, one recovery code used twice,
one TOTP code on two replicas at once. Each race is fired at once from clients
of their own; whatever the interleaving, exactly one wins, and what the losers
tried leaves nothing behind (the database decides: one conditional UPDATE per
token and per code, in the transaction that opens the session)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.models import AuthSession, RecoveryCode, User
from tests.factories import PASSWORD
from tests.support import API, INVALID_CODE, INVALID_MFA_TOKEN, LOGIN, MFA, bearer
from tests.system.conftest import ServeInstance
from tests.system.harness import ServedApp


@pytest.fixture(scope="module")
def replica(serve_instance: ServeInstance) -> Iterator[ServedApp]:
    """A second instance on the same database, as another replica is."""
    with serve_instance("replica") as instance:
        yield instance


async def turn_on_totp(served: ServedApp, user: User) -> tuple[str, list[str]]:
    async with served.client() as client:
        login = await client.post(
            LOGIN, json={"email": user.email, "password": PASSWORD}
        )
        headers = bearer(login.json()["access_token"])
        secret = (await client.post(f"{API}/auth/totp", headers=headers)).json()[
            "secret"
        ]
        confirmed = await client.post(
            f"{API}/auth/totp/confirm",
            headers=headers,
            json={"code": pyotp.TOTP(secret).now()},
        )
        assert confirmed.status_code == 200, confirmed.text
        return secret, confirmed.json()["recovery_codes"]


async def mfa_token(served: ServedApp, user: User) -> str:
    async with served.client() as client:
        response = await client.post(
            LOGIN, json={"email": user.email, "password": PASSWORD}
        )
    assert response.status_code == 401, response.text
    token: str = response.json()["mfa_token"]
    return token


async def at_once(
    calls: list[tuple[ServedApp, dict[str, Any]]],
) -> list[httpx.Response]:
    """POST /auth/login/mfa with each body on its instance, all at once: each
    from a client of its own, connected before the start signal."""
    clients = [served.client() for served, _ in calls]
    start = asyncio.Event()

    async def one(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
        await client.get("/healthz")  # the connection is open before the race
        await start.wait()
        return await client.post(MFA, json=body)

    try:
        tasks = [
            asyncio.create_task(one(client, body))
            for client, (_, body) in zip(clients, calls, strict=True)
        ]
        await asyncio.sleep(0.2)
        start.set()
        return list(await asyncio.gather(*tasks))
    finally:
        for client in clients:
            await client.aclose()


async def second_factor_sessions(engine: AsyncEngine, user: User) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(
            select(func.count())
            .select_from(AuthSession)
            .where(
                AuthSession.user_id == user.id,
                AuthSession.auth_method != "password",
            )
        )
    return int(count or 0)


async def codes_left(engine: AsyncEngine, user: User) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        )
    return int(count or 0)


def winners(responses: list[httpx.Response]) -> list[httpx.Response]:
    return [response for response in responses if response.status_code == 200]


async def test_one_mfa_token_finished_four_ways_at_once_opens_one_session(
    served: ServedApp, served_engine: AsyncEngine, user: User
) -> None:
    secret, codes = await turn_on_totp(served, user)
    token = await mfa_token(served, user)
    bodies = [
        {"mfa_token": token, "code": pyotp.TOTP(secret).at(time.time() + 30)},
        *({"mfa_token": token, "recovery_code": code} for code in codes[:3]),
    ]

    responses = await at_once([(served, body) for body in bodies])

    [winner] = winners(responses)
    losers = [response for response in responses if response is not winner]
    assert all(response.status_code == 401 for response in losers)
    assert all(response.json() == INVALID_MFA_TOKEN for response in losers)
    assert await second_factor_sessions(served_engine, user) == 1
    # Only the winner's factor was spent: the losers' uses were rolled back.
    won_with_code = bodies[responses.index(winner)].get("recovery_code") is not None
    assert await codes_left(served_engine, user) == 10 - won_with_code


async def test_one_recovery_code_used_by_two_logins_at_once_works_once(
    served: ServedApp, served_engine: AsyncEngine, user: User
) -> None:
    _, codes = await turn_on_totp(served, user)
    tokens = [await mfa_token(served, user) for _ in range(2)]

    responses = await at_once(
        [(served, {"mfa_token": token, "recovery_code": codes[0]}) for token in tokens]
    )

    [winner] = winners(responses)
    [loser] = [response for response in responses if response is not winner]
    assert (loser.status_code, loser.json()) == (401, INVALID_CODE)
    assert await second_factor_sessions(served_engine, user) == 1
    assert await codes_left(served_engine, user) == 9


async def test_one_totp_code_on_two_replicas_at_once_works_once(
    served: ServedApp, replica: ServedApp, served_engine: AsyncEngine, user: User
) -> None:
    secret, _ = await turn_on_totp(served, user)
    tokens = [await mfa_token(served, user), await mfa_token(replica, user)]
    code = pyotp.TOTP(secret).at(time.time() + 30)

    responses = await at_once(
        [
            (served, {"mfa_token": tokens[0], "code": code}),
            (replica, {"mfa_token": tokens[1], "code": code}),
        ]
    )

    [winner] = winners(responses)
    [loser] = [response for response in responses if response is not winner]
    assert (loser.status_code, loser.json()) == (401, INVALID_CODE)
    assert await second_factor_sessions(served_engine, user) == 1
