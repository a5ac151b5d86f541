"""An account's address: POST /auth/email/verify/request and /auth/email/verify,
POST /auth/email and /auth/email/confirm, and REQUIRE_VERIFIED_EMAIL. Every
token is read from the mail a real SMTP server (aiosmtpd) received."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import SecurityEvent, User
from tests.factories import PASSWORD, make_user, utcnow
from tests.mailbox import SmtpServer, link_in, text_of
from tests.support import (
    ACCOUNT,
    API,
    ME,
    USERS,
    AppMaker,
    bearer,
    cases,
    login,
    post_login,
    registration,
    user_json,
)

VERIFY_REQUEST = f"{API}/auth/email/verify/request"
VERIFY = f"{API}/auth/email/verify"
CHANGE = f"{API}/auth/email"
CONFIRM = f"{API}/auth/email/confirm"
VERIFY_LINK = re.compile(r"https://app\.example/verify\?token=(\S+)")
CHANGE_LINK = re.compile(r"https://app\.example/confirm\?token=(\S+)")
INVALID_VERIFY = {"error": "Invalid or expired verification token"}
INVALID_CHANGE = {"error": "Invalid or expired confirmation token"}
NOT_VERIFIED = {"error": "Email address not verified"}
TAKEN_SINCE = {"error": "Email already registered by another user"}
NEW = "ada.new@example.com"
URLS = {
    "email_verify_url": "https://app.example/verify?token={token}",
    "email_change_url": "https://app.example/confirm?token={token}",
}


@pytest.fixture
async def mail_app(make_app: AppMaker, smtp: SmtpServer) -> AsyncIterator[Quart]:
    async with make_app(smtp_url=smtp.url, **URLS) as app:
        yield app


@pytest.fixture
def mail_client(mail_app: Quart) -> Client:
    return mail_app.test_client()


async def headers_of(
    client: Client, email: str, password: str = PASSWORD
) -> dict[str, str]:
    """A fresh login's access token (the route's: fresh for FRESH_SESSION_SECONDS)."""
    return bearer((await login(client, email, password))["access_token"])


async def mailed(smtp: SmtpServer, count: int) -> list[EmailMessage]:
    return (await smtp.inbox.wait_for(count))[:count]


async def verification_token(
    client: Client, smtp: SmtpServer, headers: dict[str, str]
) -> str:
    before = len(smtp.inbox.messages)
    response = await client.post(VERIFY_REQUEST, headers=headers)
    assert response.status_code == 202, await response.get_data(as_text=True)
    messages = await mailed(smtp, before + 1)
    return link_in(messages[before], VERIFY_LINK)


async def change_token(
    client: Client, smtp: SmtpServer, headers: dict[str, str], new_email: str = NEW
) -> str:
    before = len(smtp.inbox.messages)
    response = await client.post(CHANGE, json={"new_email": new_email}, headers=headers)
    assert response.status_code == 202, await response.get_data(as_text=True)
    await smtp.inbox.wait_for(before + 2)
    [confirm] = [m for m in smtp.inbox.messages[before:] if m["To"] == new_email]
    return link_in(confirm, CHANGE_LINK)


async def verified(client: Client, headers: dict[str, str]) -> bool:
    response = await client.get(ACCOUNT, headers=headers)
    assert response.status_code == 200
    value: bool = (await response.get_json())["email_verified"]
    return value


async def event_types(session: AsyncSession, user: User) -> list[str]:
    rows = await session.scalars(
        select(SecurityEvent.type)
        .where(SecurityEvent.user_id == user.id)
        .order_by(SecurityEvent.id)
    )
    return list(rows)


# --- verification ------------------------------------------------------------


async def test_every_user_starts_unverified(mail_client: Client, user: User) -> None:
    assert (
        await verified(mail_client, await headers_of(mail_client, user.email)) is False
    )


async def test_mailed_link_verifies_the_address(
    mail_client: Client, smtp: SmtpServer, session: AsyncSession, user: User
) -> None:
    headers = await headers_of(mail_client, user.email)
    token = await verification_token(mail_client, smtp, headers)

    response = await mail_client.post(VERIFY, json={"token": token})

    assert response.status_code == 204
    assert await verified(mail_client, headers) is True
    [message] = smtp.inbox.messages
    assert (message["To"], message["Subject"]) == (
        user.email,
        "Confirm your email address",
    )
    assert "email_verified" in await event_types(session, user)


async def test_verification_token_works_once(
    mail_client: Client, smtp: SmtpServer, user: User
) -> None:
    headers = await headers_of(mail_client, user.email)
    token = await verification_token(mail_client, smtp, headers)
    await mail_client.post(VERIFY, json={"token": token})

    again = await mail_client.post(VERIFY, json={"token": token})

    assert (again.status_code, await again.get_json()) == (400, INVALID_VERIFY)


async def test_verification_token_dies_when_the_address_changes(
    mail_client: Client, smtp: SmtpServer, user: User
) -> None:
    headers = await headers_of(mail_client, user.email)
    token = await verification_token(mail_client, smtp, headers)
    confirmed = await mail_client.post(
        CONFIRM, json={"token": await change_token(mail_client, smtp, headers)}
    )

    response = await mail_client.post(VERIFY, json={"token": token})

    assert confirmed.status_code == 200
    assert (response.status_code, await response.get_json()) == (400, INVALID_VERIFY)


async def test_expired_verification_token_refused(
    make_app: AppMaker, smtp: SmtpServer, user: User
) -> None:
    async with make_app(smtp_url=smtp.url, email_verify_expires=0, **URLS) as app:
        client = app.test_client()
        token = await verification_token(
            client, smtp, await headers_of(client, user.email)
        )
        await asyncio.sleep(1.1)
        response = await client.post(VERIFY, json={"token": token})

    assert (response.status_code, await response.get_json()) == (400, INVALID_VERIFY)


async def test_verified_address_is_not_mailed_again(
    mail_client: Client, smtp: SmtpServer, session: AsyncSession
) -> None:
    user = await make_user(session, email_verified_at=utcnow())
    response = await mail_client.post(
        VERIFY_REQUEST, headers=await headers_of(mail_client, user.email)
    )
    await asyncio.sleep(0.2)

    assert response.status_code == 202
    assert smtp.inbox.messages == []


NOT_TOKENS = {
    "garbage": "garbage",
    "a-reset-token-shape": "a.b.c",
    "empty": "",
}


@cases("token", NOT_TOKENS)
@pytest.mark.parametrize("route", [VERIFY, CONFIRM])
async def test_tokens_that_are_not_tokens_refused(
    mail_client: Client, token: str, route: str
) -> None:
    response = await mail_client.post(route, json={"token": token})

    assert response.status_code == 400
    body = await response.get_json()
    assert body in (INVALID_VERIFY, INVALID_CHANGE) or "errors" in body


async def test_change_token_is_no_verification_token(
    mail_client: Client, smtp: SmtpServer, user: User
) -> None:
    token = await change_token(
        mail_client, smtp, await headers_of(mail_client, user.email)
    )

    response = await mail_client.post(VERIFY, json={"token": token})

    assert (response.status_code, await response.get_json()) == (400, INVALID_VERIFY)


async def test_verification_mail_is_limited_per_address(
    make_app: AppMaker, smtp: SmtpServer, user: User
) -> None:
    async with make_app(
        smtp_url=smtp.url, password_reset_max_per_address=2, **URLS
    ) as app:
        client = app.test_client()
        headers = await headers_of(client, user.email)
        answers = [
            (await client.post(VERIFY_REQUEST, headers=headers)).status_code
            for _ in range(3)
        ]

    assert answers == [202, 202, 429]


async def test_verification_needs_a_token(mail_client: Client) -> None:
    assert (await mail_client.post(VERIFY_REQUEST)).status_code == 401


# --- REQUIRE_VERIFIED_EMAIL --------------------------------------------------


@pytest.fixture
async def strict_app(make_app: AppMaker, smtp: SmtpServer) -> AsyncIterator[Quart]:
    async with make_app(smtp_url=smtp.url, require_verified_email=True, **URLS) as app:
        yield app


async def test_unverified_right_password_is_403(strict_app: Quart, user: User) -> None:
    response = await post_login(strict_app.test_client(), user.email)

    assert (response.status_code, await response.get_json()) == (403, NOT_VERIFIED)


async def test_unverified_wrong_password_answers_as_ever(
    strict_app: Quart, user: User
) -> None:
    response = await post_login(strict_app.test_client(), user.email, "wrong-password")

    assert (response.status_code, await response.get_json()) == (
        401,
        {"error": "Invalid email or password"},
    )


async def test_registration_mails_the_link_that_opens_login(
    strict_app: Quart, smtp: SmtpServer
) -> None:
    client = strict_app.test_client()
    registered = await client.post(USERS, json=registration("fresh@example.com"))
    [message] = await mailed(smtp, 1)
    refused = await post_login(client, "fresh@example.com")

    verified_now = await client.post(
        VERIFY, json={"token": link_in(message, VERIFY_LINK)}
    )
    accepted = await post_login(client, "fresh@example.com")

    assert registered.status_code == 201
    assert message["To"] == "fresh@example.com"
    assert refused.status_code == 403
    assert verified_now.status_code == 204
    assert accepted.status_code == 200


async def test_by_default_unverified_users_log_in(client: Client, user: User) -> None:
    assert (await post_login(client, user.email)).status_code == 200


# --- address change ----------------------------------------------------------


async def test_change_mails_a_link_to_the_new_address_and_a_notice_to_the_old(
    mail_client: Client, smtp: SmtpServer, user: User
) -> None:
    headers = await headers_of(mail_client, user.email)
    token = await change_token(mail_client, smtp, headers)

    [notice] = smtp.inbox.to(user.email)
    text = text_of(notice)
    assert notice["Subject"] == "A change of your email address was asked"
    assert NEW in text
    assert "http" not in text
    assert token not in text
    assert "If it was not you" in text
    # Nothing changed yet.
    me = await mail_client.get(ME, headers=headers)
    assert (await me.get_json())["email"] == user.email


async def test_confirmed_change_moves_the_account_to_the_new_verified_address(
    mail_client: Client, smtp: SmtpServer, session: AsyncSession, user: User
) -> None:
    headers = await headers_of(mail_client, user.email)
    token = await change_token(mail_client, smtp, headers)

    response = await mail_client.post(CONFIRM, json={"token": token})
    await smtp.inbox.wait_for(3)

    body = await response.get_json()
    assert response.status_code == 200
    assert body["email"] == NEW
    assert set(body) == set(user_json(user))
    # Sessions stay; the new address is verified and signs in, the old does not.
    assert await verified(mail_client, headers) is True
    assert (await post_login(mail_client, NEW)).status_code == 200
    assert (await post_login(mail_client, user.email)).status_code == 401
    changed = smtp.inbox.to(user.email)[-1]
    assert changed["Subject"] == "Your email address was changed"
    assert "http" not in text_of(changed)
    assert "email_changed" in await event_types(session, user)


async def test_change_token_works_once(
    mail_client: Client, smtp: SmtpServer, user: User
) -> None:
    token = await change_token(
        mail_client, smtp, await headers_of(mail_client, user.email)
    )
    await mail_client.post(CONFIRM, json={"token": token})

    again = await mail_client.post(CONFIRM, json={"token": token})

    assert (again.status_code, await again.get_json()) == (400, INVALID_CHANGE)


REFUSED_CHANGES = {
    "taken": ("other@example.com", ["Email already registered."]),
    "taken-other-case": ("OTHER@example.com", ["Email already registered."]),
    "same": ("TEST@example.com", ["Must differ from the current address."]),
    "not-an-address": ("nope", ["Not a valid email address."]),
}


@cases("new_email, messages", REFUSED_CHANGES)
async def test_change_refused_at_request(
    mail_client: Client,
    session: AsyncSession,
    user: User,
    new_email: str,
    messages: list[str],
) -> None:
    await make_user(session, email="other@example.com")

    response = await mail_client.post(
        CHANGE,
        json={"new_email": new_email},
        headers=await headers_of(mail_client, user.email),
    )

    assert response.status_code == 400
    assert await response.get_json() == {
        "error": "Validation failed",
        "errors": {"new_email": messages},
    }


async def test_address_taken_since_the_request_is_409(
    mail_client: Client, smtp: SmtpServer, session: AsyncSession, user: User
) -> None:
    token = await change_token(
        mail_client, smtp, await headers_of(mail_client, user.email)
    )
    await mail_client.post(USERS, json=registration(NEW))

    response = await mail_client.post(CONFIRM, json={"token": token})

    assert (response.status_code, await response.get_json()) == (409, TAKEN_SINCE)


async def test_change_needs_a_fresh_session(
    mail_client: Client, make_app: AppMaker, smtp: SmtpServer, user: User
) -> None:
    async with make_app(smtp_url=smtp.url, fresh_session_seconds=0, **URLS) as app:
        client = app.test_client()
        headers = await headers_of(client, user.email)
        await asyncio.sleep(0.01)
        response = await client.post(CHANGE, json={"new_email": NEW}, headers=headers)

    assert response.status_code == 401
    assert await response.get_json() == {
        "msg": "Fresh token required",
        "error": "Fresh token required",
    }


# --- races -------------------------------------------------------------------


async def test_two_confirmations_of_one_change_one_wins(
    mail_client: Client, smtp: SmtpServer, user: User
) -> None:
    token = await change_token(
        mail_client, smtp, await headers_of(mail_client, user.email)
    )

    answers = await asyncio.gather(
        *(mail_client.post(CONFIRM, json={"token": token}) for _ in range(2))
    )

    assert sorted(a.status_code for a in answers) == [200, 400]


async def test_two_users_claiming_one_address_one_wins(
    mail_client: Client, smtp: SmtpServer, session: AsyncSession, user: User
) -> None:
    other = await make_user(session, email="other@example.com")
    tokens = [
        await change_token(mail_client, smtp, await headers_of(mail_client, each.email))
        for each in (user, other)
    ]

    answers = await asyncio.gather(
        *(mail_client.post(CONFIRM, json={"token": t}) for t in tokens)
    )

    assert sorted(a.status_code for a in answers) == [200, 409]
    bodies = {answer.status_code: await answer.get_json() for answer in answers}
    assert bodies[200]["email"] == NEW
    assert bodies[409] == TAKEN_SINCE


@pytest.mark.parametrize("first", ["verification", "change"])
async def test_verification_racing_a_change_in_either_order(
    mail_client: Client, smtp: SmtpServer, user: User, first: str
) -> None:
    """Whichever lands first, the change stands and its new address is verified;
    a verification of the old address after the change is refused."""
    headers = await headers_of(mail_client, user.email)
    verify_token = await verification_token(mail_client, smtp, headers)
    confirm_token = await change_token(mail_client, smtp, headers)
    calls = {
        "verification": lambda: mail_client.post(VERIFY, json={"token": verify_token}),
        "change": lambda: mail_client.post(CONFIRM, json={"token": confirm_token}),
    }
    second = "change" if first == "verification" else "verification"

    answers = {first: await calls[first](), second: await calls[second]()}

    assert answers["change"].status_code == 200
    assert answers["verification"].status_code == (
        204 if first == "verification" else 400
    )
    me = await mail_client.get(ME, headers=headers)
    assert (await me.get_json())["email"] == NEW
    assert await verified(mail_client, headers) is True


async def test_verification_and_change_at_once(
    mail_client: Client, smtp: SmtpServer, user: User
) -> None:
    headers = await headers_of(mail_client, user.email)
    verify_token = await verification_token(mail_client, smtp, headers)
    confirm_token = await change_token(mail_client, smtp, headers)

    verification, change = await asyncio.gather(
        mail_client.post(VERIFY, json={"token": verify_token}),
        mail_client.post(CONFIRM, json={"token": confirm_token}),
    )

    assert change.status_code == 200
    assert verification.status_code in (204, 400)
    me = await mail_client.get(ME, headers=headers)
    assert (await me.get_json())["email"] == NEW
    assert await verified(mail_client, headers) is True


INVALID_BODIES = {
    "token-missing": (
        CONFIRM,
        {},
        {"token": ["Missing data for required field."]},
    ),
    "token-not-text": (VERIFY, {"token": 7}, {"token": ["Not a valid string."]}),
    "token-too-long": (
        VERIFY,
        {"token": "x" * 2049},
        {"token": ["Length must be between 1 and 2048."]},
    ),
    "token-unknown-field": (
        CONFIRM,
        {"token": "x", "user_id": 1},
        {"user_id": ["Unknown field."]},
    ),
    "new-email-missing": (
        CHANGE,
        {},
        {"new_email": ["Missing data for required field."]},
    ),
    "new-email-unknown-field": (
        CHANGE,
        {"new_email": NEW, "email": NEW},
        {"email": ["Unknown field."]},
    ),
}


@cases("route, payload, errors", INVALID_BODIES)
async def test_invalid_bodies_answer_400_with_the_fields(
    mail_client: Client,
    user: User,
    route: str,
    payload: dict[str, Any],
    errors: dict[str, list[str]],
) -> None:
    headers = await headers_of(mail_client, user.email)

    response = await mail_client.post(route, json=payload, headers=headers)

    assert response.status_code == 400
    assert await response.get_json() == {"error": "Validation failed", "errors": errors}


async def test_address_mails_are_limited_per_client_and_per_new_address(
    make_app: AppMaker, smtp: SmtpServer, session: AsyncSession, user: User
) -> None:
    """One client asking for two accounts' links; two accounts asking to move to
    one address: the second of each is over its budget."""
    other = await make_user(session, email="other@example.com")
    limits = {"password_reset_max_per_ip": 1, "password_reset_max_per_address": 1}
    async with make_app(smtp_url=smtp.url, **limits, **URLS) as app:
        client = app.test_client()
        ours, theirs = [await headers_of(client, u.email) for u in (user, other)]
        verify = [
            (await client.post(VERIFY_REQUEST, headers=h)).status_code
            for h in (ours, theirs)
        ]
        change = [
            (
                await client.post(
                    CHANGE,
                    json={"new_email": NEW},
                    headers=h,
                    scope_base={"client": (f"192.0.2.{n}", 40000)},
                )
            ).status_code
            for n, h in enumerate((ours, theirs), start=1)
        ]

    assert verify == [202, 429]
    assert change == [202, 429]
