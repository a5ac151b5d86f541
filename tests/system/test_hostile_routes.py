"""Routes an attacker can make expensive or break, against a served instance.

Per-route limits (hashing and mail), path parameters that cannot be ids, a busy
pool, password writes racing each other, session lifetimes and a NUL password.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from werkzeug.security import check_password_hash, generate_password_hash

from service.config import DEV_SECRET_KEY
from service.models import User
from service.security.tokens import INVALID_RESET, create_reset_token
from tests.factories import PASSWORD, committed_user
from tests.support import (
    ADMIN_DSN,
    FORGOT,
    INVALID_CREDENTIALS,
    LOGIN,
    ME,
    PASSWORD_CHANGE,
    REFRESH,
    RESET,
    USERS,
    bearer,
    unique_email,
)
from tests.system.conftest import serve
from tests.system.harness import ServedApp

TOO_MANY_LOGINS = {"error": "Too many failed login attempts; try again later"}


def own_database(served_engine: AsyncEngine) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + "/" + str(served_engine.url.database)


async def wait_for_lock_waiter(
    connection: asyncpg.Connection,
    served_engine: AsyncEngine,
    query: str,
    task: asyncio.Task[Any],
) -> None:
    """Until a statement like `query` waits on a lock, or `task` is done."""
    for _ in range(600):
        # Inside a transaction the statistics views answer from one snapshot.
        await connection.execute("SELECT pg_stat_clear_snapshot()")
        waiting = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query ILIKE $1 AND datname = $2",
            query,
            served_engine.url.database,
        )
        if waiting or task.done():
            return
        await asyncio.sleep(0.05)


def new_user_body() -> dict[str, str]:
    return {
        "email": unique_email("hostile"),
        "password": "long-enough-password",
        "first_name": "New",
        "last_name": "User",
    }


async def tokens_for(served: ServedApp, email: str) -> dict[str, Any]:
    async with served.client() as client:
        response = await client.post(LOGIN, json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


async def signed_in(served: ServedApp, engine: AsyncEngine) -> dict[str, str]:
    """The Authorization header of a new user's login."""
    user = await committed_user(engine)
    return bearer((await tokens_for(served, user.email))["access_token"])


async def login_from_elsewhere(served: ServedApp, email: str) -> httpx.Response:
    async with served.client() as client:
        return await client.post(LOGIN, json={"email": email, "password": PASSWORD})


def assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"error"}
    assert int(response.headers["Retry-After"]) > 0


# --- item 2: limits on routes that hash or mail -------------------------------------


async def test_registration_past_its_per_address_limit_answers_429(
    served: ServedApp,
) -> None:
    # Default REGISTRATION_MAX_PER_IP: 10 an hour from one client.
    async with served.client() as client:
        for _ in range(10):
            response = await client.post(USERS, json=new_user_body())
            assert response.status_code == 201, response.text
        body = new_user_body()
        refused = await client.post(USERS, json=body)
    assert_limited(refused)

    async with served.client() as elsewhere:
        assert (await elsewhere.post(USERS, json=body)).status_code == 201


async def test_reset_mail_past_its_per_email_limit_answers_429(
    served: ServedApp, user: User
) -> None:
    # Default PASSWORD_RESET_MAX_PER_ADDRESS: 3 mails an hour to one address,
    # whoever asks.
    for _ in range(3):
        async with served.client() as client:
            response = await client.post(FORGOT, json={"email": user.email})
            assert response.status_code == 202
    async with served.client() as client:
        refused = await client.post(FORGOT, json={"email": user.email.upper()})

    assert_limited(refused)


async def test_reset_mail_past_its_per_client_limit_answers_429(
    served: ServedApp,
) -> None:
    # Default PASSWORD_RESET_MAX_PER_IP: 10 an hour from one client, any address.
    async with served.client() as client:
        for number in range(10):
            response = await client.post(
                FORGOT,
                json={"email": f"nobody-{uuid.uuid4().hex}-{number}@example.com"},
            )
            assert response.status_code == 202
        refused = await client.post(FORGOT, json={"email": "else@example.com"})

    assert_limited(refused)


async def test_wrong_current_passwords_spend_the_login_budget(
    served: ServedApp, user: User
) -> None:
    # With a stolen access token, POST /auth/password is a password oracle: its
    # wrong guesses count against the account's login budget (10).
    tokens = await tokens_for(served, user.email)
    async with served.client() as thief:
        for number in range(10):
            response = await thief.post(
                PASSWORD_CHANGE,
                json={"current_password": f"guess-{number}", "new_password": "x" * 12},
                headers=bearer(tokens["access_token"]),
            )
            assert response.status_code == 400, response.text
        refused = await thief.post(
            PASSWORD_CHANGE,
            json={"current_password": PASSWORD, "new_password": "x" * 12},
            headers=bearer(tokens["access_token"]),
        )
    assert_limited(refused)

    async with served.client() as owner:
        login = await owner.post(
            LOGIN, json={"email": user.email, "password": PASSWORD}
        )
    assert (login.status_code, login.json()) == (429, TOO_MANY_LOGINS)


# --- item 4: path parameters and a busy pool -----------------------------------------


@pytest.mark.parametrize(
    "session_id",
    ["%00", "abc%00def", "%ff%fe", "%c3%28", "a" * 5000, "a" * 37],
    ids=["nul", "inner-nul", "invalid-utf8", "bad-sequence", "long", "37-chars"],
)
async def test_session_id_that_cannot_be_one_answers_404_json(
    served: ServedApp, served_engine: AsyncEngine, session_id: str
) -> None:
    headers = await signed_in(served, served_engine)
    async with served.client() as client:
        response = await client.delete(
            f"/api/v1/auth/sessions/{session_id}", headers=headers
        )

    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "Session not found"}


@pytest.mark.parametrize(
    "path",
    ["/api/v1/users/99999999999999999999", "/api/v1/posts/2147483648"],
    ids=["huge", "past-int4"],
)
async def test_id_past_the_column_type_answers_404_json(
    served: ServedApp, served_engine: AsyncEngine, path: str
) -> None:
    headers = await signed_in(served, served_engine)
    async with served.client() as client:
        response = await client.get(path, headers=headers)

    assert response.status_code == 404, response.text
    assert set(response.json()) == {"error"}


async def test_pool_checkout_timeout_answers_503_json(
    served_database_url: str, served_engine: AsyncEngine, tmp_path: Path
) -> None:
    served = serve(
        served_database_url,
        tmp_path,
        DB_POOL_SIZE="1",
        DB_MAX_OVERFLOW="0",
        DB_POOL_TIMEOUT="0.5",
    )
    blocker = await asyncpg.connect(own_database(served_engine))
    try:
        user = await committed_user(served_engine)
        tokens = await tokens_for(served, user.email)
        async with served.client() as client:
            transaction = blocker.transaction()
            await transaction.start()
            await blocker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            # A token check waits on the lock with the pool's one connection;
            # every checkout after it (a login's) times out.
            holder = asyncio.create_task(
                client.get(ME, headers=bearer(tokens["access_token"]))
            )
            await wait_for_lock_waiter(blocker, served_engine, "%users%", holder)
            requests = [
                asyncio.create_task(login_from_elsewhere(served, user.email))
                for _ in range(10)
            ]
            done, _ = await asyncio.wait(
                requests, timeout=20, return_when=asyncio.FIRST_COMPLETED
            )
            await transaction.rollback()
            responses = await asyncio.gather(holder, *requests)
    finally:
        await blocker.close()
        served.stop()

    assert done
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    unavailable = [r for r in responses if r.status_code == 503]
    assert unavailable, statuses
    for response in unavailable:
        assert response.json() == {"error": "Service unavailable"}
        assert int(response.headers["Retry-After"]) > 0


# --- item 5: compare-and-swap password writes ----------------------------------------


async def test_concurrent_resets_with_one_token_have_one_winner(
    served: ServedApp, user: User
) -> None:
    token = create_reset_token(
        user_id=user.id,
        password_hash=user.password_hash,
        key=DEV_SECRET_KEY,
        expires_in=600,
    )

    async def reset(number: int) -> httpx.Response:
        async with served.client() as client:
            return await client.post(
                RESET, json={"token": token, "new_password": f"new-password-{number}"}
            )

    responses = await asyncio.gather(*(reset(n) for n in range(6)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [204] + [400] * 5, statuses
    for response in responses:
        if response.status_code == 400:
            assert response.json() == {"error": INVALID_RESET}


async def test_login_rehash_never_overwrites_a_concurrent_password_change(
    served: ServedApp, served_engine: AsyncEngine
) -> None:
    legacy = generate_password_hash(PASSWORD, method="pbkdf2:sha256")
    user = await committed_user(served_engine, password_hash=legacy)
    changed = generate_password_hash("changed-password-123")
    writer = await asyncpg.connect(own_database(served_engine))
    try:
        transaction = writer.transaction()
        await transaction.start()
        # Held like a password change in progress: the login's rehash must wait
        # for it (sessions' foreign key check only takes KEY SHARE, no conflict).
        await writer.execute(
            "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE", user.id
        )
        async with served.client() as client:
            login = asyncio.create_task(
                client.post(LOGIN, json={"email": user.email, "password": PASSWORD})
            )
            await wait_for_lock_waiter(writer, served_engine, "UPDATE users%", login)
            await writer.execute(
                "UPDATE users SET password_hash = $1 WHERE id = $2", changed, user.id
            )
            await transaction.commit()
            response = await login
    finally:
        await writer.close()

    stored = await fetch_hash(served_engine, user.id)
    assert stored == changed
    assert check_password_hash(stored, "changed-password-123")
    # The password it checked is no longer the account's: no session for it.
    assert (response.status_code, response.json()) == (401, INVALID_CREDENTIALS)


async def fetch_hash(served_engine: AsyncEngine, user_id: int) -> str:
    from sqlalchemy import text

    async with served_engine.connect() as connection:
        value = await connection.scalar(
            text("SELECT password_hash FROM users WHERE id = :id"), {"id": user_id}
        )
    assert isinstance(value, str)
    return value


# --- item 6: absolute session lifetime ----------------------------------------------


async def test_rotation_never_extends_the_session_past_its_login(
    served_database_url: str, served_engine: AsyncEngine, tmp_path: Path
) -> None:
    served = serve(served_database_url, tmp_path, REFRESH_TOKEN_ROTATION="true")
    try:
        user = await committed_user(served_engine)
        tokens = await tokens_for(served, user.email)
        first = jwt.decode(tokens["refresh_token"], options={"verify_signature": False})
        # One second later, so that "now + lifetime" would be later than the
        # login's own expiry.
        await asyncio.sleep(1.1)
        async with served.client() as client:
            response = await client.post(
                REFRESH, headers=bearer(tokens["refresh_token"])
            )
    finally:
        served.stop()

    assert response.status_code == 200, response.text
    successor = jwt.decode(
        response.json()["refresh_token"], options={"verify_signature": False}
    )
    assert successor["jti"] != first["jti"]
    assert successor["exp"] <= first["exp"]


# --- item 10: a NUL in the password ---------------------------------------------------


async def test_nul_in_the_login_password_is_a_wrong_password(
    served: ServedApp, user: User
) -> None:
    async with served.client() as client:
        response = await client.post(
            LOGIN, json={"email": user.email, "password": "password\x00123"}
        )

    assert (response.status_code, response.json()) == (401, INVALID_CREDENTIALS)


async def test_login_storm_past_the_hash_queue_answers_503_json(
    served_database_url: str, tmp_path: Path
) -> None:
    served = serve(
        served_database_url,
        tmp_path,
        PASSWORD_HASH_THREADS="1",
        PASSWORD_HASH_QUEUE="1",
    )
    try:

        async def attempt(number: int) -> httpx.Response:
            async with served.client() as client:
                return await client.post(
                    LOGIN,
                    json={"email": f"nobody{number}@example.com", "password": "x"},
                )

        responses = await asyncio.gather(*(attempt(n) for n in range(12)))
    finally:
        served.stop()

    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) == {401, 503}, statuses
    for response in responses:
        if response.status_code == 503:
            assert response.json() == {
                "error": "Too many password checks in progress; try again shortly"
            }
            assert response.headers["Retry-After"] == "1"
