"""Short-lived, single-use values every replica finds: the WebAuthn challenges.

A challenge is put under its own text with a time to live, and taken once: the
first `take` gets it and removes it, every later one (a replayed assertion, a
second replica racing the first) finds nothing. In Redis when REDIS_URL is set
(SET with PX, then GETDEL: each one command, atomic on the server); otherwise in
this process's memory, as the throttle's own counters are (one replica only).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

from service.errors import UnavailableError

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from redis.asyncio import Redis

# The most challenges the memory store keeps; the oldest go first.
MEMORY_MAX_CHALLENGES = 50_000
KEY_PREFIX = "challenge:"


class ChallengeStore(Protocol):
    async def put(self, key: str, value: str, ttl: int) -> None:
        """Keep `value` under `key` for `ttl` seconds, or until taken."""
        ...

    async def take(self, key: str) -> str | None:
        """The value, removed: once. None if taken already, expired or unknown."""
        ...

    async def close(self) -> None: ...


class MemoryChallenges:
    """One process's challenges: no await between look-up and removal."""

    def __init__(self, max_keys: int = MEMORY_MAX_CHALLENGES) -> None:
        self.max_keys = max_keys
        self._values: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._values)

    async def put(self, key: str, value: str, ttl: int) -> None:
        now = time.monotonic()
        # Every entry lives the same few minutes, so the oldest expire first.
        while self._values:
            oldest_key, (_, deadline) = next(iter(self._values.items()))
            if deadline > now and len(self._values) < self.max_keys:
                break
            del self._values[oldest_key]
        self._values[key] = (value, now + ttl)

    async def take(self, key: str) -> str | None:
        entry = self._values.pop(key, None)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    async def close(self) -> None:
        self._values.clear()


class RedisChallenges:
    """Challenges every replica shares, each key with its TTL."""

    def __init__(self, url: str, prefix: str = "") -> None:
        # Imported only with REDIS_URL set, as the throttle's store does.
        from redis.asyncio import Redis

        self.prefix = f"{prefix}{KEY_PREFIX}"
        self._redis: Redis = Redis.from_url(
            url, socket_timeout=2, socket_connect_timeout=2
        )

    async def put(self, key: str, value: str, ttl: int) -> None:
        await _answered(self._redis.set(f"{self.prefix}{key}", value, px=ttl * 1000))

    async def take(self, key: str) -> str | None:
        value = await _answered(self._redis.getdel(f"{self.prefix}{key}"))
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def close(self) -> None:
        await self._redis.aclose()


async def _answered(command: Awaitable[Any]) -> Any:
    """The command's answer; an unreachable Redis is a 503, not a 500."""
    from redis.exceptions import RedisError

    try:
        return await command
    except (RedisError, OSError) as error:
        raise UnavailableError(
            "Service unavailable", headers={"Retry-After": "1"}
        ) from error


def create_challenges(redis_url: str | None, prefix: str = "") -> ChallengeStore:
    if redis_url:
        return RedisChallenges(redis_url, prefix)
    return MemoryChallenges()
