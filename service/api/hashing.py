"""The password hasher's thread pool, started and stopped with serving."""

from __future__ import annotations

from collections.abc import Callable

from quart import Quart, current_app

from service.config import Settings
from service.security.passwords import PasswordHasher

HASHER_KEY = "password_hasher"


def init_app(app: Quart, settings: Settings, *, guard: Callable[[], None]) -> None:
    """`guard` runs before each hash (api/limits.py: the route declares a limit)."""

    # Started and stopped with serving, so an app can serve again after a stop.
    @app.before_serving
    async def start_hasher() -> None:
        app.extensions[HASHER_KEY] = PasswordHasher(
            settings.password_hash_threads,
            nice=settings.password_hash_nice,
            queue=settings.password_hash_queue,
            guard=guard,
        )

    @app.after_serving
    async def stop_hasher() -> None:
        hasher: PasswordHasher | None = app.extensions.pop(HASHER_KEY, None)
        if hasher is not None:
            hasher.shutdown()


def hasher() -> PasswordHasher:
    value: PasswordHasher = current_app.extensions[HASHER_KEY]
    return value
