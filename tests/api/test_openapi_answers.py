"""Every operation, driven to its success answer against the real database, gives
what the OpenAPI document says: each field it calls required is there, with the
documented type (tests/conformance.py holds every answer of the suite to the
document too; this test makes sure each operation's success is among them).
"""

from __future__ import annotations

import time
from typing import Any

import pyotp
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.models import User
from service.security.email_tokens import (
    change_state,
    create_email_token,
    verify_state,
)
from service.security.tokens import create_reset_token
from tests.authenticator import Authenticator
from tests.conformance import AnswerLog, openapi_document
from tests.factories import PASSWORD, login_tokens, make_user
from tests.support import bearer

NEW_PASSWORD = "a longer passphrase"


def successes(document: dict[str, Any]) -> set[str]:
    """`METHOD path status` of each operation's success answer."""
    return {
        f"{method.upper()} {path} {status}"
        for path, item in document["paths"].items()
        for method, operation in item.items()
        for status in operation["responses"]
        if status.startswith("2")
    }


async def test_every_operation_answers_its_documented_success(
    app: Quart, client: Client, session: AsyncSession, settings: Settings
) -> None:
    answers = AnswerLog()
    answers.install(app)
    admin = await make_user(session, is_admin=True)
    as_admin = bearer((await login_tokens(session, settings, admin)).access_token)

    async def call(method: str, url: str, status: int, **kwargs: Any) -> Any:
        response = await client.open(url, method=method, **kwargs)
        assert response.status_code == status, await response.get_data(as_text=True)
        return await response.get_json() if status != 204 else None

    async def log_in(status: int, **kwargs: Any) -> Any:
        """The new account's password login, answering `status`."""
        credentials = {"email": "answers@example.com", "password": PASSWORD}
        return await call(
            "POST", "/api/v1/auth/login", status, json=credentials, **kwargs
        )

    # A new account, its login, and its tokens.
    user = await call(
        "POST",
        "/api/v1/users",
        201,
        json={
            "email": "answers@example.com",
            "password": PASSWORD,
            "first_name": "Ada",
            "last_name": "Lovelace",
        },
    )
    tokens = await log_in(200, headers={"User-Agent": "answers-test"})
    await call(
        "POST", "/api/v1/auth/refresh", 200, headers=bearer(tokens["refresh_token"])
    )
    me = bearer(tokens["access_token"])
    uid = user["id"]

    # Users.
    await call("GET", "/api/v1/users/me", 200, headers=me)
    await call("GET", f"/api/v1/users/{uid}", 200, headers=me)
    await call(
        "PATCH", f"/api/v1/users/{uid}", 200, headers=me, json={"last_name": "L"}
    )
    await call("GET", "/api/v1/users?per_page=5", 200, headers=me)

    # Posts.
    post = await call(
        "POST", "/api/v1/posts", 201, headers=me, json={"title": "T", "content": "C"}
    )
    await call("GET", "/api/v1/posts", 200, headers=me)
    await call("GET", f"/api/v1/users/{uid}/posts", 200, headers=me)
    await call("GET", f"/api/v1/posts/{post['id']}", 200, headers=me)
    await call(
        "PATCH", f"/api/v1/posts/{post['id']}", 200, headers=me, json={"title": "U"}
    )
    await call("DELETE", f"/api/v1/posts/{post['id']}", 204, headers=me)

    # Sessions: one more, with no user agent or address (null in the answer).
    account = await session.get_one(User, uid)
    await login_tokens(session, settings, account, ip=None, user_agent=None)
    listed = await call("GET", "/api/v1/auth/sessions", 200, headers=me)
    [other] = [each for each in listed["sessions"] if not each["current"]]
    assert (other["user_agent"], other["ip"]) == (None, None)
    await call("DELETE", f"/api/v1/auth/sessions/{other['id']}", 204, headers=me)
    await login_tokens(session, settings, account)
    await call("DELETE", "/api/v1/auth/sessions", 204, headers=me)
    await call(
        "POST", "/api/v1/auth/fresh", 204, headers=me, json={"password": PASSWORD}
    )

    # Second factors: TOTP on, new recovery codes, a fresh session by code, off.
    await call("GET", "/api/v1/auth/account", 200, headers=me)
    secret = (await call("POST", "/api/v1/auth/totp", 200, headers=me))["secret"]
    totp = pyotp.TOTP(secret)
    code = {"code": totp.now()}
    await call("POST", "/api/v1/auth/totp/confirm", 200, headers=me, json=code)
    codes = await call("POST", "/api/v1/auth/recovery-codes", 200, headers=me)
    code = {"code": totp.at(time.time() + 30)}
    await call("POST", "/api/v1/auth/fresh", 204, headers=me, json=code)
    # The password alone is not a login any more: its second step with a code.
    second = await log_in(401)
    await call(
        "POST",
        "/api/v1/auth/login/mfa",
        200,
        json={
            "mfa_token": second["mfa_token"],
            "recovery_code": codes["recovery_codes"][0],
        },
    )
    await call("DELETE", "/api/v1/auth/totp", 204, headers=me)
    # Passkeys: one registered, listed, renamed, signed in with, deleted.
    authenticator = Authenticator()
    options = await call("POST", "/api/v1/auth/passkeys/options", 200, headers=me)
    passkey = await call(
        "POST",
        "/api/v1/auth/passkeys",
        201,
        headers=me,
        json={"credential": authenticator.create(options)},
    )
    await call("GET", "/api/v1/auth/passkeys", 200, headers=me)
    await call(
        "PATCH",
        f"/api/v1/auth/passkeys/{passkey['id']}",
        200,
        headers=me,
        json={"name": "Laptop"},
    )
    options = await call("POST", "/api/v1/auth/passkeys/login/options", 200, json={})
    await call(
        "POST",
        "/api/v1/auth/passkeys/login",
        200,
        json={"credential": authenticator.get(options)},
    )
    await call("DELETE", f"/api/v1/auth/passkeys/{passkey['id']}", 204, headers=me)

    # Passwords: changing one ends every session, so this caller's last.
    await call(
        "POST",
        "/api/v1/auth/password/forgot",
        202,
        json={"email": "answers@example.com"},
    )
    await call(
        "POST",
        "/api/v1/auth/password",
        204,
        headers=me,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    await session.refresh(account)
    reset = create_reset_token(
        user_id=uid,
        password_hash=account.password_hash,
        key=settings.secret_key,
        expires_in=600,
    )
    await call(
        "POST",
        "/api/v1/auth/password/reset",
        204,
        json={"token": reset, "new_password": PASSWORD},
    )
    again = await log_in(200)
    await call(
        "POST", "/api/v1/auth/logout", 200, headers=bearer(again["access_token"])
    )

    # Security events: one's own, and an admin's view of the user's events and
    # sessions, ending them.
    await session.refresh(account)
    fresh = bearer((await login_tokens(session, settings, account)).access_token)
    await call("GET", "/api/v1/auth/events", 200, headers=fresh)
    await call("GET", f"/api/v1/users/{uid}/events", 200, headers=as_admin)
    await call("GET", f"/api/v1/users/{uid}/sessions", 200, headers=as_admin)

    # The address: verified, then changed (tokens as the mails carry them).
    await call("POST", "/api/v1/auth/email/verify/request", 202, headers=fresh)
    verify = create_email_token(
        "email_verify",
        user_id=uid,
        state=verify_state(account.email, None),
        key=settings.secret_key,
        expires_in=600,
    )
    await call("POST", "/api/v1/auth/email/verify", 204, json={"token": verify})
    moved = {"new_email": "answers.moved@example.com"}
    await call("POST", "/api/v1/auth/email", 202, headers=fresh, json=moved)
    change = create_email_token(
        "email_change",
        user_id=uid,
        state=change_state(account.email, moved["new_email"]),
        key=settings.secret_key,
        expires_in=600,
        new_email=moved["new_email"],
    )
    await call("POST", "/api/v1/auth/email/confirm", 200, json={"token": change})
    await call("DELETE", f"/api/v1/users/{uid}/sessions", 204, headers=as_admin)

    # An admin's: delete and restore.
    await call("DELETE", f"/api/v1/users/{uid}", 204, headers=as_admin)
    await call("POST", f"/api/v1/users/{uid}/restore", 200, headers=as_admin)

    # Operations.
    await call("GET", "/healthz", 200)
    await call("GET", "/readyz", 200)

    answered = {str(answer) for answer in answers.answers}
    assert sorted(successes(openapi_document()) - answered) == []
    assert answers.problems() == []
