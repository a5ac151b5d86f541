"""What the second factors tell the account's owner: a notice mail when TOTP is
turned on or off, when recovery codes are regenerated and when one is used (over
real SMTP, aiosmtpd in the test), and the security events behind them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pyotp
import pytest
from quart.typing import TestClientProtocol as Client

from service.models import User
from tests.api.test_totp import RECOVERY, TOTP, turn_on_totp
from tests.mailbox import SmtpServer, smtp_server, text_of
from tests.support import API, MFA, AppMaker, bearer, login, post_login

EVENTS = f"{API}/auth/events"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


async def test_factor_changes_and_a_used_recovery_code_are_mailed(
    make_app: AppMaker, smtp: SmtpServer, user: User
) -> None:
    async with make_app(smtp_url=smtp.url) as app:
        client = app.test_client()
        headers = bearer((await login(client, user.email))["access_token"])
        secret, _ = await turn_on_totp(client, headers)
        codes = (await (await client.post(RECOVERY, headers=headers)).get_json())[
            "recovery_codes"
        ]
        second = await (await post_login(client, user.email)).get_json()
        used = await client.post(
            MFA, json={"mfa_token": second["mfa_token"], "recovery_code": codes[0]}
        )
        off = await client.delete(TOTP, headers=headers)
        messages = await smtp.inbox.wait_for(4)

    assert (used.status_code, off.status_code) == (200, 204)
    assert [message["Subject"] for message in messages] == [
        "Two-step sign-in was turned on",
        "New recovery codes were made",
        "A recovery code was used",
        "Two-step sign-in was turned off",
    ]
    for message in messages:
        text = text_of(message)
        assert message["To"] == user.email
        assert secret not in text
        assert not any(code in text for code in codes)


async def test_second_factors_used_and_failed_are_security_events(
    client: Client, user: User
) -> None:
    headers = bearer((await login(client, user.email))["access_token"])
    secret, _ = await turn_on_totp(client, headers)
    token = (await (await post_login(client, user.email)).get_json())["mfa_token"]
    code = pyotp.TOTP(secret).at(time.time() + 30)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    await client.post(MFA, json={"mfa_token": token, "code": wrong})
    await client.post(MFA, json={"mfa_token": token, "code": code})

    events = (await (await client.get(EVENTS, headers=headers)).get_json())["events"]

    assert [(event["type"], event.get("detail")) for event in events][:4] == [
        ("login", None),
        ("second_factor_used", "totp"),
        ("second_factor_failed", None),
        ("factor_added", "totp"),
    ]
