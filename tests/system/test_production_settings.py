"""Production as it is served: hypercorn refuses to start on unsafe settings, and a
safe start logs no working reset link and can refuse Flask-era tokens."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.config import Settings
from service.models import User
from tests.factories import PASSWORD, flask_token_for
from tests.support import FORGOT, LOGIN, ME, REFRESH, RESET, RESET_MAIL, REVOKED, bearer
from tests.system.conftest import ServeInstance, serve
from tests.system.harness import ServedApp

JWT_KEY = "hostile-production-jwt-key-0123456789-abcdef"
PRODUCTION = {
    "APP_ENV": "production",
    "SECRET_KEY": "hostile-production-secret-0123456789-abcdef",
    "JWT_SECRET_KEY": JWT_KEY,
    **RESET_MAIL,
}
LOGGED_LINK = re.compile(r"https://app\.example\.com/reset\?token=(\S+)")


def credentials(email: str) -> dict[str, str]:
    return {"email": email, "password": PASSWORD}


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"REVOCATION_CHECK": "false"}, "REVOCATION_CHECK=false is refused"),
        ({"MAIL_BACKEND": ""}, "SMTP_URL is required in production"),
        ({"PASSWORD_RESET_URL": ""}, "PASSWORD_RESET_URL is the development default"),
    ],
)
def test_production_does_not_start_on_an_unsafe_setting(
    served_database_url: str,
    tmp_path: Path,
    changes: dict[str, str],
    named: str,
) -> None:
    try:
        started = serve(served_database_url, tmp_path, **(PRODUCTION | changes))
    except RuntimeError as refused:
        output = str(refused)
    else:
        started.stop()
        pytest.fail(f"production started with {changes}")

    assert "did not start" in output
    assert named in output


@pytest.fixture(scope="module")
def production(serve_instance: ServeInstance) -> Iterator[ServedApp]:
    with serve_instance(
        "production", **PRODUCTION, ACCEPT_LEGACY_TOKENS="false", LOG_LEVEL="INFO"
    ) as instance:
        yield instance


async def test_production_logs_the_reset_mail_without_a_working_token(
    production: ServedApp, user: User
) -> None:

    async with production.client() as client:
        asked = await client.post(FORGOT, json={"email": user.email})
        logged = ""
        for _ in range(100):
            mails = [
                line["message"]
                for line in production.log_lines()
                if line.get("logger") == "service.mail"
                and user.email in line["message"]
            ]
            if mails:
                found = LOGGED_LINK.search(mails[0])
                assert found is not None, mails[0]
                logged = found.group(1)
                break
            await client.get("/healthz")
        shown = logged.removesuffix("…(masked)")
        reset = await client.post(
            RESET, json={"token": shown, "new_password": "taken-from-the-log-1"}
        )
        still = await client.post(
            LOGIN, json={"email": user.email, "password": PASSWORD}
        )

    assert asked.status_code == 202
    assert logged.endswith("…(masked)"), logged
    assert len(shown) == 8
    assert reset.status_code == 400
    assert still.status_code == 200


async def test_flask_era_tokens_are_refused_once_legacy_tokens_are_off(
    production: ServedApp, user: User
) -> None:
    # As the Flask service minted them: signed with the served instance's key.
    signer = Settings(jwt_secret_key=JWT_KEY)
    flask_access = flask_token_for(signer, user)
    flask_refresh = flask_token_for(signer, user, token_type="refresh")

    async with production.client() as client:
        me = await client.get(ME, headers=bearer(flask_access))
        refresh = await client.post(REFRESH, headers=bearer(flask_refresh))
        login = await client.post(LOGIN, json=credentials(user.email))
        session_me = await client.get(ME, headers=bearer(login.json()["access_token"]))

    assert (me.status_code, me.json()) == (401, REVOKED)
    assert (refresh.status_code, refresh.json()) == (401, REVOKED)
    assert (session_me.status_code, session_me.json()["email"]) == (200, user.email)
