"""Rotating JWT_SECRET_KEY and SECRET_KEY without logging everyone out, over HTTP.

The steps of docs/deployment.md ("Rotating the signing keys"), each a served
instance of its own settings on the same database: the old keys; the new keys
with the old ones as fallbacks (old tokens and reset links still work, new ones
are signed with the new keys); the fallbacks removed (old tokens answer 422, a
bad signature as today; old reset links 400; the new keys' tokens work).
"""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.security.tokens import create_reset_token
from tests.factories import PASSWORD, PASSWORD_HASH, committed_user
from tests.support import LOGIN, ME, REFRESH, RESET
from tests.system.conftest import serve
from tests.system.harness import ServedApp

OLD_JWT, NEW_JWT = ("old-jwt-key-" + "a" * 32, "new-jwt-key-" + "b" * 32)
OLD_SECRET, NEW_SECRET = ("old-secret-" + "c" * 32, "new-secret-" + "d" * 32)
NEW_PASSWORD = "a-rotated-password-1"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def signed_with(token: str, key: str) -> bool:
    try:
        jwt.decode(token, key, algorithms=["HS256"])
    except jwt.InvalidSignatureError:
        return False
    return True


async def test_rotation_steps_keep_sessions_until_the_fallback_goes(
    served_database_url: str,
    served_engine: AsyncEngine,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    user = await committed_user(served_engine)
    resetter = await committed_user(served_engine)

    def instance(step: str, **env: str) -> ServedApp:
        folder: Path = tmp_path_factory.mktemp(f"rotation-{step}")
        return serve(served_database_url, folder, **env)

    # Step 0: the old keys sign everything.
    with instance("old", JWT_SECRET_KEY=OLD_JWT, SECRET_KEY=OLD_SECRET) as old:
        async with old.client() as client:
            login = await client.post(
                LOGIN, json={"email": user.email, "password": PASSWORD}
            )
    old_tokens = login.json()
    old_link = create_reset_token(
        user_id=resetter.id, password_hash=PASSWORD_HASH, key=OLD_SECRET, expires_in=600
    )

    # Step 1: the new keys, the old ones as fallbacks.
    with instance(
        "fallback",
        JWT_SECRET_KEY=NEW_JWT,
        JWT_SECRET_KEY_FALLBACKS=OLD_JWT,
        SECRET_KEY=NEW_SECRET,
        SECRET_KEY_FALLBACKS=OLD_SECRET,
    ) as rotating:
        async with rotating.client() as client:
            me = await client.get(ME, headers=bearer(old_tokens["access_token"]))
            refreshed = await client.post(
                REFRESH, headers=bearer(old_tokens["refresh_token"])
            )
            login = await client.post(
                LOGIN, json={"email": user.email, "password": PASSWORD}
            )
            reset = await client.post(
                RESET, json={"token": old_link, "new_password": NEW_PASSWORD}
            )
    new_tokens = login.json()
    assert me.status_code == 200
    assert refreshed.status_code == 200
    assert signed_with(refreshed.json()["access_token"], NEW_JWT)
    assert signed_with(new_tokens["access_token"], NEW_JWT)
    assert signed_with(new_tokens["refresh_token"], NEW_JWT)
    assert reset.status_code == 204
    # A link the old key signed for the resetter's current hash: it must die
    # with the fallback.
    async with served_engine.connect() as connection:
        current_hash = (
            await connection.execute(
                text("SELECT password_hash FROM users WHERE id = :id"),
                {"id": resetter.id},
            )
        ).scalar_one()
    stale_link = create_reset_token(
        user_id=resetter.id, password_hash=current_hash, key=OLD_SECRET, expires_in=600
    )
    fresh_link = create_reset_token(
        user_id=resetter.id, password_hash=current_hash, key=NEW_SECRET, expires_in=600
    )

    # Step 2: the fallbacks removed.
    with instance("new", JWT_SECRET_KEY=NEW_JWT, SECRET_KEY=NEW_SECRET) as new:
        async with new.client() as client:
            old_me = await client.get(ME, headers=bearer(old_tokens["access_token"]))
            old_refresh = await client.post(
                REFRESH, headers=bearer(old_tokens["refresh_token"])
            )
            new_me = await client.get(ME, headers=bearer(new_tokens["access_token"]))
            stale = await client.post(
                RESET, json={"token": stale_link, "new_password": PASSWORD}
            )
            fresh = await client.post(
                RESET, json={"token": fresh_link, "new_password": PASSWORD}
            )

    assert (old_me.status_code, old_refresh.status_code) == (422, 422)
    assert old_me.json()["msg"] == "Signature verification failed"
    assert new_me.status_code == 200
    assert stale.status_code == 400
    assert fresh.status_code == 204
