"""Security notices: the owner is mailed when the password is changed or reset,
and when a reused refresh token ends a session; each says what, when, from
which client, and what to do, and carries no working secret. Over real SMTP
(aiosmtpd in the test), the mail read as its reader would."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from service.models import User
from tests.mailbox import Inbox, SmtpServer, eventually, link_in, smtp_server, text_of
from tests.ports import free_port
from tests.support import (
    FORGOT,
    RESET,
    AppMaker,
    bearer,
    change_password,
    login,
    post_refresh,
    refreshed,
)

NEW_PASSWORD = "a new passphrase 9"
FROM = {"ip": "198.51.100.4", "user_agent": "notice-test/2.0"}
RESET_LINK = re.compile(r"https://app\.example/reset\?token=(\S+)")
# What looks like a token: a JWT, or any long run of token characters.
SECRET_LOOKING = re.compile(r"eyJ[\w-]+\.|[A-Za-z0-9_-]{32,}")


@pytest.fixture
async def mail_app(make_app: AppMaker, smtp: SmtpServer) -> AsyncIterator[Quart]:
    async with make_app(
        smtp_url=smtp.url, password_reset_url="https://app.example/reset?token={token}"
    ) as app:
        yield app


@pytest.fixture
def mail_client(mail_app: Quart) -> Client:
    return mail_app.test_client()


def assert_is_a_notice(message: EmailMessage, user: User, subject: str) -> str:
    text = text_of(message)
    assert message["To"] == user.email
    assert message["Subject"] == subject
    assert text.startswith(f"Hello {user.first_name},\n")
    assert re.search(r"When: \d{4}-\d\d-\d\d \d\d:\d\d UTC\n", text)
    assert f"From address: {FROM['ip']}\n" in text
    assert f"Using: {FROM['user_agent']}\n" in text
    assert "If it was not you" in text
    assert not SECRET_LOOKING.search(text), text
    assert "http" not in text
    return text


def from_client() -> dict[str, Any]:
    return {
        "headers": {"User-Agent": FROM["user_agent"]},
        "scope_base": {"client": (FROM["ip"], 40000)},
    }


async def test_password_change_mails_a_notice(
    mail_client: Client, smtp: SmtpServer, user: User
) -> None:
    tokens = await login(mail_client, user.email)
    headers = bearer(tokens["access_token"]) | from_client()["headers"]

    response = await mail_client.post(
        "/api/v1/auth/password",
        json={"current_password": "password123", "new_password": NEW_PASSWORD},
        headers=headers,
        scope_base=from_client()["scope_base"],
    )
    [message] = await smtp.inbox.wait_for()

    assert response.status_code == 204
    text = assert_is_a_notice(message, user, "Your password was changed")
    assert "The password of your account was changed." in text
    assert NEW_PASSWORD not in text


async def test_reset_mails_a_notice_without_the_link(
    mail_client: Client, smtp: SmtpServer, user: User
) -> None:
    await mail_client.post(FORGOT, json={"email": user.email})
    [reset_mail] = await smtp.inbox.wait_for()
    token = link_in(reset_mail, RESET_LINK)

    response = await mail_client.post(
        RESET, json={"token": token, "new_password": NEW_PASSWORD}, **from_client()
    )
    messages = await smtp.inbox.wait_for(2)

    assert response.status_code == 204
    text = assert_is_a_notice(messages[1], user, "Your password was reset")
    assert token not in text


async def test_reused_refresh_token_mails_a_notice(
    make_app: AppMaker, smtp: SmtpServer, user: User
) -> None:
    async with make_app(
        smtp_url=smtp.url, refresh_rotation=True, refresh_grace_seconds=0
    ) as app:
        client = app.test_client()
        tokens = await login(client, user.email)
        await refreshed(client, tokens["refresh_token"])
        reused = await client.post(
            "/api/v1/auth/refresh",
            headers=bearer(tokens["refresh_token"]) | from_client()["headers"],
            scope_base=from_client()["scope_base"],
        )
        [message] = await smtp.inbox.wait_for()

    assert reused.status_code == 401
    text = assert_is_a_notice(
        message, user, "A session was ended to protect your account"
    )
    assert "used again" in text


async def test_a_refused_change_mails_nothing(
    mail_app: Quart, smtp: SmtpServer, user: User
) -> None:
    client = mail_app.test_client()
    tokens = await login(client, user.email)

    response = await change_password(
        client, bearer(tokens["access_token"]), NEW_PASSWORD, "wrong-current"
    )
    await post_refresh(client, tokens["refresh_token"])

    assert response.status_code == 400
    assert smtp.inbox.messages == []


async def test_notifications_off_mails_nothing(
    make_app: AppMaker, smtp: SmtpServer, user: User
) -> None:
    async with make_app(smtp_url=smtp.url, security_notifications=False) as app:
        client = app.test_client()
        tokens = await login(client, user.email)
        response = await change_password(
            client, bearer(tokens["access_token"]), NEW_PASSWORD
        )
    # Leaving the app drained its outbox.

    assert response.status_code == 204
    assert smtp.inbox.messages == []


async def test_notice_to_the_log_without_smtp(
    client: Client, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.mail")
    tokens = await login(client, user.email)

    await change_password(client, bearer(tokens["access_token"]), NEW_PASSWORD)
    await eventually(lambda: any(r.name == "service.mail" for r in caplog.records))

    [record] = [r for r in caplog.records if r.name == "service.mail"]
    assert f"mail to {user.email}: Your password was changed" in record.getMessage()


async def test_mail_server_down_delays_the_notice_never_the_change(
    make_app: AppMaker, user: User, measurements: list[str]
) -> None:
    """The password change answers at once with the mail server down; the
    notice arrives on a later try once the server is up."""
    port = free_port()
    inbox = Inbox()
    url = f"smtp://127.0.0.1:{port}?starttls=off"
    async with make_app(smtp_url=url, mail_retries=20, mail_retry_delay=0.05) as app:
        client = app.test_client()
        tokens = await login(client, user.email)
        started = time.perf_counter()
        response = await change_password(
            client, bearer(tokens["access_token"]), NEW_PASSWORD
        )
        answered = time.perf_counter() - started
        await eventually(lambda: app.extensions["tally"]["mail_retried"] > 0)
        with smtp_server(port=port, inbox=inbox):
            [message] = await inbox.wait_for()

    assert response.status_code == 204
    assert message["Subject"] == "Your password was changed"
    measurements.append(
        f"password change answered in {answered * 1000:.0f} ms with the mail server "
        "down (one scrypt hash of the new password included)"
    )
