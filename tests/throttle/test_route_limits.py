"""Every route that hashes a password or sends mail declares its limit (as tozo
declares its rate limits), and the hasher refuses a route that declares none."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Quart

from service.api.hashing import hasher
from service.api.limits import declared_limits
from service.config import Settings
from service.throttle.redis_store import RedisStore
from tests import backends
from tests.support import USERS, AppMaker, AppStarter, registration

REDIS_URL = backends.redis_url()
# The routes that hash a password or check a secret a stranger could guess (login,
# its second step, a passkey after a password, a fresh session, registration,
# password change and reset, a mailed token) or send mail.
HASH_OR_MAIL = {
    "api.auth.login",
    "api.auth.login_mfa",
    "api.auth.make_fresh",
    "api.passkeys.passkey_login",
    "api.auth.change_password",
    "api.auth.forgot_password",
    "api.auth.reset_password",
    "api.users.create_user",
    "api.account.request_verification",
    "api.account.verify_email",
    "api.account.change_email",
    "api.account.confirm_email",
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
    make_app: AppMaker,
) -> None:
    routes = Blueprint("unlimited", __name__)

    @routes.post("/unlimited")
    async def unlimited() -> dict[str, Any]:
        return {"hash": await hasher().hash("password")}

    async with make_app(routes) as app:
        response = await app.test_client().post("/unlimited")

    assert response.status_code == 500


async def test_route_limits_are_shared_through_redis(
    start_app: AppStarter, settings: Settings
) -> None:
    prefix = f"policy-{id(settings)}-"
    shared = {
        "redis_url": REDIS_URL,
        "redis_key_prefix": prefix,
        "registration_max_per_ip": 1,
    }
    peer = {"client": ("192.0.2.77", 50000)}
    try:
        first, second = await start_app(**shared), await start_app(**shared)
        created = await first.test_client().post(
            USERS,
            json=registration("p1@example.com", first_name="A", last_name="B"),
            scope_base=peer,
        )
        refused = await second.test_client().post(
            USERS,
            json=registration("p2@example.com", first_name="A", last_name="B"),
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
