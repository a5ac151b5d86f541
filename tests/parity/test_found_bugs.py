"""Regression tests for the bugs the differential harness found.

Each is a difference from the Flask original that no deviation explains
(docs/MIGRATING.md, section 6), reduced to the request that showed it.
"""

from __future__ import annotations

from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from service.models import User
from tests.support import USERS

TAKEN = ["Email already registered."]


def registration(email: str, **changes: Any) -> dict[str, Any]:
    body = {
        "email": email,
        "password": "password123",
        "first_name": "Ann",
        "last_name": "Lee",
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("changes", "other_errors"),
    [
        ({"is_admin": True}, {"is_admin": ["Unknown field."]}),
        ({"password": "short"}, {"password": ["Length must be between 8 and 128."]}),
        ({"first_name": None}, {"first_name": ["Field may not be null."]}),
        ({"last_name": ""}, {"last_name": ["Length must be between 1 and 100."]}),
    ],
)
async def test_a_taken_email_is_reported_next_to_the_other_errors(
    client: Client,
    user: User,
    changes: dict[str, Any],
    other_errors: dict[str, list[str]],
) -> None:
    """Flask's validator runs with the others: every error comes back at once."""
    response = await client.post(USERS, json=registration(user.email, **changes))
    assert response.status_code == 400
    assert await response.get_json() == {
        "error": "Validation failed",
        "errors": {"email": TAKEN, **other_errors},
    }


async def test_a_free_email_is_not_reported_next_to_the_other_errors(
    client: Client, user: User
) -> None:
    response = await client.post(
        USERS, json=registration("free@example.com", is_admin=True)
    )
    assert response.status_code == 400
    assert await response.get_json() == {
        "error": "Validation failed",
        "errors": {"is_admin": ["Unknown field."]},
    }


async def test_an_invalid_email_is_not_looked_up(client: Client, user: User) -> None:
    response = await client.post(
        USERS, json=registration("not-an-email", password="short")
    )
    assert await response.get_json() == {
        "error": "Validation failed",
        "errors": {
            "email": ["Not a valid email address."],
            "password": ["Length must be between 8 and 128."],
        },
    }
