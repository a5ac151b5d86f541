"""MFA_REQUIRED: off (the default, nothing changes), admins (admin rights, the
admin override included, need a session that used a second factor), all (a
session without one reaches only the account, enrolment, freshness, sessions
and logout)."""

from __future__ import annotations

import time
from typing import Any

import pyotp
import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import ConfigError, Settings
from service.models import User
from tests.api.test_totp import turn_on_totp
from tests.factories import flask_headers_for, login_headers, make_post, make_user
from tests.support import (
    API,
    LOGOUT,
    ME,
    MFA,
    POSTS,
    REFRESH,
    SESSIONS,
    USERS,
    AppMaker,
    bearer,
    login,
    post_login,
)

ADMIN_NEEDS_FACTOR = {"error": "Admin access requires a second factor"}
SECOND_FACTOR_REQUIRED = {"error": "Second factor required"}


async def factor_login(client: Client, email: str, secret: str) -> dict[str, str]:
    """A login with its second factor: the session used TOTP."""
    token = (await (await post_login(client, email)).get_json())["mfa_token"]
    response = await client.post(
        MFA,
        json={"mfa_token": token, "code": pyotp.TOTP(secret).at(time.time() + 30)},
    )
    assert response.status_code == 200, await response.get_data(as_text=True)
    return bearer((await response.get_json())["access_token"])


async def admin_rights(
    client: Client, headers: dict[str, str], other: User, post_id: int
) -> list[tuple[int, Any]]:
    """An admin-only route and the overrides on another's user and post."""
    answers = [
        await client.patch(
            f"{USERS}/{other.id}", headers=headers, json={"last_name": "X"}
        ),
        await client.patch(f"{POSTS}/{post_id}", headers=headers, json={"title": "X"}),
        await client.delete(f"{POSTS}/{post_id}", headers=headers),
        await client.delete(f"{USERS}/{other.id}", headers=headers),
    ]
    return [(answer.status_code, await answer.get_json()) for answer in answers]


async def test_off_is_the_default_and_changes_nothing(
    client: Client, session: AsyncSession, settings: Settings, admin_user: User
) -> None:
    other = await make_user(session)
    post = await make_post(session, other)
    headers = await login_headers(session, settings, admin_user)

    answers = await admin_rights(client, headers, other, post.id)

    assert settings.mfa_required == "off"
    assert [status for status, _ in answers] == [200, 200, 204, 204]


@pytest.mark.parametrize(
    ("policy", "refusal"),
    [("admins", ADMIN_NEEDS_FACTOR), ("all", SECOND_FACTOR_REQUIRED)],
)
async def test_admin_rights_of_a_password_session_are_refused(
    make_app: AppMaker,
    session: AsyncSession,
    settings: Settings,
    admin_user: User,
    policy: str,
    refusal: dict[str, str],
) -> None:
    other = await make_user(session)
    post = await make_post(session, other)
    headers = await login_headers(session, settings, admin_user)
    async with make_app(mfa_required=policy) as app:
        answers = await admin_rights(app.test_client(), headers, other, post.id)

    assert answers == [(403, refusal)] * 4


@pytest.mark.parametrize("policy", ["admins", "all"])
async def test_admin_rights_of_a_second_factor_session_work(
    make_app: AppMaker,
    session: AsyncSession,
    settings: Settings,
    admin_user: User,
    policy: str,
) -> None:
    other = await make_user(session)
    post = await make_post(session, other)
    async with make_app(mfa_required=policy) as app:
        client = app.test_client()
        enrolling = await login_headers(session, settings, admin_user)
        secret, _ = await turn_on_totp(client, enrolling)
        headers = await factor_login(client, admin_user.email, secret)
        answers = await admin_rights(client, headers, other, post.id)

    assert [status for status, _ in answers] == [200, 200, 204, 204]


async def test_admins_leaves_everyone_else_and_admins_own_things_alone(
    make_app: AppMaker, session: AsyncSession, settings: Settings, admin_user: User
) -> None:
    user = await make_user(session)
    own_post = await make_post(session, admin_user)
    async with make_app(mfa_required="admins") as app:
        client = app.test_client()
        admin = await login_headers(session, settings, admin_user)
        plain = await login_headers(session, settings, user)
        answers = [
            await client.get(USERS, headers=plain),
            await client.patch(
                f"{USERS}/{user.id}", headers=plain, json={"last_name": "Y"}
            ),
            await client.get(USERS, headers=admin),
            await client.patch(
                f"{USERS}/{admin_user.id}", headers=admin, json={"last_name": "Y"}
            ),
            await client.patch(
                f"{POSTS}/{own_post.id}", headers=admin, json={"title": "Mine"}
            ),
        ]

    assert [answer.status_code for answer in answers] == [200] * 5


async def test_admins_refuses_a_flask_era_admin_token(
    make_app: AppMaker, session: AsyncSession, settings: Settings, admin_user: User
) -> None:
    other = await make_user(session)
    async with make_app(mfa_required="admins") as app:
        response = await app.test_client().delete(
            f"{USERS}/{other.id}", headers=flask_headers_for(settings, admin_user)
        )

    assert response.status_code == 403
    assert await response.get_json() == ADMIN_NEEDS_FACTOR


async def test_all_lets_a_password_session_reach_only_what_enrols_it(
    make_app: AppMaker, session: AsyncSession, settings: Settings, user: User
) -> None:
    async with make_app(mfa_required="all") as app:
        client = app.test_client()
        tokens = await login(client, user.email)
        headers = bearer(tokens["access_token"])
        reached = [
            await client.get(ME, headers=headers),
            await client.get(f"{API}/auth/account", headers=headers),
            await client.get(SESSIONS, headers=headers),
            await client.post(f"{API}/auth/totp", headers=headers),
            await client.post(REFRESH, headers=bearer(tokens["refresh_token"])),
        ]
        refused = [
            await client.get(USERS, headers=headers),
            await client.get(POSTS, headers=headers),
            await client.post(
                POSTS, headers=headers, json={"title": "T", "content": "C"}
            ),
            await client.get(f"{USERS}/{user.id}", headers=headers),
        ]
        logout = await client.post(LOGOUT, headers=headers)

    assert [answer.status_code for answer in reached] == [200] * 5
    assert [answer.status_code for answer in refused] == [403] * 4
    assert await refused[0].get_json() == SECOND_FACTOR_REQUIRED
    assert logout.status_code == 200


async def test_all_lets_a_second_factor_session_reach_everything(
    make_app: AppMaker, session: AsyncSession, settings: Settings, user: User
) -> None:
    async with make_app(mfa_required="all") as app:
        client = app.test_client()
        secret, _ = await turn_on_totp(
            client, await login_headers(session, settings, user)
        )
        headers = await factor_login(client, user.email, secret)
        answers = [
            await client.get(USERS, headers=headers),
            await client.get(POSTS, headers=headers),
        ]

    assert [answer.status_code for answer in answers] == [200, 200]


async def test_a_totp_code_at_post_fresh_counts_as_the_sessions_second_factor(
    make_app: AppMaker, session: AsyncSession, settings: Settings, user: User
) -> None:
    async with make_app(mfa_required="all") as app:
        client = app.test_client()
        headers = bearer((await login(client, user.email))["access_token"])
        secret, _ = await turn_on_totp(client, headers)
        before = await client.get(USERS, headers=headers)
        fresh = await client.post(
            f"{API}/auth/fresh",
            headers=headers,
            json={"code": pyotp.TOTP(secret).at(time.time() + 30)},
        )
        after = await client.get(USERS, headers=headers)

    assert (before.status_code, fresh.status_code, after.status_code) == (403, 204, 200)


def test_mfa_required_takes_off_admins_or_all() -> None:
    assert Settings.from_env({"MFA_REQUIRED": "ADMINS"}).mfa_required == "admins"
    with pytest.raises(
        ConfigError, match=r"^MFA_REQUIRED must be off, admins or all, not 'some'$"
    ):
        Settings.from_env({"MFA_REQUIRED": "some"})
