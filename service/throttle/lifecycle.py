"""The throttle's store, chosen by the settings, opened and closed with serving."""

from __future__ import annotations

from quart import Quart

from service.config import Settings
from service.throttle.challenges import ChallengeStore, create_challenges
from service.throttle.login import LoginThrottle
from service.throttle.redis_store import RedisStore
from service.throttle.stores import MemoryStore, Store

THROTTLE_KEY = "login_throttle"
CHALLENGES_KEY = "webauthn_challenges"


def init_app(app: Quart, settings: Settings) -> None:
    @app.before_serving
    async def open_store() -> None:
        store = create_store(settings)
        await store.start()
        app.extensions[THROTTLE_KEY] = LoginThrottle(store, settings)
        app.extensions[CHALLENGES_KEY] = create_challenges(
            settings.redis_url, settings.redis_key_prefix
        )

    @app.after_serving
    async def close_store() -> None:
        throttle: LoginThrottle | None = app.extensions.pop(THROTTLE_KEY, None)
        if throttle is not None:
            await throttle.store.close()
        challenges: ChallengeStore | None = app.extensions.pop(CHALLENGES_KEY, None)
        if challenges is not None:
            await challenges.close()


def app_throttle(app: Quart) -> LoginThrottle:
    """The login throttle `app` counts in (only while it serves)."""
    throttle: LoginThrottle = app.extensions[THROTTLE_KEY]
    return throttle


def app_challenges(app: Quart) -> ChallengeStore:
    """Where `app` keeps WebAuthn challenges (only while it serves)."""
    challenges: ChallengeStore = app.extensions[CHALLENGES_KEY]
    return challenges


def create_store(settings: Settings) -> Store:
    if settings.redis_url:
        return RedisStore(settings.redis_url, settings.redis_key_prefix)
    return MemoryStore()
