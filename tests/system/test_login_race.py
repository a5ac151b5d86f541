"""Logins with the old password, streamed while the password changes: none of the
tokens they hand out may work once everything has answered.

Against a served instance (hypercorn, PostgreSQL, Redis), default settings. The
user's hash is a current scrypt one, so no login takes the rehash branch: the
only thing between the password check and the session is the race itself.
Several clients, each its own loopback address, keep logging in; the change
(a password change, a reset, a deactivation then a reactivation, a delete then
a restore) happens while about as many logins are between their check and
their session as the hash pool holds. Every login reads the account before it
waits for the pool, so the race is made likely; its outcome is asserted after
all have answered, so the test never depends on who won.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import DEV_SECRET_KEY
from service.models import User
from service.security.tokens import create_reset_token
from tests.factories import PASSWORD, PASSWORD_HASH, committed_user
from tests.support import LOGIN, ME, PASSWORD_CHANGE, REFRESH, RESET, USERS
from tests.system.harness import ServedApp

STREAMS = 6
NEW_PASSWORD = "a-new-password-789"
Change = Callable[[httpx.AsyncClient, User, dict[str, str]], Awaitable[None]]


async def log_in(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post(LOGIN, json={"email": email, "password": PASSWORD})


async def stream_logins(
    served: ServedApp,
    email: str,
    stop: asyncio.Event,
    handed_out: list[Any],
    flowing: asyncio.Event,
) -> None:
    async with served.client() as client:
        while not stop.is_set():
            response = await log_in(client, email)
            if response.status_code == 200:
                handed_out.append(response.json())
                if len(handed_out) >= STREAMS:
                    flowing.set()
            elif response.status_code == 429:
                return  # wrong passwords since the change spent the budget


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def change_password(
    client: httpx.AsyncClient, user: User, _admin: dict[str, str]
) -> None:
    login = await log_in(client, user.email)
    response = await client.post(
        PASSWORD_CHANGE,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(login.json()["access_token"]),
    )
    assert response.status_code == 204, response.text


async def reset_password(
    client: httpx.AsyncClient, user: User, _admin: dict[str, str]
) -> None:
    # The link the reset mail carries, as the served instance's key signs it.
    token = create_reset_token(
        user_id=user.id,
        password_hash=PASSWORD_HASH,
        key=DEV_SECRET_KEY,
        expires_in=600,
    )
    response = await client.post(
        RESET, json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 204, response.text


async def set_active(
    client: httpx.AsyncClient, user: User, admin: dict[str, str], active: bool
) -> None:
    response = await client.patch(
        f"{USERS}/{user.id}", json={"is_active": active}, headers=admin
    )
    assert response.status_code == 200, response.text


async def deactivate(
    client: httpx.AsyncClient, user: User, admin: dict[str, str]
) -> None:
    await set_active(client, user, admin, False)


async def reactivate(
    client: httpx.AsyncClient, user: User, admin: dict[str, str]
) -> None:
    await set_active(client, user, admin, True)


async def delete(client: httpx.AsyncClient, user: User, admin: dict[str, str]) -> None:
    response = await client.delete(f"{USERS}/{user.id}", headers=admin)
    assert response.status_code in (200, 204), response.text


async def restore(client: httpx.AsyncClient, user: User, admin: dict[str, str]) -> None:
    response = await client.post(f"{USERS}/{user.id}/restore", headers=admin)
    assert response.status_code == 200, response.text


async def nothing(
    _client: httpx.AsyncClient, _user: User, _admin: dict[str, str]
) -> None:
    return None


RACES = {
    "password-change": (change_password, nothing),
    "password-reset": (reset_password, nothing),
    "deactivate-then-reactivate": (deactivate, reactivate),
    "delete-then-restore": (delete, restore),
}


@pytest.mark.parametrize("race", list(RACES))
async def test_no_login_streamed_with_the_old_password_outlives_the_change(
    served: ServedApp,
    served_engine: AsyncEngine,
    measurements: list[str],
    race: str,
) -> None:
    change, undo = RACES[race]
    user = await committed_user(served_engine)
    admin_user = await committed_user(served_engine, is_admin=True)
    handed_out: list[Any] = []
    stop, flowing = asyncio.Event(), asyncio.Event()
    async with served.client() as operator:
        admin_login = await log_in(operator, admin_user.email)
        admin = bearer(admin_login.json()["access_token"])
        streams = [
            asyncio.create_task(
                stream_logins(served, user.email, stop, handed_out, flowing)
            )
            for _ in range(STREAMS)
        ]
        try:
            # Logins flowing, several of them waiting on the hash pool.
            await asyncio.wait_for(flowing.wait(), timeout=60)
            before = len(handed_out)
            await change(operator, user, admin)
            # Logins checked before the change answer now; then stop.
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            await asyncio.gather(*streams)
        # Only once every login has answered: a reactivation or a restore must
        # not bring back a session that slipped past the change.
        await undo(operator, user, admin)

        working = []
        for tokens in handed_out:
            me = await operator.get(ME, headers=bearer(tokens["access_token"]))
            refreshed = await operator.post(
                REFRESH, headers=bearer(tokens["refresh_token"])
            )
            if me.status_code != 401 or refreshed.status_code != 401:
                working.append((me.status_code, refreshed.status_code))

    measurements.append(
        f"{race}: {len(handed_out)} logins handed out tokens, "
        f"{len(handed_out) - before} of them answered after the change began"
    )
    assert handed_out
    assert working == [], f"{len(working)} of {len(handed_out)} tokens still work"
