"""The login throttle against a served instance: what an attacker can and cannot do.

Every client is its own loopback address (see conftest): the address budgets are
the real ones, with no X-Forwarded-For involved.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from service.models import User
from tests.factories import PASSWORD, committed_user
from tests.support import LOGIN, TOO_MANY, unique_email
from tests.system.harness import ServedApp


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(LOGIN, json={"email": email, "password": password})


async def login_from_anywhere(
    served: ServedApp, email: str, password: str
) -> httpx.Response:
    async with served.client() as client:
        return await login(client, email, password)


def unknown_email() -> str:
    return unique_email("nobody")


async def test_twenty_concurrent_right_passwords_all_log_in(
    served: ServedApp, user: User
) -> None:
    # Default budget: 10 per account. Twenty at once must not be refused: a
    # right password is refused only when real failures spent the budget.
    async with served.client() as client:
        responses = await asyncio.gather(
            *(login(client, user.email, PASSWORD) for _ in range(20))
        )

    assert [r.status_code for r in responses] == [200] * 20


async def test_an_address_over_its_limit_cannot_lock_out_an_account(
    served_small: ServedApp, served_engine: AsyncEngine
) -> None:
    victim = await committed_user(served_engine)
    async with served_small.client() as attacker:
        for _ in range(5):
            assert (await login(attacker, unknown_email(), "guess")).status_code == 401
        # Refused before the victim's account is charged, however many times.
        for _ in range(15):
            response = await login(attacker, victim.email, "guess")
            assert response.status_code == 429
            assert response.json() == TOO_MANY
            assert int(response.headers["Retry-After"]) > 0

    response = await login_from_anywhere(served_small, victim.email, PASSWORD)

    assert response.status_code == 200


async def test_a_burst_of_wrong_guesses_gets_no_more_than_the_budget(
    served_small: ServedApp, user: User
) -> None:

    responses = await asyncio.gather(
        *(
            login_from_anywhere(served_small, user.email, f"guess-{number}")
            for number in range(12)
        )
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [401] * 3 + [429] * 9, statuses
    # The budget is spent by real failures: now even the right password waits.
    refused = await login_from_anywhere(served_small, user.email, PASSWORD)
    assert (refused.status_code, refused.json()) == (429, TOO_MANY)


async def test_right_password_amid_wrong_ones_gets_in_while_budget_is_left(
    served_small: ServedApp, user: User
) -> None:

    wrong = [
        login_from_anywhere(served_small, user.email, f"guess-{n}") for n in range(2)
    ]
    right = login_from_anywhere(served_small, user.email, PASSWORD)
    *_, answer = await asyncio.gather(*wrong, right)

    assert answer.status_code == 200


async def test_case_variants_of_an_address_share_its_budget(
    served_small: ServedApp, served_engine: AsyncEngine
) -> None:
    # PostgreSQL's lower() folds U+0130 (İ) to "i": the capital dotted I variant
    # logs in to the account, so it must spend the same budget.
    user = await committed_user(
        served_engine, email=f"ilia-{uuid.uuid4().hex[:8]}@example.com"
    )
    variants = [
        "\u0130" + user.email[1:],
        user.email.upper(),
        "\u0130" + user.email[1:].upper(),
    ]
    assert (
        await login_from_anywhere(served_small, variants[0], PASSWORD)
    ).status_code == 200
    for variant in variants:
        response = await login_from_anywhere(served_small, variant, "guess")
        assert response.status_code == 401

    response = await login_from_anywhere(served_small, user.email, PASSWORD)

    assert (response.status_code, response.json()) == (429, TOO_MANY)


async def test_failed_login_is_a_security_event_with_the_client_address(
    served: ServedApp, user: User
) -> None:
    address = "127.3.4.5"
    async with served.client(address) as client:
        response = await client.post(
            LOGIN,
            json={"email": user.email, "password": "guess"},
            # Not from a trusted proxy: the header is the client's own claim.
            headers={"X-Forwarded-For": "203.0.113.7"},
        )
    assert response.status_code == 401

    events = [
        line
        for line in served.log_lines()
        if line.get("logger") == "service.security" and line.get("user_id") == user.id
    ]
    assert len(events) == 1, events
    assert events[0]["event"] == "login_failed"
    assert events[0]["client_ip"] == address
    assert events[0]["reason"] == "wrong_password"
    assert events[0]["level"] == "warning"
