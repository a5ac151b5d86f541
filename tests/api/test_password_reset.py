"""Forgotten passwords: POST /auth/password/forgot and /auth/password/reset.

The mail goes through a real SMTP server running in the test process (aiosmtpd),
and every token used below is read from the delivered message, as a user would.
"""

from __future__ import annotations

import logging
import re
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from email.message import EmailMessage
from typing import Any

import jwt
import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.models import User
from service.security.tokens import create_reset_token
from tests.factories import (
    PASSWORD,
    flask_headers_for,
    flask_token_for,
    make_user,
    utcnow,
)
from tests.mailbox import SmtpServer, eventually, link_in
from tests.ports import free_port
from tests.support import (
    FORGOT,
    INVALID_CREDENTIALS,
    ME,
    PASSWORD_CHANGE,
    RESET,
    REVOKED,
    AppMaker,
    bearer,
    cases,
    get_me,
    post_login,
)

RESET_URL = "https://app.example/reset?token={token}"
LINK = re.compile(r"https://app\.example/reset\?token=(\S+)")
DEV_LINK = re.compile(r"http://127\.0\.0\.1:8000/reset-password\?token=(\S+)")
ACCEPTED = {"message": "If the address is registered, a reset link is on its way"}
INVALID_RESET = {"error": "Invalid or expired reset token"}
NEW_PASSWORD = "brand-new-password-789"


@asynccontextmanager
async def mail_app(make_app: AppMaker, **changes: Any) -> AsyncIterator[Client]:
    """An app that mails through SMTP; leaving it waits for its background sends."""
    async with make_app(password_reset_url=RESET_URL, **changes) as app:
        yield app.test_client()


@pytest.fixture
async def mail_client(make_app: AppMaker, smtp: SmtpServer) -> AsyncIterator[Client]:
    async with mail_app(make_app, smtp_url=smtp.url) as client:
        yield client


def token_in(message: EmailMessage) -> str:
    return link_in(message, LINK)


async def reset_token(client: Client, smtp: SmtpServer, email: str) -> str:
    """Ask for a reset link and read the token from the delivered mail."""
    before = len(smtp.inbox.messages)
    response = await client.post(FORGOT, json={"email": email})
    assert response.status_code == 202
    messages = await smtp.inbox.wait_for(before + 1)
    return token_in(messages[before])


async def reset(client: Client, token: str, password: str = NEW_PASSWORD) -> Any:
    return await client.post(RESET, json={"token": token, "new_password": password})


async def reset_by_mail(client: Client, smtp: SmtpServer, email: str) -> None:
    """A reset with the mailed token, which must succeed."""
    response = await reset(client, await reset_token(client, smtp, email))
    assert response.status_code == 204


async def access_token(client: Client, email: str, password: str = PASSWORD) -> str:
    response = await post_login(client, email, password)
    assert response.status_code == 200
    token: str = (await response.get_json())["access_token"]
    return token


@pytest.fixture
async def mailed_token(mail_client: Client, smtp: SmtpServer, user: User) -> str:
    """The token of a reset link mailed to the user."""
    return await reset_token(mail_client, smtp, user.email)


# What makes an account no longer live.
NOT_LIVE = {
    "soft-deleted": {"deleted_at": utcnow()},
    "deactivated": {"is_active": False},
}


def mail_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "service.mail"]


# --- POST /auth/password/forgot ----------------------------------------------


async def test_forgot_known_email_returns_202(mail_client: Client, user: User) -> None:
    response = await mail_client.post(FORGOT, json={"email": user.email})

    assert response.status_code == 202
    assert await response.get_json() == ACCEPTED


async def test_forgot_unknown_email_returns_same_202(mail_client: Client) -> None:
    response = await mail_client.post(FORGOT, json={"email": "nobody@example.com"})

    assert response.status_code == 202
    assert await response.get_json() == ACCEPTED


async def test_forgot_known_email_mails_reset_link(
    mail_client: Client, smtp: SmtpServer, settings: Settings, user: User
) -> None:
    await mail_client.post(FORGOT, json={"email": user.email})

    [message] = await smtp.inbox.wait_for()
    assert message["To"] == user.email
    assert message["From"] == settings.mail_from
    assert message["Subject"] == "Reset your password"
    assert smtp.inbox.recipients == [[user.email]]
    assert token_in(message)


async def test_forgot_email_in_other_case_mails_registered_address(
    mail_client: Client, smtp: SmtpServer, user: User
) -> None:
    await mail_client.post(FORGOT, json={"email": user.email.upper()})

    [message] = await smtp.inbox.wait_for()
    assert message["To"] == user.email


@cases("state", {"unknown": {}, **NOT_LIVE})
async def test_forgot_unmailable_address_sends_nothing(
    settings: Settings,
    make_app: AppMaker,
    session: AsyncSession,
    smtp: SmtpServer,
    state: dict[str, Any],
) -> None:
    if state:
        await make_user(session, email="quiet@example.com", **state)

    async with mail_app(make_app, smtp_url=smtp.url) as client:
        response = await client.post(FORGOT, json={"email": "quiet@example.com"})
    # Leaving the app waited for every background task it started.

    assert response.status_code == 202
    assert await response.get_json() == ACCEPTED
    assert smtp.inbox.messages == []


async def test_forgot_mails_only_the_known_address(
    mail_client: Client, smtp: SmtpServer, user: User
) -> None:
    await mail_client.post(FORGOT, json={"email": "nobody@example.com"})
    await mail_client.post(FORGOT, json={"email": user.email})

    await smtp.inbox.wait_for()
    assert smtp.inbox.recipients == [[user.email]]


async def test_forgot_answers_known_and_unknown_in_same_time(
    settings: Settings,
    make_app: AppMaker,
    smtp: SmtpServer,
    user: User,
) -> None:
    # A slow mail server: a service that sent before answering would take its
    # 0.3 s for known addresses only.
    smtp.inbox.delay = 0.3
    known: list[float] = []
    unknown: list[float] = []
    # Ten mails: past the per-address and per-client limits, which this is not about.
    unlimited = {"password_reset_max_per_address": 0, "password_reset_max_per_ip": 0}
    async with mail_app(make_app, smtp_url=smtp.url, **unlimited) as client:
        for _ in range(5):
            for email, timings in (
                (user.email, known),
                ("nobody@example.com", unknown),
            ):
                started = time.perf_counter()
                response = await client.post(FORGOT, json={"email": email})
                timings.append(time.perf_counter() - started)
                assert response.status_code == 202

    fast, slow = sorted((statistics.median(known), statistics.median(unknown)))
    assert slow < 3 * fast + 0.1, (known, unknown)


INVALID_FORGOT_BODIES = {
    "missing": ({}, {"email": ["Missing data for required field."]}),
    "not-email": ({"email": "not-an-email"}, {"email": ["Not a valid email address."]}),
    "unknown-field": (
        {"email": "a@example.com", "extra": 1},
        {"extra": ["Unknown field."]},
    ),
}


@cases("payload, errors", INVALID_FORGOT_BODIES)
async def test_forgot_invalid_body_returns_400(
    mail_client: Client, payload: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    response = await mail_client.post(FORGOT, json=payload)

    assert response.status_code == 400
    assert await response.get_json() == {"error": "Validation failed", "errors": errors}


async def test_forgot_without_smtp_logs_the_link(
    client: Client, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.mail")

    response = await client.post(FORGOT, json={"email": user.email})
    await eventually(lambda: bool(mail_records(caplog)))

    assert response.status_code == 202
    [record] = mail_records(caplog)
    assert record.levelno == logging.INFO
    assert user.email in record.getMessage()
    found = DEV_LINK.search(record.getMessage())
    assert found is not None, record.getMessage()
    # The logged link is a working one.
    assert (await reset(client, found.group(1))).status_code == 204


async def test_production_logs_reset_mail_with_its_token_masked(
    make_app: AppMaker, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    """MAIL_BACKEND=log in production: the log shows a mail went out, and whoever
    reads the log cannot reset the password with it."""
    caplog.set_level(logging.INFO, logger="service.mail")

    async with mail_app(make_app, env="production", mail_backend="log") as client:
        response = await client.post(FORGOT, json={"email": user.email})
        await eventually(lambda: bool(mail_records(caplog)))
        [record] = mail_records(caplog)
        found = LINK.search(record.getMessage())
        assert found is not None, record.getMessage()
        logged = found.group(1)
        refused = await reset(client, logged.removesuffix("…(masked)"))

    assert response.status_code == 202
    assert user.email in record.getMessage()
    assert logged.endswith("…(masked)")
    assert len(logged.removesuffix("…(masked)")) == 8
    assert (refused.status_code, await refused.get_json()) == (400, INVALID_RESET)


async def test_forgot_unreachable_smtp_still_202_and_logs_failure(
    settings: Settings,
    make_app: AppMaker,
    user: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="service.mail")

    nobody = f"smtp://127.0.0.1:{free_port()}"
    async with mail_app(make_app, smtp_url=nobody, mail_retries=0) as client:
        response = await client.post(FORGOT, json={"email": user.email})

    assert response.status_code == 202
    assert [r.levelno for r in mail_records(caplog)] == [logging.ERROR]


# --- POST /auth/password/reset -----------------------------------------------


async def test_reset_with_mailed_token_returns_204(
    mail_client: Client, mailed_token: str
) -> None:
    response = await reset(mail_client, mailed_token)

    assert response.status_code == 204
    assert await response.get_data() == b""


@pytest.mark.parametrize(
    ("password", "status"),
    [
        pytest.param(NEW_PASSWORD, 200, id="new-password-logs-in"),
        pytest.param(PASSWORD, 401, id="old-password-no-longer-logs-in"),
    ],
)
async def test_reset_replaces_the_password(
    mail_client: Client, smtp: SmtpServer, user: User, password: str, status: int
) -> None:
    await reset_by_mail(mail_client, smtp, user.email)

    response = await post_login(mail_client, user.email, password)

    assert response.status_code == status
    if status == 401:
        assert await response.get_json() == INVALID_CREDENTIALS


async def test_reset_same_token_twice_second_returns_400(
    mail_client: Client, mailed_token: str, user: User
) -> None:
    first = await reset(mail_client, mailed_token)
    second = await reset(mail_client, mailed_token, "yet-another-password-1")

    assert first.status_code == 204
    assert second.status_code == 400
    assert await second.get_json() == INVALID_RESET
    assert (await post_login(mail_client, user.email, NEW_PASSWORD)).status_code == 200


async def test_reset_older_of_two_tokens_dies_with_first_reset(
    mail_client: Client, smtp: SmtpServer, user: User
) -> None:
    older = await reset_token(mail_client, smtp, user.email)
    newer = await reset_token(mail_client, smtp, user.email)

    first = await reset(mail_client, newer)
    second = await reset(mail_client, older, "yet-another-password-1")

    assert (first.status_code, second.status_code) == (204, 400)
    assert await second.get_json() == INVALID_RESET


async def test_reset_token_from_before_password_change_returns_400(
    mail_client: Client, mailed_token: str, user: User
) -> None:
    changed = await mail_client.post(
        PASSWORD_CHANGE,
        json={"current_password": PASSWORD, "new_password": "changed-password-1"},
        headers=bearer(await access_token(mail_client, user.email)),
    )

    response = await reset(mail_client, mailed_token)

    assert changed.status_code == 204
    assert response.status_code == 400
    assert await response.get_json() == INVALID_RESET
    assert (
        await post_login(mail_client, user.email, "changed-password-1")
    ).status_code == 200


async def test_reset_expired_token_returns_400(
    mail_client: Client, settings: Settings, user: User
) -> None:
    token = create_reset_token(
        user_id=user.id,
        password_hash=user.password_hash,
        key=settings.secret_key,
        expires_in=-10,
    )

    response = await reset(mail_client, token)

    assert response.status_code == 400
    assert await response.get_json() == INVALID_RESET


async def test_reset_token_from_short_lived_setting_expires(
    settings: Settings,
    make_app: AppMaker,
    smtp: SmtpServer,
    user: User,
) -> None:
    # PASSWORD_RESET_EXPIRES is what the mailed token gets, not a constant; at 0
    # the token is expired as soon as it is issued.
    async with mail_app(
        make_app, smtp_url=smtp.url, password_reset_expires=0
    ) as client:
        token = await reset_token(client, smtp, user.email)
        response = await reset(client, token)

    assert response.status_code == 400
    assert await response.get_json() == INVALID_RESET


async def test_reset_token_lasts_an_hour_by_default(
    mail_client: Client, smtp: SmtpServer, user: User
) -> None:
    started = int(time.time())
    token = await reset_token(mail_client, smtp, user.email)

    claims = jwt.decode(token, options={"verify_signature": False})

    assert started + 3600 <= claims["exp"] <= int(time.time()) + 3600


def forged(settings: Settings, user: User) -> str:
    """A reset token of the user's, signed with another key."""
    return create_reset_token(
        user_id=user.id,
        password_hash=user.password_hash,
        key="some-other-secret-key-0123456789-abcdef",
        expires_in=600,
    )


# Tokens no reset accepts, made from the settings and the user.
NOT_RESET_TOKENS: dict[str, Callable[[Settings, User], str]] = {
    "garbage": lambda settings, user: "garbage",
    "three-parts": lambda settings, user: "a.b.c",
    "longest-allowed": lambda settings, user: "x" * 2048,
    "access-token": flask_token_for,
    "signed-with-other-key": forged,
}


@cases("make", NOT_RESET_TOKENS)
async def test_reset_with_what_is_no_reset_token_returns_400(
    mail_client: Client,
    settings: Settings,
    user: User,
    make: Callable[[Settings, User], str],
) -> None:
    response = await reset(mail_client, make(settings, user))

    assert response.status_code == 400
    assert await response.get_json() == INVALID_RESET


@cases("change", NOT_LIVE)
async def test_reset_token_of_user_no_longer_live_returns_400(
    mail_client: Client,
    mailed_token: str,
    session: AsyncSession,
    user: User,
    change: dict[str, Any],
) -> None:
    for name, value in change.items():
        setattr(user, name, value)
    await session.commit()

    response = await reset(mail_client, mailed_token)

    assert response.status_code == 400
    assert await response.get_json() == INVALID_RESET


async def test_reset_token_is_not_an_access_token(
    mail_client: Client, mailed_token: str
) -> None:
    response = await get_me(mail_client, mailed_token)

    assert response.status_code in (401, 422)
    assert "id" not in await response.get_json()


@pytest.mark.parametrize("kind", ["session", "sessionless"])
async def test_reset_revokes_the_tokens_from_before(
    mail_client: Client, smtp: SmtpServer, settings: Settings, user: User, kind: str
) -> None:
    if kind == "session":
        before = bearer(await access_token(mail_client, user.email))
    else:
        before = flask_headers_for(settings, user)

    await reset_by_mail(mail_client, smtp, user.email)
    response = await mail_client.get(ME, headers=before)

    assert response.status_code == 401
    assert await response.get_json() == REVOKED


async def test_reset_then_fresh_login_works(
    mail_client: Client, smtp: SmtpServer, user: User
) -> None:
    await reset_by_mail(mail_client, smtp, user.email)

    fresh = await access_token(mail_client, user.email, NEW_PASSWORD)
    response = await get_me(mail_client, fresh)

    assert response.status_code == 200


INVALID_RESET_BODIES = {
    "short-password": ({"new_password": "short"}, "new_password"),
    "long-password": ({"new_password": "p" * 129}, "new_password"),
    "nul": ({"new_password": "pass\x00word"}, "new_password"),
    "empty-token": ({"token": ""}, "token"),
    "token-too-long": ({"token": "t" * 2049}, "token"),
    "unknown-field": ({"extra": "x"}, "extra"),
}


@cases("payload, field_name", INVALID_RESET_BODIES)
async def test_reset_invalid_body_returns_400_and_token_still_works(
    mail_client: Client, mailed_token: str, payload: dict[str, Any], field_name: str
) -> None:
    response = await mail_client.post(
        RESET,
        json={"token": mailed_token, "new_password": NEW_PASSWORD, **payload},
    )

    assert response.status_code == 400
    body = await response.get_json()
    assert body["error"] == "Validation failed"
    assert set(body["errors"]) == {field_name}
    assert (await reset(mail_client, mailed_token)).status_code == 204


async def test_reset_stores_a_new_hash(
    mail_client: Client, smtp: SmtpServer, session: AsyncSession, user: User
) -> None:
    old_hash = user.password_hash
    token = await reset_token(mail_client, smtp, user.email)

    await reset(mail_client, token)

    stored = await session.scalar(select(User.password_hash).where(User.id == user.id))
    assert stored is not None
    assert stored != old_hash
    assert NEW_PASSWORD not in stored
