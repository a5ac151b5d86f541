"""PASSWORD_POLICY=common and PWNED_PASSWORDS_URL on the routes that set a
password: registration, change and reset, each with the contract's 400."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.models import User
from service.security.tokens import create_reset_token
from tests.factories import login_headers
from tests.ports import free_port
from tests.pwned import RangeService, serve_range
from tests.support import (
    METRICS_TOKEN,
    RESET,
    USERS,
    AppMaker,
    bearer,
    cases,
    change_password,
    registration,
)

BREACHED = "an often leaked one"
STRONG = "a longer passphrase"


def too_common(field: str) -> dict[str, Any]:
    return {
        "error": "Validation failed",
        "errors": {field: ["This password is too common."]},
    }


@pytest.fixture
def range_service() -> Iterator[tuple[RangeService, str]]:
    with serve_range({BREACHED}) as served:
        yield served


@pytest.fixture
async def common_app(
    make_app: AppMaker, range_service: tuple[RangeService, str]
) -> AsyncIterator[Quart]:
    async with make_app(
        password_policy="common", pwned_passwords_url=range_service[1]
    ) as app:
        yield app


@pytest.fixture
def common_client(common_app: Quart) -> Client:
    return common_app.test_client()


def reset_token(settings: Settings, user: User) -> str:
    return create_reset_token(
        user_id=user.id,
        password_hash=user.password_hash,
        key=settings.secret_key,
        expires_in=600,
    )


REFUSED = {
    "common": "password123",
    "the-address": "ada.king@example.com",
    "built-from-names": "Lovelace.Ada.1815",
    "in-the-range-service": BREACHED,
}


@cases("password", REFUSED)
async def test_registration_refuses_a_common_password(
    common_client: Client, password: str
) -> None:
    body = registration(
        "ada.king@example.com",
        password=password,
        first_name="Ada",
        last_name="Lovelace",
    )

    response = await common_client.post(USERS, json=body)

    assert response.status_code == 400
    assert await response.get_json() == too_common("password")


async def test_registration_accepts_a_strong_password(common_client: Client) -> None:
    response = await common_client.post(
        USERS, json=registration("ada@example.com", password=STRONG)
    )

    assert response.status_code == 201


@cases(
    "password",
    {
        "common": "qwerty123",
        "own-name": "Test.User.2024x",
        "in-the-range-service": BREACHED,
    },
)
async def test_change_refuses_a_common_password(
    common_client: Client,
    session: AsyncSession,
    settings: Settings,
    user: User,
    password: str,
) -> None:
    headers = await login_headers(session, settings, user)

    response = await change_password(common_client, headers, password)

    assert response.status_code == 400
    assert await response.get_json() == too_common("new_password")
    # Nothing changed: the session goes on.
    assert (await common_client.get(f"{USERS}/me", headers=headers)).status_code == 200


@cases("password", {"common": "password123", "in-the-range-service": BREACHED})
async def test_reset_refuses_a_common_password_and_keeps_the_token(
    common_client: Client, settings: Settings, user: User, password: str
) -> None:
    token = reset_token(settings, user)

    refused = await common_client.post(
        RESET, json={"token": token, "new_password": password}
    )
    accepted = await common_client.post(
        RESET, json={"token": token, "new_password": STRONG}
    )

    assert refused.status_code == 400
    assert await refused.get_json() == too_common("new_password")
    assert accepted.status_code == 204


async def test_default_policy_accepts_what_flask_accepted(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    registered = await client.post(
        USERS, json=registration("new@example.com", password="password123")
    )
    changed = await change_password(
        client, await login_headers(session, settings, user), "12345678"
    )

    assert (registered.status_code, changed.status_code) == (201, 204)


async def test_range_service_down_accepts_and_is_counted_in_metrics(
    make_app: AppMaker,
) -> None:
    async with make_app(
        pwned_passwords_url=f"http://127.0.0.1:{free_port()}",
        metrics_token=METRICS_TOKEN,
    ) as app:
        client = app.test_client()
        response = await client.post(
            USERS, json=registration("a@example.com", password=BREACHED)
        )
        metrics = await client.get("/metrics", headers=bearer(METRICS_TOKEN))
        text = await metrics.get_data(as_text=True)

    assert response.status_code == 201
    assert "pwned_passwords_misses_total 1.0" in text
