"""Server-side sessions: revocation, the sessions API, password change, rotation.

Every login is an `auth_sessions` row and its tokens carry the row's id as `sid`;
session-less (Flask-era) tokens are checked against `revoked_tokens` and the
user's `tokens_valid_after`. Whatever revoked a token, every protected route
answers the same 401.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import jwt
import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.models import AuthSession, RevokedToken, User, utcnow
from tests import support
from tests.factories import (
    PASSWORD,
    flask_headers_for,
    flask_token_for,
    login_headers,
    make_user,
    mint,
)
from tests.support import (
    INVALID_CREDENTIALS,
    LOGOUT,
    ME,
    PASSWORD_CHANGE,
    REFRESH,
    REVOKED,
    SESSIONS,
    USERS,
    AppMaker,
    bearer,
    change_password,
    get_me,
    post_login,
    post_refresh,
    refreshed,
    send,
)

SESSION_NOT_FOUND = {"error": "Session not found"}
NEW_PASSWORD = "a-new-password-456"
USER_AGENT = "pytest-sessions/1.0"
CLIENT_IP = "203.0.113.7"


# Every login here names its client: the session row records it.
login = partial(support.login, user_agent=USER_AGENT, ip=CLIENT_IP)


def claims(settings: Settings, token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(
        token, settings.jwt_secret_key, algorithms=["HS256"]
    )
    return decoded


async def session_row(session: AsyncSession, sid: str) -> AuthSession:
    row = await session.scalar(
        select(AuthSession)
        .where(AuthSession.id == sid)
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return row


async def sessions_of(session: AsyncSession, user: User) -> list[AuthSession]:
    rows = await session.scalars(
        select(AuthSession)
        .where(AuthSession.user_id == user.id)
        .execution_options(populate_existing=True)
    )
    return list(rows)


@pytest.fixture
async def rotation_client(make_app: AppMaker) -> AsyncIterator[Client]:
    async with make_app(refresh_rotation=True) as app:
        yield app.test_client()


@pytest.fixture
async def no_grace_client(make_app: AppMaker) -> AsyncIterator[Client]:
    async with make_app(refresh_rotation=True, refresh_grace_seconds=0) as app:
        yield app.test_client()


# --- login starts a session ---------------------------------------------------


async def test_login_creates_session_row_with_client_details(
    client: Client, session: AsyncSession, user: User
) -> None:
    before = utcnow()

    await login(client, user.email)

    rows = await sessions_of(session, user)
    assert len(rows) == 1
    row = rows[0]
    assert (row.user_agent, row.ip, row.revoked_at) == (USER_AGENT, CLIENT_IP, None)
    assert before - timedelta(seconds=1) <= row.created_at <= utcnow()
    assert row.last_used_at >= row.created_at


async def test_login_tokens_carry_the_session_id(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    tokens = await login(client, user.email)

    (row,) = await sessions_of(session, user)
    assert claims(settings, tokens["access_token"])["sid"] == row.id
    assert claims(settings, tokens["refresh_token"])["sid"] == row.id


async def test_login_twice_creates_two_sessions(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    first = await login(client, user.email)
    second = await login(client, user.email)

    rows = await sessions_of(session, user)
    assert {row.id for row in rows} == {
        claims(settings, first["access_token"])["sid"],
        claims(settings, second["access_token"])["sid"],
    }
    assert len(rows) == 2


async def test_login_very_long_user_agent_is_cut_to_fit(
    client: Client, session: AsyncSession, user: User
) -> None:
    await login(client, user.email, user_agent="A" * 1000)

    (row,) = await sessions_of(session, user)
    assert row.user_agent == "A" * 255


# --- logout -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        pytest.param("GET", ME, "access_token", id="the-access-token"),
        pytest.param("POST", REFRESH, "refresh_token", id="the-refresh-token"),
        pytest.param("POST", LOGOUT, "access_token", id="a-second-logout"),
    ],
)
async def test_logout_revokes_the_tokens_of_its_login(
    client: Client, user: User, method: str, path: str, kind: str
) -> None:
    tokens = await login(client, user.email)

    logout = await client.post(LOGOUT, headers=bearer(tokens["access_token"]))
    response = await send(client, method, path, headers=bearer(tokens[kind]))

    assert logout.status_code == 200
    assert await logout.get_json() == {"message": "Successfully logged out"}
    assert response.status_code == 401
    assert await response.get_json() == REVOKED


async def test_logout_marks_the_session_row_revoked(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    tokens = await login(client, user.email)

    await client.post(LOGOUT, headers=bearer(tokens["access_token"]))

    row = await session_row(session, claims(settings, tokens["access_token"])["sid"])
    assert row.revoked_at is not None


async def test_logout_keeps_other_sessions_of_the_user_working(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    first = await login(client, user.email)
    second = await minted_session(session, settings, user)

    await client.post(LOGOUT, headers=bearer(first["access_token"]))
    me = await get_me(client, second.access)
    refreshed = await post_refresh(client, second.refresh)

    assert me.status_code == 200
    assert refreshed.status_code == 200


async def test_logout_with_refreshed_access_token_revokes_the_login(
    client: Client, user: User
) -> None:
    tokens = await login(client, user.email)
    access = (await refreshed(client, tokens["refresh_token"]))["access_token"]

    await client.post(LOGOUT, headers=bearer(access))
    response = await post_refresh(client, tokens["refresh_token"])

    assert response.status_code == 401
    assert await response.get_json() == REVOKED


async def test_logout_sessionless_token_blocks_its_jti(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    token = flask_token_for(settings, user)

    logout = await client.post(LOGOUT, headers=bearer(token))
    response = await get_me(client, token)

    assert logout.status_code == 200
    assert response.status_code == 401
    assert await response.get_json() == REVOKED
    jti = claims(settings, token)["jti"]
    blocked = await session.get(RevokedToken, jti)
    assert blocked is not None


async def test_logout_sessionless_token_ends_the_refresh_token_of_its_login(
    client: Client, settings: Settings, user: User
) -> None:
    # A Flask-era login: an access and a refresh token, minted together.
    issued = int(time.time()) - 5
    access = flask_token_for(settings, user, now=issued)
    refresh = flask_token_for(settings, user, token_type="refresh", now=issued)

    logout = await client.post(LOGOUT, headers=bearer(access))
    response = await post_refresh(client, refresh)

    assert logout.status_code == 200
    assert response.status_code == 401
    assert await response.get_json() == REVOKED


async def test_logout_sessionless_token_spares_flask_era_tokens_issued_after_it(
    client: Client, settings: Settings, user: User
) -> None:
    logged_out = flask_token_for(settings, user, now=int(time.time()) - 5)
    await client.post(LOGOUT, headers=bearer(logged_out))
    await asyncio.sleep(1.1)  # iat counts whole seconds
    later = flask_token_for(settings, user)

    response = await get_me(client, later)

    assert response.status_code == 200


async def test_logout_sessionless_token_leaves_sessions_alone(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    headers = await login_headers(session, settings, user)
    legacy = flask_token_for(settings, user, now=int(time.time()) - 5)

    await client.post(LOGOUT, headers=bearer(legacy))
    response = await client.get(ME, headers=headers)

    assert response.status_code == 200


async def test_ending_other_sessions_from_a_session_ends_flask_era_tokens(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    headers = await login_headers(session, settings, user)
    issued = int(time.time()) - 5
    legacy_access = flask_token_for(settings, user, now=issued)
    legacy_refresh = flask_token_for(settings, user, token_type="refresh", now=issued)

    ended = await client.delete(SESSIONS, headers=headers)
    me = await client.get(ME, headers=headers)
    access = await get_me(client, legacy_access)
    refresh = await post_refresh(client, legacy_refresh)

    assert ended.status_code == 204
    assert me.status_code == 200
    assert (access.status_code, refresh.status_code) == (401, 401)


# --- every protected route refuses a revoked token ----------------------------


@dataclass(frozen=True)
class Credentials:
    user_id: int
    session_id: str | None
    access: str
    refresh: str


async def minted_session(
    session: AsyncSession, settings: Settings, user: User
) -> Credentials:
    """A session row and its tokens, as login makes them, without a hash check."""
    sid = str(uuid.uuid4())
    refresh_jti = str(uuid.uuid4())
    session.add(
        AuthSession(
            id=sid,
            user_id=user.id,
            refresh_jti=refresh_jti,
            fresh_until=utcnow() + timedelta(minutes=10),
            auth_method="password",
        )
    )
    await session.commit()
    access = mint(settings, user, claims={"is_admin": user.is_admin, "sid": sid})
    refresh = mint(
        settings, user, "refresh", claims={"sid": sid}, expires_in=3600, jti=refresh_jti
    )
    return Credentials(user.id, sid, access, refresh)


def sessionless(
    settings: Settings, user: User, *, issued_at: int | None = None
) -> Credentials:
    access, refresh = (
        flask_token_for(settings, user, token_type=kind, now=issued_at)
        for kind in ("access", "refresh")
    )
    return Credentials(user.id, None, access, refresh)


async def revoked_credentials(
    session: AsyncSession, settings: Settings, state: str
) -> Credentials:
    # An admin, so that every route would succeed with a live token.
    user = await make_user(session, is_admin=True)
    if state == "session-revoked":
        credentials = await minted_session(session, settings, user)
        await session.execute(
            update(AuthSession)
            .where(AuthSession.id == credentials.session_id)
            .values(revoked_at=utcnow())
        )
    elif state in ("session-user-deactivated", "session-user-deleted"):
        # The user's row alone decides: its sessions are left live on purpose.
        credentials = await minted_session(session, settings, user)
    elif state == "flask-token-before-cutoff":
        credentials = sessionless(settings, user, issued_at=int(time.time()) - 60)
        user.tokens_valid_after = utcnow() - timedelta(seconds=30)
    else:
        credentials = sessionless(settings, user)
    if state.endswith("deactivated"):
        user.is_active = False
    if state.endswith("deleted"):
        user.deleted_at = utcnow()
    if state == "flask-token-jti-revoked":
        for token in (credentials.access, credentials.refresh):
            session.add(
                RevokedToken(
                    jti=claims(settings, token)["jti"],
                    expires_at=utcnow() + timedelta(hours=1),
                )
            )
    await session.commit()
    return credentials


ROUTES = [
    pytest.param("GET", USERS, None, id="list-users"),
    pytest.param("GET", ME, None, id="me"),
    pytest.param("GET", USERS + "/{user_id}", None, id="get-user"),
    pytest.param("PATCH", USERS + "/{user_id}", {"first_name": "New"}, id="patch"),
    pytest.param("DELETE", USERS + "/{user_id}", None, id="delete-user"),
    pytest.param("POST", LOGOUT, None, id="logout"),
    pytest.param(
        "POST",
        PASSWORD_CHANGE,
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        id="password",
    ),
    pytest.param("GET", SESSIONS, None, id="list-sessions"),
    pytest.param("DELETE", SESSIONS, None, id="revoke-other-sessions"),
    pytest.param("DELETE", SESSIONS + "/{session_id}", None, id="revoke-session"),
    pytest.param("POST", REFRESH, None, id="refresh"),
]
STATES = [
    "session-revoked",
    "session-user-deactivated",
    "session-user-deleted",
    "flask-token-user-deactivated",
    "flask-token-user-deleted",
    "flask-token-jti-revoked",
    "flask-token-before-cutoff",
]


async def call(
    client: Client,
    method: str,
    path: str,
    body: dict[str, str] | None,
    credentials: Credentials,
) -> Any:
    token = credentials.refresh if path == REFRESH else credentials.access
    url = path.format(
        user_id=credentials.user_id,
        session_id=credentials.session_id or str(uuid.uuid4()),
    )
    kwargs: dict[str, Any] = {"headers": bearer(token)}
    if body is not None:
        kwargs["json"] = body
    return await send(client, method, url, **kwargs)


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_protected_route_with_revoked_token_401_revoked(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    state: str,
    method: str,
    path: str,
    body: dict[str, str] | None,
) -> None:
    credentials = await revoked_credentials(session, settings, state)

    response = await call(client, method, path, body, credentials)

    assert response.status_code == 401
    assert await response.get_json() == REVOKED


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_protected_route_with_live_session_succeeds(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    method: str,
    path: str,
    body: dict[str, str] | None,
) -> None:
    # The control for the matrix above: the same call, nothing revoked.
    user = await make_user(session, is_admin=True)
    credentials = await minted_session(session, settings, user)

    response = await call(client, method, path, body, credentials)

    assert 200 <= response.status_code < 300


# --- password change ----------------------------------------------------------


async def test_change_password_answers_204_empty(
    client: Client, user_headers: dict[str, str]
) -> None:
    response = await change_password(client, user_headers, NEW_PASSWORD)

    assert response.status_code == 204
    assert await response.get_data() == b""


async def test_change_password_revokes_every_session_and_flask_token(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    first = await login(client, user.email)
    minted = await minted_session(session, settings, user)
    second = {"access_token": minted.access, "refresh_token": minted.refresh}
    flask_token = flask_token_for(settings, user)

    changed = await change_password(client, bearer(first["access_token"]), NEW_PASSWORD)

    assert changed.status_code == 204
    for token in (first["access_token"], second["access_token"], flask_token):
        response = await get_me(client, token)
        assert (response.status_code, await response.get_json()) == (401, REVOKED)
    for token in (first["refresh_token"], second["refresh_token"]):
        response = await post_refresh(client, token)
        assert (response.status_code, await response.get_json()) == (401, REVOKED)


async def test_change_password_leaves_other_users_sessions(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    other = await minted_session(session, settings, await make_user(session))
    own = await login(client, user.email)

    await change_password(client, bearer(own["access_token"]), NEW_PASSWORD)
    response = await get_me(client, other.access)

    assert response.status_code == 200


async def test_change_password_then_only_the_new_password_logs_in(
    client: Client, user: User, user_headers: dict[str, str]
) -> None:
    await change_password(client, user_headers, NEW_PASSWORD)

    old = await post_login(client, user.email)
    new = await post_login(client, user.email, NEW_PASSWORD)

    assert old.status_code == 401
    assert await old.get_json() == INVALID_CREDENTIALS
    assert new.status_code == 200


async def test_change_password_wrong_current_400_and_revokes_nothing(
    client: Client, user_headers: dict[str, str]
) -> None:
    response = await change_password(
        client, user_headers, NEW_PASSWORD, "not-the-password"
    )
    me = await client.get(ME, headers=user_headers)

    assert response.status_code == 400
    assert await response.get_json() == {
        "error": "Validation failed",
        "errors": {"current_password": ["Current password is incorrect."]},
    }
    assert me.status_code == 200


@pytest.mark.parametrize(
    "new_password",
    [
        pytest.param(PASSWORD, id="same-as-current"),
        pytest.param("x" * 7, id="7-chars"),
        pytest.param("x" * 129, id="129-chars"),
    ],
)
async def test_change_password_refused_new_password_400(
    client: Client, user_headers: dict[str, str], new_password: str
) -> None:
    response = await change_password(client, user_headers, new_password)

    assert response.status_code == 400
    body = await response.get_json()
    assert body["error"] == "Validation failed"
    assert list(body["errors"]) == ["new_password"]


@pytest.mark.parametrize(
    "new_password",
    [pytest.param("x" * 8, id="8-chars"), pytest.param("x" * 128, id="128-chars")],
)
async def test_change_password_new_password_at_bounds_204(
    client: Client, user_headers: dict[str, str], new_password: str
) -> None:
    response = await change_password(client, user_headers, new_password)

    assert response.status_code == 204


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"new_password": NEW_PASSWORD}, id="no-current"),
        pytest.param({"current_password": PASSWORD}, id="no-new"),
    ],
)
async def test_change_password_missing_field_400(
    client: Client, user_headers: dict[str, str], body: dict[str, str]
) -> None:
    response = await client.post(PASSWORD_CHANGE, json=body, headers=user_headers)

    assert response.status_code == 400
    missing = ({"current_password", "new_password"} - set(body)).pop()
    assert await response.get_json() == {
        "error": "Validation failed",
        "errors": {missing: ["Missing data for required field."]},
    }


async def test_change_password_without_token_401(client: Client) -> None:
    response = await change_password(client, None, NEW_PASSWORD)

    assert response.status_code == 401


# --- deactivation, deletion, admin rights -------------------------------------


async def test_deactivate_self_revokes_own_token(client: Client, user: User) -> None:
    tokens = await login(client, user.email)

    patch = await client.patch(
        f"{USERS}/{user.id}",
        json={"is_active": False},
        headers=bearer(tokens["access_token"]),
    )
    me = await get_me(client, tokens["access_token"])

    assert patch.status_code == 200
    assert (await patch.get_json())["is_active"] is False
    assert me.status_code == 401
    assert await me.get_json() == REVOKED


async def test_deactivated_user_cannot_reactivate_itself(
    client: Client, session: AsyncSession, user: User
) -> None:
    tokens = await login(client, user.email)
    await client.patch(
        f"{USERS}/{user.id}",
        json={"is_active": False},
        headers=bearer(tokens["access_token"]),
    )

    response = await client.patch(
        f"{USERS}/{user.id}",
        json={"is_active": True},
        headers=bearer(tokens["access_token"]),
    )

    assert response.status_code == 401
    assert await response.get_json() == REVOKED
    await session.refresh(user)
    assert user.is_active is False


async def test_admin_deactivation_revokes_every_session_of_the_user(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    user: User,
    admin_headers: dict[str, str],
) -> None:
    tokens = await login(client, user.email)
    flask_token = flask_token_for(settings, user)

    patch = await client.patch(
        f"{USERS}/{user.id}", json={"is_active": False}, headers=admin_headers
    )

    assert patch.status_code == 200
    for token in (tokens["access_token"], flask_token):
        response = await get_me(client, token)
        assert (response.status_code, await response.get_json()) == (401, REVOKED)
    assert all(row.revoked_at is not None for row in await sessions_of(session, user))


async def test_admin_reactivation_does_not_revive_old_tokens(
    client: Client, settings: Settings, user: User, admin_headers: dict[str, str]
) -> None:
    tokens = await login(client, user.email)
    flask_token = flask_token_for(settings, user)
    path = f"{USERS}/{user.id}"
    await client.patch(path, json={"is_active": False}, headers=admin_headers)

    await client.patch(path, json={"is_active": True}, headers=admin_headers)

    for token in (tokens["access_token"], flask_token):
        response = await get_me(client, token)
        assert (response.status_code, await response.get_json()) == (401, REVOKED)
    refreshed = await post_refresh(client, tokens["refresh_token"])
    assert (refreshed.status_code, await refreshed.get_json()) == (401, REVOKED)


async def test_reactivated_user_logs_in_again(
    client: Client, user: User, admin_headers: dict[str, str]
) -> None:
    path = f"{USERS}/{user.id}"
    await client.patch(path, json={"is_active": False}, headers=admin_headers)
    await client.patch(path, json={"is_active": True}, headers=admin_headers)

    tokens = await login(client, user.email)
    response = await get_me(client, tokens["access_token"])

    assert response.status_code == 200


async def test_admin_delete_revokes_every_session_of_the_user(
    client: Client, session: AsyncSession, user: User, admin_headers: dict[str, str]
) -> None:
    tokens = await login(client, user.email)

    deleted = await client.delete(f"{USERS}/{user.id}", headers=admin_headers)
    me = await get_me(client, tokens["access_token"])
    refreshed = await post_refresh(client, tokens["refresh_token"])

    assert deleted.status_code == 204
    assert (me.status_code, await me.get_json()) == (401, REVOKED)
    assert (refreshed.status_code, await refreshed.get_json()) == (401, REVOKED)
    assert all(row.revoked_at is not None for row in await sessions_of(session, user))


async def test_delete_with_forged_admin_claim_403(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    target = await make_user(session)
    # Signed with the real key, but the row says the caller is no admin.
    token = mint(settings, user, claims={"is_admin": True})

    response = await client.delete(f"{USERS}/{target.id}", headers=bearer(token))

    assert response.status_code == 403
    assert await response.get_json() == {"error": "Admin access required"}
    await session.refresh(target)
    assert target.deleted_at is None


async def test_delete_by_admin_session_demoted_in_database_403(
    client: Client, session: AsyncSession, admin_user: User
) -> None:
    target = await make_user(session)
    tokens = await login(client, admin_user.email)
    admin_user.is_admin = False
    await session.commit()

    response = await client.delete(
        f"{USERS}/{target.id}", headers=bearer(tokens["access_token"])
    )

    assert response.status_code == 403
    assert await response.get_json() == {"error": "Admin access required"}


@pytest.mark.parametrize(
    ("method", "body", "refusal"),
    [
        pytest.param("DELETE", None, {"error": "Admin access required"}, id="delete"),
        pytest.param(
            "PATCH", {"first_name": "X"}, {"error": "Not authorized"}, id="patch"
        ),
    ],
)
async def test_admin_demoted_in_database_403(
    client: Client,
    session: AsyncSession,
    admin_user: User,
    admin_headers: dict[str, str],
    method: str,
    body: dict[str, str] | None,
    refusal: dict[str, str],
) -> None:
    target = await make_user(session)
    admin_user.is_admin = False
    await session.commit()

    # A DELETE goes without a body, as a client sends it.
    sent: dict[str, Any] = {} if body is None else {"json": body}
    response = await send(
        client, method, f"{USERS}/{target.id}", headers=admin_headers, **sent
    )

    assert response.status_code == 403
    assert await response.get_json() == refusal


async def test_delete_by_user_promoted_in_database_204(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    target = await make_user(session)
    headers = await login_headers(session, settings, user)  # claims is_admin=false
    user.is_admin = True
    await session.commit()

    response = await client.delete(f"{USERS}/{target.id}", headers=headers)

    assert response.status_code == 204


# --- the sessions API ---------------------------------------------------------


async def test_list_sessions_returns_callers_live_sessions(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    first = await login(client, user.email, user_agent="phone/1.0", ip="198.51.100.1")
    second = await login(client, user.email, user_agent="laptop/2.0", ip="2001:db8::1")
    first_sid = claims(settings, first["access_token"])["sid"]
    second_sid = claims(settings, second["access_token"])["sid"]

    response = await client.get(SESSIONS, headers=bearer(second["access_token"]))

    assert response.status_code == 200
    body = await response.get_json()
    assert list(body) == ["sessions"]
    listed = {item["id"]: item for item in body["sessions"]}
    assert set(listed) == {first_sid, second_sid}
    for sid, item in listed.items():
        row = await session_row(session, sid)
        assert item == {
            "id": sid,
            "created_at": row.created_at.isoformat(),
            "last_used_at": row.last_used_at.isoformat(),
            "user_agent": row.user_agent,
            "ip": row.ip,
            "current": sid == second_sid,
        }
    assert (listed[first_sid]["user_agent"], listed[first_sid]["ip"]) == (
        "phone/1.0",
        "198.51.100.1",
    )
    assert (listed[second_sid]["user_agent"], listed[second_sid]["ip"]) == (
        "laptop/2.0",
        "2001:db8::1",
    )


async def test_list_sessions_omits_revoked_sessions(
    client: Client, settings: Settings, user: User
) -> None:
    gone = await login(client, user.email)
    kept = await login(client, user.email)
    await client.post(LOGOUT, headers=bearer(gone["access_token"]))

    response = await client.get(SESSIONS, headers=bearer(kept["access_token"]))

    ids = [item["id"] for item in (await response.get_json())["sessions"]]
    assert ids == [claims(settings, kept["access_token"])["sid"]]


async def test_list_sessions_omits_other_users_sessions(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    await minted_session(session, settings, await make_user(session))
    own = await login(client, user.email)

    response = await client.get(SESSIONS, headers=bearer(own["access_token"]))

    ids = [item["id"] for item in (await response.get_json())["sessions"]]
    assert ids == [claims(settings, own["access_token"])["sid"]]


async def test_list_sessions_with_flask_token_marks_none_current(
    client: Client, settings: Settings, user: User
) -> None:
    await login(client, user.email)

    response = await client.get(SESSIONS, headers=flask_headers_for(settings, user))

    sessions = (await response.get_json())["sessions"]
    assert [item["current"] for item in sessions] == [False]


async def test_revoke_own_session_204_and_its_tokens_stop_working(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    target = await minted_session(session, settings, user)
    caller = await login(client, user.email)

    response = await client.delete(
        f"{SESSIONS}/{target.session_id}", headers=bearer(caller["access_token"])
    )

    assert response.status_code == 204
    assert await response.get_data() == b""
    me = await get_me(client, target.access)
    assert (me.status_code, await me.get_json()) == (401, REVOKED)
    refreshed = await post_refresh(client, target.refresh)
    assert (refreshed.status_code, await refreshed.get_json()) == (401, REVOKED)
    caller_me = await get_me(client, caller["access_token"])
    assert caller_me.status_code == 200


async def test_revoke_other_users_session_404_and_it_keeps_working(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    victim = await minted_session(session, settings, await make_user(session))
    caller = await login(client, user.email)

    response = await client.delete(
        f"{SESSIONS}/{victim.session_id}", headers=bearer(caller["access_token"])
    )

    assert response.status_code == 404
    assert await response.get_json() == SESSION_NOT_FOUND
    me = await get_me(client, victim.access)
    assert me.status_code == 200


async def test_revoke_other_sessions_204_current_keeps_working(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    others = [await minted_session(session, settings, user) for _ in range(2)]
    current = await login(client, user.email)

    response = await client.delete(SESSIONS, headers=bearer(current["access_token"]))

    assert response.status_code == 204
    assert await response.get_data() == b""
    for other in others:
        me = await get_me(client, other.access)
        assert (me.status_code, await me.get_json()) == (401, REVOKED)
        refreshed = await post_refresh(client, other.refresh)
        assert (refreshed.status_code, await refreshed.get_json()) == (401, REVOKED)
    me = await get_me(client, current["access_token"])
    refreshed = await post_refresh(client, current["refresh_token"])
    assert (me.status_code, refreshed.status_code) == (200, 200)


async def test_revoke_other_sessions_leaves_other_users_sessions(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    bystander = await minted_session(session, settings, await make_user(session))
    current = await login(client, user.email)

    await client.delete(SESSIONS, headers=bearer(current["access_token"]))
    response = await get_me(client, bystander.access)

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("idle", "touched"),
    [
        pytest.param(timedelta(minutes=5), True, id="idle-over-the-interval"),
        pytest.param(timedelta(seconds=5), False, id="used-recently"),
    ],
)
async def test_session_last_used_is_touched_only_past_the_interval(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    user: User,
    idle: timedelta,
    touched: bool,
) -> None:
    credentials = await minted_session(session, settings, user)
    last_used = utcnow() - idle
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == credentials.session_id)
        .values(last_used_at=last_used)
    )
    await session.commit()

    await get_me(client, credentials.access)

    assert credentials.session_id is not None
    row = await session_row(session, credentials.session_id)
    if touched:
        assert row.last_used_at > last_used + timedelta(minutes=4)
    else:
        assert row.last_used_at == last_used


# --- refresh, with and without rotation ---------------------------------------


async def test_refresh_without_rotation_returns_access_token_only(
    client: Client, user: User
) -> None:
    tokens = await login(client, user.email)

    response = await post_refresh(client, tokens["refresh_token"])

    assert response.status_code == 200
    body = await response.get_json()
    assert set(body) == {"access_token", "token_type"}
    assert body["token_type"] == "bearer"


@pytest.mark.parametrize(
    "rotation",
    [
        # Flask-era clients keep one refresh token for its whole life.
        pytest.param(False, id="without-rotation"),
        pytest.param(True, id="rotation-within-grace"),
    ],
)
async def test_refresh_twice_with_one_token_succeeds_twice(
    make_app: AppMaker, user: User, rotation: bool
) -> None:
    async with make_app(refresh_rotation=rotation) as app:
        client = app.test_client()
        tokens = await login(client, user.email)

        first = await post_refresh(client, tokens["refresh_token"])
        second = await post_refresh(client, tokens["refresh_token"])

    assert (first.status_code, second.status_code) == (200, 200)
    if rotation:
        # The duplicate gets the same successor.
        successors = [(await r.get_json())["refresh_token"] for r in (first, second)]
        assert successors[0] == successors[1]


async def test_refresh_access_token_carries_the_session_id(
    client: Client, settings: Settings, user: User
) -> None:
    tokens = await login(client, user.email)

    response = await post_refresh(client, tokens["refresh_token"])

    access = (await response.get_json())["access_token"]
    sid = claims(settings, tokens["access_token"])["sid"]
    assert claims(settings, access)["sid"] == sid


async def test_refresh_rotation_returns_a_new_refresh_token(
    rotation_client: Client, settings: Settings, user: User
) -> None:
    tokens = await login(rotation_client, user.email)

    response = await post_refresh(rotation_client, tokens["refresh_token"])

    assert response.status_code == 200
    body = await response.get_json()
    assert set(body) == {"access_token", "refresh_token", "token_type"}
    assert body["token_type"] == "bearer"
    assert body["refresh_token"] != tokens["refresh_token"]
    new = claims(settings, body["refresh_token"])
    old = claims(settings, tokens["refresh_token"])
    assert (new["type"], new["sub"], new["sid"]) == ("refresh", old["sub"], old["sid"])
    assert new["jti"] != old["jti"]


async def test_refresh_rotation_records_the_successor_on_the_session(
    rotation_client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    tokens = await login(rotation_client, user.email)
    old = claims(settings, tokens["refresh_token"])

    response = await post_refresh(rotation_client, tokens["refresh_token"])

    new = claims(settings, (await response.get_json())["refresh_token"])
    row = await session_row(session, old["sid"])
    assert (row.refresh_jti, row.previous_refresh_jti) == (new["jti"], old["jti"])
    assert row.rotated_at is not None


async def test_refresh_rotation_successor_refreshes_again(
    rotation_client: Client, user: User
) -> None:
    tokens = await login(rotation_client, user.email)
    successor = (await refreshed(rotation_client, tokens["refresh_token"]))[
        "refresh_token"
    ]

    second = await post_refresh(rotation_client, successor)

    assert second.status_code == 200
    assert (await second.get_json())["refresh_token"] not in (
        successor,
        tokens["refresh_token"],
    )


async def test_refresh_rotation_new_access_token_works(
    rotation_client: Client, user: User
) -> None:
    tokens = await login(rotation_client, user.email)
    refreshed = await post_refresh(rotation_client, tokens["refresh_token"])

    response = await get_me(
        rotation_client, (await refreshed.get_json())["access_token"]
    )

    assert response.status_code == 200


async def test_refresh_rotation_duplicate_within_grace_keeps_session_live(
    rotation_client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    tokens = await login(rotation_client, user.email)
    await post_refresh(rotation_client, tokens["refresh_token"])
    await post_refresh(rotation_client, tokens["refresh_token"])

    row = await session_row(session, claims(settings, tokens["access_token"])["sid"])
    me = await get_me(rotation_client, tokens["access_token"])

    assert row.revoked_at is None
    assert me.status_code == 200


async def age_rotation(session: AsyncSession, sid: str, seconds: int) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == sid)
        .values(rotated_at=utcnow() - timedelta(seconds=seconds))
    )
    await session.commit()


async def test_refresh_rotation_reuse_after_grace_revokes_the_session(
    no_grace_client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    tokens = await login(no_grace_client, user.email)
    first = await post_refresh(no_grace_client, tokens["refresh_token"])
    successor = await first.get_json()
    await age_rotation(session, claims(settings, tokens["access_token"])["sid"], 60)

    replay = await post_refresh(no_grace_client, tokens["refresh_token"])

    assert (replay.status_code, await replay.get_json()) == (401, REVOKED)
    for path, token in (
        (REFRESH, successor["refresh_token"]),
        (ME, successor["access_token"]),
        (ME, tokens["access_token"]),
    ):
        send = no_grace_client.post if path == REFRESH else no_grace_client.get
        response = await send(path, headers=bearer(token))
        assert (response.status_code, await response.get_json()) == (401, REVOKED)


async def test_refresh_rotation_reuse_after_grace_leaves_other_sessions(
    no_grace_client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    other = await login(no_grace_client, user.email)
    tokens = await login(no_grace_client, user.email)
    await post_refresh(no_grace_client, tokens["refresh_token"])
    await age_rotation(session, claims(settings, tokens["access_token"])["sid"], 60)

    await post_refresh(no_grace_client, tokens["refresh_token"])
    response = await get_me(no_grace_client, other["access_token"])

    assert response.status_code == 200


async def test_refresh_rotation_refresh_token_older_than_previous_revokes(
    rotation_client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    # Two rotations on: the first token is no longer even the previous one, so
    # no grace window can cover it.
    tokens = await login(rotation_client, user.email)
    first = await post_refresh(rotation_client, tokens["refresh_token"])
    second = await post_refresh(
        rotation_client, (await first.get_json())["refresh_token"]
    )

    replay = await post_refresh(rotation_client, tokens["refresh_token"])

    assert second.status_code == 200
    assert (replay.status_code, await replay.get_json()) == (401, REVOKED)
    row = await session_row(session, claims(settings, tokens["access_token"])["sid"])
    assert row.revoked_at is not None


async def test_refresh_rotation_flask_refresh_token_still_refreshes(
    rotation_client: Client, settings: Settings, user: User
) -> None:
    # Flask-era tokens have no session to rotate and stay valid until they expire.
    token = flask_token_for(settings, user, token_type="refresh")

    response = await post_refresh(rotation_client, token)

    assert response.status_code == 200
    access = (await response.get_json())["access_token"]
    assert (await get_me(rotation_client, access)).status_code == 200


async def test_refresh_rotation_after_logout_401_revoked(
    rotation_client: Client, user: User
) -> None:
    tokens = await login(rotation_client, user.email)
    await rotation_client.post(LOGOUT, headers=bearer(tokens["access_token"]))

    response = await post_refresh(rotation_client, tokens["refresh_token"])

    assert (response.status_code, await response.get_json()) == (401, REVOKED)
