"""A session opens only on the account as the credential check saw it, and the
session check refuses a session that started before the user's cut-off.

The deterministic halves of the login race (tests/system/test_login_race.py
streams real logins against a served instance): the account changes between the
check (a CheckedAccount) and `open_session`, and a session row that somehow
predates the cut-off.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service.config import Settings
from service.errors import AuthError
from service.models import AuthSession, User, utcnow
from service.security.passwords import PasswordHasher
from service.security.tokens import decode_token
from service.services.auth import AuthService, CheckedAccount
from service.services.auth import Client as Peer
from service.services.callers import token_holder
from tests.factories import login_tokens, make_user
from tests.support import REVOKED, bearer, get_me, post_refresh

PEER = Peer(ip="127.0.0.1", user_agent="pytest")
# A scrypt hash of another password: what a change or a reset writes.
OTHER_HASH = (
    "scrypt:32768:8:1$AAAAAAAAAAAAAAAA$0000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
)


@pytest.fixture
async def hasher() -> AsyncIterator[PasswordHasher]:
    pool = PasswordHasher(threads=1)
    yield pool
    pool.shutdown()


async def sessions_of(session: AsyncSession, user_id: int) -> int:
    count = await session.scalar(
        select(func.count()).where(AuthSession.user_id == user_id)
    )
    return int(count or 0)


CHANGES: dict[str, dict[str, Any]] = {
    "password-changed": {"password_hash": OTHER_HASH},
    "deactivated": {"is_active": False},
    "deleted": {"deleted_at": utcnow()},
}


@pytest.mark.parametrize("change", list(CHANGES))
async def test_open_session_on_an_account_changed_since_the_check_is_a_wrong_login(
    session: AsyncSession,
    settings: Settings,
    hasher: PasswordHasher,
    change: str,
) -> None:
    user = await make_user(session)
    checked = CheckedAccount.of(user)
    await session.execute(
        update(User).where(User.id == checked.user_id).values(**CHANGES[change])
    )
    await session.commit()

    with pytest.raises(AuthError) as refused:
        await AuthService(session, hasher, settings).open_session(checked, client=PEER)

    assert refused.value.message == "Invalid email or password"
    assert await sessions_of(session, checked.user_id) == 0


async def test_open_session_on_the_account_as_checked_opens_one(
    session: AsyncSession, settings: Settings, hasher: PasswordHasher
) -> None:
    user = await make_user(session)

    tokens = await AuthService(session, hasher, settings).open_session(
        CheckedAccount.of(user), client=PEER
    )

    identity = decode_token(
        tokens.access_token, key=settings.jwt_secret_key, expected_type="access"
    )
    row = await session.get(AuthSession, identity.session_id)
    assert row is not None
    assert (row.user_id, row.ip) == (user.id, "127.0.0.1")


async def test_session_started_before_the_cut_off_is_refused(
    client: Client, session: AsyncSession, settings: Settings
) -> None:
    # A session row that a revoke-all did not reach (the race the INSERT's
    # condition closes): the cut-off alone must end it.
    user = await make_user(session)
    tokens = await login_tokens(session, settings, user)
    user.tokens_valid_after = utcnow() + timedelta(seconds=1)
    await session.commit()

    me = await get_me(client, tokens.access_token)
    refreshed = await post_refresh(client, tokens.refresh_token)

    assert (me.status_code, await me.get_json()) == (401, REVOKED)
    assert (refreshed.status_code, await refreshed.get_json()) == (401, REVOKED)


async def test_session_opened_while_the_cut_off_is_ahead_of_this_clock_works(
    client: Client, session: AsyncSession, settings: Settings
) -> None:
    # Another replica's clock wrote the cut-off a little ahead of this one's:
    # a login after it must still work.
    user = await make_user(session, tokens_valid_after=utcnow() + timedelta(seconds=5))

    tokens = await login_tokens(session, settings, user)
    response = await client.get("/api/v1/users/me", headers=bearer(tokens.access_token))

    assert response.status_code == 200


async def test_session_token_check_is_one_query(
    engine: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    user = await make_user(session)
    tokens = await login_tokens(session, settings, user)
    identity = decode_token(
        tokens.access_token, key=settings.jwt_secret_key, expected_type="access"
    )
    queries: list[str] = []

    def record(query: asyncpg.connection.LoggedQuery) -> None:
        queries.append(query.query)

    pooled = await engine.raw_connection()
    try:
        driver = pooled.driver_connection
        assert driver is not None
        driver.add_query_logger(record)
        try:
            holder = await token_holder(pooled, identity, touch_interval=3600)
            await asyncio.sleep(0.05)  # asyncpg calls its loggers soon, not now
        finally:
            driver.remove_query_logger(record)
    finally:
        pooled.close()

    assert holder is not None
    assert holder[0].id == user.id
    assert len(queries) == 1, queries
