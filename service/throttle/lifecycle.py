"""The throttle's store, chosen by the settings."""

from __future__ import annotations

from service.config import Settings
from service.throttle.redis_store import RedisStore
from service.throttle.stores import MemoryStore, Store


def create_store(settings: Settings) -> Store:
    if settings.redis_url:
        return RedisStore(settings.redis_url, settings.redis_key_prefix)
    return MemoryStore()
