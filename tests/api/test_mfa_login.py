"""Logins of accounts with a second factor: the right password answers 401
"Second factor required" with a single-use mfa_token, POST /auth/login/mfa
finishes with a TOTP or a recovery code; wrong codes spend the login budget.
An account without a factor logs in exactly as before."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import jwt
import pyotp
import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.models import AuthSession, MfaToken, User, utcnow
from tests.api.test_totp import turn_on_totp
from tests.factories import PASSWORD, login_headers
from tests.support import (
    ACCOUNT,
    API,
    INVALID_CODE,
    INVALID_CREDENTIALS,
    INVALID_MFA_TOKEN,
    LOGIN,
    ME,
    MFA,
    TOO_MANY,
    AppMaker,
    bearer,
    post_login,
)

SECOND_FACTOR = "Second factor required"


def next_code(secret: str) -> str:
    """The next step's code: later than the one confirmation used."""
    return pyotp.TOTP(secret).at(time.time() + 30)


async def second_step(client: Client, email: str) -> dict[str, Any]:
    """The right password of an account with a factor: the 401's body."""
    response = await post_login(client, email)
    assert response.status_code == 401, await response.get_data(as_text=True)
    body: dict[str, Any] = await response.get_json()
    return body


async def with_totp(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> tuple[str, list[str]]:
    return await turn_on_totp(client, await login_headers(session, settings, user))


async def mfa_token_of(client: Client, email: str) -> str:
    token: str = (await second_step(client, email))["mfa_token"]
    return token


async def deactivate(session: AsyncSession, user: User) -> None:
    await session.execute(
        update(User).where(User.id == user.id).values(is_active=False)
    )
    await session.commit()


async def session_of(session: AsyncSession, access_token: str) -> AuthSession:
    sid = jwt.decode(access_token, options={"verify_signature": False})["sid"]
    return await session.get_one(AuthSession, sid, populate_existing=True)


async def test_an_account_without_a_factor_logs_in_as_before(
    client: Client, session: AsyncSession, user: User
) -> None:
    response = await post_login(client, user.email)
    body = await response.get_json()

    assert response.status_code == 200
    assert set(body) == {"access_token", "refresh_token", "token_type"}
    row = await session_of(session, body["access_token"])
    assert row.auth_method == "password"


async def test_the_right_password_of_a_totp_account_asks_for_the_second_factor(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    await with_totp(client, session, settings, user)

    body = await second_step(client, user.email)

    assert body["error"] == body["msg"] == SECOND_FACTOR
    assert body["methods"] == ["totp", "recovery_code"]
    assert len(body["mfa_token"]) >= 40
    assert set(body) == {"error", "msg", "mfa_token", "methods"}


async def test_a_wrong_password_answers_as_today_whatever_the_factors(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    await with_totp(client, session, settings, user)

    response = await post_login(client, user.email, "wrong-password")

    assert response.status_code == 401
    assert await response.get_json() == INVALID_CREDENTIALS


async def test_a_totp_code_finishes_the_login_in_a_fresh_totp_session(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    secret, _ = await with_totp(client, session, settings, user)
    token = await mfa_token_of(client, user.email)

    response = await client.post(
        MFA, json={"mfa_token": token, "code": next_code(secret)}
    )
    body = await response.get_json()
    me = await client.get(ME, headers=bearer(body["access_token"]))

    assert response.status_code == 200
    assert set(body) == {"access_token", "refresh_token", "token_type"}
    assert me.status_code == 200
    row = await session_of(session, body["access_token"])
    assert row.auth_method == "totp"
    assert row.fresh_until is not None
    assert row.fresh_until > utcnow()


async def test_a_recovery_code_finishes_a_login_once(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    _, codes = await with_totp(client, session, settings, user)
    first = await mfa_token_of(client, user.email)
    second = await mfa_token_of(client, user.email)

    used = await client.post(MFA, json={"mfa_token": first, "recovery_code": codes[0]})
    again = await client.post(
        MFA, json={"mfa_token": second, "recovery_code": codes[0].upper()}
    )
    tokens = await used.get_json()
    account = await (
        await client.get(ACCOUNT, headers=bearer(tokens["access_token"]))
    ).get_json()

    assert used.status_code == 200
    assert (await session_of(session, tokens["access_token"])).auth_method == (
        "recovery_code"
    )
    assert again.status_code == 401
    assert await again.get_json() == INVALID_CODE
    assert account["recovery_codes_left"] == 9


async def test_an_mfa_token_finishes_one_login(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    _, codes = await with_totp(client, session, settings, user)
    token = await mfa_token_of(client, user.email)

    first = await client.post(MFA, json={"mfa_token": token, "recovery_code": codes[0]})
    second = await client.post(
        MFA, json={"mfa_token": token, "recovery_code": codes[1]}
    )

    assert first.status_code == 200
    assert second.status_code == 401
    assert await second.get_json() == INVALID_MFA_TOKEN


async def test_a_replayed_totp_code_fails(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    secret, _ = await with_totp(client, session, settings, user)
    code = next_code(secret)
    first = await mfa_token_of(client, user.email)
    second = await mfa_token_of(client, user.email)

    used = await client.post(MFA, json={"mfa_token": first, "code": code})
    replayed = await client.post(MFA, json={"mfa_token": second, "code": code})

    assert used.status_code == 200
    assert replayed.status_code == 401
    assert await replayed.get_json() == INVALID_CODE


@pytest.mark.parametrize(
    "change", ["expired", "password-changed", "account-deleted", "unknown"]
)
async def test_a_dead_mfa_token_is_401(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    user: User,
    change: str,
) -> None:
    _, codes = await with_totp(client, session, settings, user)
    token = await mfa_token_of(client, user.email)
    if change == "expired":
        await session.execute(
            update(MfaToken).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    elif change == "password-changed":
        await session.execute(
            update(User).where(User.id == user.id).values(password_hash="x" + "0" * 40)
        )
    elif change == "account-deleted":
        await session.execute(
            update(User).where(User.id == user.id).values(deleted_at=utcnow())
        )
    else:
        token = token[:-4] + "AAAA"
    await session.commit()

    response = await client.post(
        MFA, json={"mfa_token": token, "recovery_code": codes[0]}
    )

    assert response.status_code == 401
    assert await response.get_json() == INVALID_MFA_TOKEN


async def test_the_token_is_stored_only_as_a_hash(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    await with_totp(client, session, settings, user)
    token = await mfa_token_of(client, user.email)

    stored = list(await session.scalars(select(MfaToken.token_hash)))

    assert token not in stored
    assert len(stored) == 1


async def test_wrong_codes_spend_the_login_budget(
    make_app: AppMaker, session: AsyncSession, settings: Settings, user: User
) -> None:
    async with make_app(login_max_failures=3) as app:
        client = app.test_client()
        secret, _ = await with_totp(client, session, settings, user)
        token = await mfa_token_of(client, user.email)
        wrong = f"{(int(next_code(secret)) + 1) % 1_000_000:06d}"
        answers = [
            await client.post(MFA, json={"mfa_token": token, "code": wrong})
            for _ in range(4)
        ]
        password = await post_login(client, user.email)

    assert [answer.status_code for answer in answers] == [401, 401, 401, 429]
    assert await answers[0].get_json() == INVALID_CODE
    assert await answers[3].get_json() == TOO_MANY
    assert password.status_code == 429


async def test_a_right_password_between_wrong_codes_refills_nothing(
    make_app: AppMaker, session: AsyncSession, settings: Settings, user: User
) -> None:
    async with make_app(login_max_failures=3) as app:
        client = app.test_client()
        secret, _ = await with_totp(client, session, settings, user)
        wrong = f"{(int(next_code(secret)) + 1) % 1_000_000:06d}"
        statuses = []
        for _ in range(2):
            token = await mfa_token_of(client, user.email)
            for _ in range(2):
                response = await client.post(
                    MFA, json={"mfa_token": token, "code": wrong}
                )
                statuses.append(response.status_code)

    assert statuses == [401, 401, 401, 429]


async def test_a_deactivated_account_answers_as_today(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    await with_totp(client, session, settings, user)
    await deactivate(session, user)

    response = await post_login(client, user.email)

    assert response.status_code == 401
    assert await response.get_json() == {"error": "Account is deactivated"}


async def test_a_login_deactivated_between_its_steps_opens_no_session(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    _, codes = await with_totp(client, session, settings, user)
    token = await mfa_token_of(client, user.email)
    await deactivate(session, user)

    response = await client.post(
        MFA, json={"mfa_token": token, "recovery_code": codes[0]}
    )

    assert response.status_code == 401
    assert await response.get_json() == {"error": "Account is deactivated"}


@pytest.mark.parametrize(
    "body",
    [
        {"code": "123456", "recovery_code": "abcd-efgh-jkmn-pqrs"},
        {},
    ],
    ids=["both", "neither"],
)
async def test_the_second_step_takes_a_code_or_a_recovery_code(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    user: User,
    body: dict[str, str],
) -> None:
    await with_totp(client, session, settings, user)
    token = await mfa_token_of(client, user.email)

    response = await client.post(MFA, json={"mfa_token": token, **body})

    assert response.status_code == 400
    assert await response.get_json() == {"error": "Send either code or recovery_code"}


async def test_the_second_step_needs_its_token(client: Client) -> None:
    response = await client.post(MFA, json={"code": "123456"})

    assert response.status_code == 400
    assert await response.get_json() == {
        "error": "Validation failed",
        "errors": {"mfa_token": ["Missing data for required field."]},
    }


async def test_login_still_answers_tokens_to_an_account_whose_totp_is_pending(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    headers = await login_headers(session, settings, user)
    await client.post(f"{API}/auth/totp", headers=headers)  # not confirmed

    response = await client.post(
        LOGIN, json={"email": user.email, "password": PASSWORD}
    )

    assert response.status_code == 200
