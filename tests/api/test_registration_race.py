"""Concurrent registrations of one address: one wins, the rest get a clean 400.

The Flask service answered 1x201, 5x400 and 4x500 here (DEVIATIONS C.2). The
default app runs on its own engine and pool, so the requests really run
concurrently, each on its own connection.
"""

from __future__ import annotations

import asyncio

import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import registration, unique_email

REQUESTS = 10
EMAIL_TAKEN = {
    "error": "Validation failed",
    "errors": {"email": ["Email already registered."]},
}


@pytest.fixture
def race_email(committed: None) -> str:
    # The default app commits for real; `committed` deletes the rows afterwards.
    return unique_email("registration-race")


async def register_all(client: Client, emails: list[str]) -> list[tuple[int, object]]:
    async def register(email: str) -> tuple[int, object]:
        response = await client.post(
            "/api/v1/users",
            json=registration(email, first_name="Race", last_name="Runner"),
        )
        return response.status_code, await response.get_json()

    return list(await asyncio.gather(*(register(email) for email in emails)))


async def stored_emails(engine: AsyncEngine, email: str) -> list[str]:
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT email FROM users WHERE lower(email) = lower(:email)"),
            {"email": email},
        )
        return list(result.scalars())


def case_variants(email: str, count: int) -> list[str]:
    """`count` spellings of `email`, each with a different letter upper-cased."""
    letters = [i for i, char in enumerate(email) if char.isalpha()]
    return [
        email[: letters[n]] + email[letters[n]].upper() + email[letters[n] + 1 :]
        for n in range(count)
    ]


async def test_register_same_email_concurrently_one_wins_rest_400(
    client: Client, engine: AsyncEngine, race_email: str
) -> None:
    results = await register_all(client, [race_email] * REQUESTS)

    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [400] * (REQUESTS - 1)
    [winner] = [body for status, body in results if status == 201]
    assert isinstance(winner, dict)
    assert winner["email"] == race_email
    assert [body for status, body in results if status == 400] == [EMAIL_TAKEN] * (
        REQUESTS - 1
    )
    assert await stored_emails(engine, race_email) == [race_email]


async def test_register_same_email_in_different_cases_concurrently_one_wins(
    client: Client, engine: AsyncEngine, race_email: str
) -> None:
    variants = case_variants(race_email, REQUESTS)
    assert len(set(variants)) == REQUESTS

    results = await register_all(client, variants)

    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [400] * (REQUESTS - 1)
    [winner] = [body for status, body in results if status == 201]
    assert isinstance(winner, dict)
    assert winner["email"] in variants
    assert [body for status, body in results if status == 400] == [EMAIL_TAKEN] * (
        REQUESTS - 1
    )
    # The winner's spelling is the one stored, as registered.
    assert await stored_emails(engine, race_email) == [winner["email"]]
