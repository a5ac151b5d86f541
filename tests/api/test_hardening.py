"""The front door: security headers, CORS, the body-size limit, password rehash."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from quart.wrappers import Response
from sqlalchemy.ext.asyncio import AsyncSession
from werkzeug.security import check_password_hash, generate_password_hash

from service.config import ConfigError, Settings
from service.models import User
from tests.factories import (
    PASSWORD,
    PASSWORD_HASH,
    login_headers,
    login_tokens,
    make_user,
)
from tests.support import API, LOGIN, ME, TOO_LARGE, AppMaker, bearer, post_login

ALLOWED_ORIGIN = "https://app.example"
# Policies that never leak a path or query to another site.
STRICT_REFERRER_POLICIES = {"no-referrer", "same-origin", "strict-origin"}
# werkzeug's pbkdf2 default before 3.1, as a Flask-era database holds it.
PBKDF2_HASH = (
    "pbkdf2:sha256:600000$9sTVuIYDbG93HJPP$"
    "528a76459468d80c7c2c97199bea29d648ea60359c8b8f6708011fe5728f7278"
)
CURRENT_METHOD = "scrypt:32768:8:1$"

Sender = Callable[[Client, dict[str, str]], Awaitable[Response]]


def too_large_body(size: int = 1024 * 1024) -> str:
    return json.dumps({"email": "a@example.com", "password": "x" * size})


# One request per kind of answer; `headers` gets a live user's token.
RESPONSES: dict[str, tuple[int, Sender]] = {
    "200": (200, lambda c, h: c.get(ME, headers=h)),
    "204": (204, lambda c, h: c.delete(f"{API}/auth/sessions", headers=h)),
    "400": (400, lambda c, h: c.post(f"{API}/users", json={})),
    "401": (401, lambda c, h: c.get(ME)),
    "404": (404, lambda c, h: c.get(f"{API}/no-such-route")),
    "404-outside-api": (404, lambda c, h: c.get("/no-such-route")),
    "405": (405, lambda c, h: c.get(LOGIN)),
    "413": (
        413,
        lambda c, h: c.post(
            LOGIN,
            data=too_large_body(),
            headers={"Content-Type": "application/json"},
        ),
    ),
    "415": (
        415,
        lambda c, h: c.post(
            f"{API}/users", data="x", headers={"Content-Type": "text/plain"}
        ),
    ),
    "422": (422, lambda c, h: c.get(ME, headers={"Authorization": "Bearer not.a.jwt"})),
    "options": (200, lambda c, h: c.options(f"{API}/users")),
}
JSON_RESPONSES = [name for name in RESPONSES if name not in ("204", "options")]


async def send(client: Client, user_headers: dict[str, str], name: str) -> Response:
    status, sender = RESPONSES[name]
    response = await sender(client, user_headers)
    assert response.status_code == status
    return response


def access_control_headers(response: Response) -> dict[str, str]:
    return {
        name: value
        for name, value in response.headers.items()
        if name.lower().startswith("access-control-")
    }


def vary(response: Response) -> set[str]:
    return {
        item.strip().lower()
        for value in response.headers.get_all("Vary")
        for item in value.split(",")
    }


def listed(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


@pytest.fixture
async def cors_app(make_app: AppMaker) -> AsyncIterator[Quart]:
    async with make_app(cors_origins=(ALLOWED_ORIGIN,)) as app:
        yield app


@pytest.fixture
def cors_client(cors_app: Quart) -> Client:
    return cors_app.test_client()


# --- security headers ---------------------------------------------------------


@pytest.mark.parametrize("name", list(RESPONSES))
async def test_every_response_has_nosniff(
    client: Client, user_headers: dict[str, str], name: str
) -> None:
    response = await send(client, user_headers, name)

    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("name", list(RESPONSES))
async def test_every_response_has_a_strict_referrer_policy(
    client: Client, user_headers: dict[str, str], name: str
) -> None:
    response = await send(client, user_headers, name)

    assert response.headers.get("Referrer-Policy") in STRICT_REFERRER_POLICIES


@pytest.mark.parametrize("name", JSON_RESPONSES)
async def test_json_response_has_csp_default_src_none(
    client: Client, user_headers: dict[str, str], name: str
) -> None:
    response = await send(client, user_headers, name)

    assert response.mimetype == "application/json"
    directives = [
        part.strip() for part in response.headers["Content-Security-Policy"].split(";")
    ]
    assert "default-src 'none'" in directives


AUTH_RESPONSES: dict[
    str, Callable[[Client, User, dict[str, str]], Awaitable[Response]]
] = {
    "login-200": lambda c, u, h: c.post(
        LOGIN, json={"email": u.email, "password": PASSWORD}
    ),
    "login-401": lambda c, u, h: c.post(
        LOGIN, json={"email": u.email, "password": "wrong-password"}
    ),
    "login-400": lambda c, u, h: c.post(LOGIN, json={}),
    "refresh-200": lambda c, u, h: c.post(f"{API}/auth/refresh", headers=h),
    "logout-200": lambda c, u, h: c.post(f"{API}/auth/logout", headers=h),
    "sessions-200": lambda c, u, h: c.get(f"{API}/auth/sessions", headers=h),
    "sessions-401": lambda c, u, h: c.get(f"{API}/auth/sessions"),
    "unknown-404": lambda c, u, h: c.get(f"{API}/auth/unknown"),
    "wrong-method-405": lambda c, u, h: c.get(LOGIN),
}


@pytest.mark.parametrize("name", list(AUTH_RESPONSES))
async def test_auth_response_is_not_stored(
    client: Client, session: AsyncSession, settings: Settings, user: User, name: str
) -> None:
    tokens = await login_tokens(session, settings, user)
    headers = bearer(
        tokens.refresh_token if name.startswith("refresh") else tokens.access_token
    )

    response = await AUTH_RESPONSES[name](client, user, headers)

    assert response.status_code == int(name.rsplit("-", 1)[1])
    assert "no-store" in listed(response.headers.get("Cache-Control", ""))


# --- CORS ---------------------------------------------------------------------


async def preflight(
    client: Client, path: str, origin: str, request_headers: str | None = None
) -> Response:
    """A browser's preflight for a POST from `origin`."""
    headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    if request_headers is not None:
        headers["Access-Control-Request-Headers"] = request_headers
    return await client.options(path, headers=headers)


async def test_cors_off_by_default_no_allow_origin(
    client: Client, user_headers: dict[str, str]
) -> None:
    response = await client.get(ME, headers={**user_headers, "Origin": ALLOWED_ORIGIN})

    assert response.status_code == 200
    assert access_control_headers(response) == {}


async def test_cors_off_by_default_preflight_gets_no_cors_headers(
    client: Client,
) -> None:
    response = await preflight(client, LOGIN, ALLOWED_ORIGIN, "content-type")

    assert access_control_headers(response) == {}


async def test_cors_allowed_origin_is_echoed_without_credentials(
    cors_client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    response = await cors_client.get(
        ME,
        headers={
            **await login_headers(session, settings, user),
            "Origin": ALLOWED_ORIGIN,
        },
    )

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "origin" in vary(response)


async def test_cors_allowed_origin_can_read_errors(cors_client: Client) -> None:
    response = await cors_client.get(ME, headers={"Origin": ALLOWED_ORIGIN})

    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN


@pytest.mark.parametrize("path", [LOGIN, ME, f"{API}/users/1"])
async def test_cors_preflight_from_allowed_origin_lists_methods_and_headers(
    cors_client: Client, path: str
) -> None:
    response = await preflight(
        cors_client, path, ALLOWED_ORIGIN, "authorization, content-type"
    )

    assert 200 <= response.status_code < 300
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert {"post", "patch", "delete"} <= listed(
        response.headers["Access-Control-Allow-Methods"]
    )
    assert {"authorization", "content-type"} <= listed(
        response.headers["Access-Control-Allow-Headers"]
    )
    assert "origin" in vary(response)


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "https://app.example.evil.example",
        "http://app.example",
        "https://app.example:8443",
        "null",
    ],
)
async def test_cors_other_origin_gets_no_cors_headers(
    cors_client: Client,
    session: AsyncSession,
    settings: Settings,
    user: User,
    origin: str,
) -> None:
    response = await cors_client.get(
        ME, headers={**await login_headers(session, settings, user), "Origin": origin}
    )

    assert response.status_code == 200
    assert access_control_headers(response) == {}


async def test_cors_other_origin_preflight_gets_no_cors_headers(
    cors_client: Client,
) -> None:
    response = await preflight(cors_client, LOGIN, "https://evil.example")

    assert access_control_headers(response) == {}


async def test_cors_answer_to_other_origin_still_varies_on_origin(
    cors_client: Client,
) -> None:
    # A shared cache must not hand this answer to the allowed origin, or the reverse.
    response = await cors_client.get(ME, headers={"Origin": "https://evil.example"})

    assert "origin" in vary(response)


async def test_cors_request_without_origin_gets_no_cors_headers(
    cors_client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    response = await cors_client.get(
        ME, headers=await login_headers(session, settings, user)
    )

    assert access_control_headers(response) == {}


def test_cors_wildcard_origin_is_refused_by_settings() -> None:
    with pytest.raises(ConfigError):
        Settings(cors_origins=("*",)).validate()


# --- body size ----------------------------------------------------------------


async def test_login_body_over_1_mib_413_json(client: Client) -> None:
    response = await client.post(
        LOGIN, data=too_large_body(), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 413
    assert response.mimetype == "application/json"
    assert await response.get_json() == TOO_LARGE


async def test_body_limit_follows_the_setting(make_app: AppMaker) -> None:
    async with make_app(max_content_length=1000) as app:
        response = await app.test_client().post(
            LOGIN,
            data=too_large_body(2000),
            headers={"Content-Type": "application/json"},
        )

    assert response.status_code == 413
    assert await response.get_json() == TOO_LARGE


# --- password rehash on login -------------------------------------------------


async def stored_hash(session: AsyncSession, user: User) -> str:
    await session.refresh(user)
    return user.password_hash


@pytest.mark.parametrize(
    "old_hash",
    [
        pytest.param(PBKDF2_HASH, id="flask-era-pbkdf2"),
        pytest.param(
            generate_password_hash(PASSWORD, method="scrypt:16384:8:1"),
            id="weaker-scrypt-parameters",
        ),
    ],
)
async def test_login_rehashes_an_old_hash_as_current_scrypt(
    client: Client, session: AsyncSession, old_hash: str
) -> None:
    user = await make_user(session, password_hash=old_hash)

    response = await post_login(client, user.email)

    assert response.status_code == 200
    new_hash = await stored_hash(session, user)
    assert new_hash.startswith(CURRENT_METHOD)
    assert check_password_hash(new_hash, PASSWORD)


@pytest.mark.parametrize(
    ("password_hash", "password", "status"),
    [
        pytest.param(PASSWORD_HASH, PASSWORD, 200, id="login-keeps-a-current-hash"),
        pytest.param(
            PBKDF2_HASH, "wrong-password", 401, id="failed-login-leaves-an-old-hash"
        ),
    ],
)
async def test_login_leaves_the_hash_alone(
    client: Client,
    session: AsyncSession,
    password_hash: str,
    password: str,
    status: int,
) -> None:
    user = await make_user(session, password_hash=password_hash)

    response = await post_login(client, user.email, password)

    assert response.status_code == status
    assert await stored_hash(session, user) == password_hash


async def test_rehashed_user_logs_in_again(
    client: Client, session: AsyncSession
) -> None:
    user = await make_user(session, password_hash=PBKDF2_HASH)
    await post_login(client, user.email)

    response = await post_login(client, user.email)

    assert response.status_code == 200
