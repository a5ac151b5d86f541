"""Every route that hashes a password or sends mail declares its limit (as tozo
declares its rate limits), and the hasher refuses a route that declares none."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from quart import Quart
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import create_app
from service.api.deps import hasher
from service.api.limits import declared_limits
from service.config import Settings
from service.db.request import SESSIONMAKER_KEY
from service.throttle.redis_store import RedisStore
from tests.system.conftest import REDIS_URL

# The routes that hash (login, registration, password change and reset) or mail.
HASH_OR_MAIL = {
    "api.auth.login",
    "api.auth.change_password",
    "api.auth.forgot_password",
    "api.auth.reset_password",
    "api.users.create_user",
}


def test_every_route_that_hashes_or_mails_declares_its_limit(app: Quart) -> None:
    limited = {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if declared_limits(app.view_functions[rule.endpoint])
    }

    assert limited == HASH_OR_MAIL
    settings = app.extensions["settings"]
    for endpoint in limited:
        for limit in declared_limits(app.view_functions[endpoint]):
            assert getattr(settings, limit.setting) > 0, (endpoint, limit)


async def test_a_route_that_hashes_without_a_limit_is_refused(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    app = create_app(settings)

    @app.post("/unlimited")
    async def unlimited() -> dict[str, Any]:
        return {"hash": await hasher().hash("password")}

    app.extensions[SESSIONMAKER_KEY] = sessionmaker
    async with app.test_app():
        response = await app.test_client().post("/unlimited")

    assert response.status_code == 500


async def test_route_limits_are_shared_through_redis(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    prefix = f"policy-{id(settings)}-"
    shared = replace(
        settings,
        redis_url=REDIS_URL,
        redis_key_prefix=prefix,
        registration_max_per_ip=1,
    )
    first, second = create_app(shared), create_app(shared)
    body = {"password": "long-enough-password", "first_name": "A", "last_name": "B"}
    peer = {"client": ("192.0.2.77", 50000)}
    for app in (first, second):
        app.extensions[SESSIONMAKER_KEY] = sessionmaker
    try:
        async with first.test_app(), second.test_app():
            created = await first.test_client().post(
                "/api/v1/users",
                json={**body, "email": "p1@example.com"},
                scope_base=peer,
            )
            refused = await second.test_client().post(
                "/api/v1/users",
                json={**body, "email": "p2@example.com"},
                scope_base=peer,
            )
    finally:
        store = RedisStore(REDIS_URL, prefix)
        keys = await store._redis.keys(f"{prefix}*")
        if keys:
            await store._redis.delete(*keys)
        await store.close()

    assert created.status_code == 201
    assert refused.status_code == 429
    assert await refused.get_json() == {"error": "Too many requests; try again later"}
    assert int(refused.headers["Retry-After"]) > 0
