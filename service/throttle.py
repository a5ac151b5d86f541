"""Login throttling: failed attempts counted per account and per client IP.

Counters live in Redis when REDIS_URL is set, so every replica sees the same
budget; otherwise in this process's memory.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Protocol

from redis.asyncio import Redis

from service.config import Settings
from service.errors import TooManyRequestsError

TOO_MANY = "Too many failed login attempts; try again later"


class Counter(Protocol):
    async def count(self, key: str) -> tuple[int, int]:
        """Hits in the current window and the seconds until it ends."""
        ...

    async def hit(self, key: str, window: int) -> None: ...

    async def reset(self, key: str) -> None: ...

    async def close(self) -> None: ...


class MemoryCounter:
    def __init__(self) -> None:
        self._windows: dict[str, tuple[int, float]] = {}

    async def count(self, key: str) -> tuple[int, int]:
        hits, ends = self._windows.get(key, (0, 0.0))
        remaining = ends - time.monotonic()
        return (hits, math.ceil(remaining)) if remaining > 0 else (0, 0)

    async def hit(self, key: str, window: int) -> None:
        now = time.monotonic()
        hits, ends = self._windows.get(key, (0, 0.0))
        if ends <= now:
            hits, ends = 0, now + window
            if len(self._windows) > 10_000:
                self._forget_expired(now)
        self._windows[key] = (hits + 1, ends)

    async def reset(self, key: str) -> None:
        self._windows.pop(key, None)

    async def close(self) -> None:
        self._windows.clear()

    def _forget_expired(self, now: float) -> None:
        for key in [k for k, (_, ends) in self._windows.items() if ends <= now]:
            del self._windows[key]


class RedisCounter:
    def __init__(self, url: str) -> None:
        self._redis: Redis = Redis.from_url(
            url, socket_timeout=2, socket_connect_timeout=2
        )

    async def count(self, key: str) -> tuple[int, int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.ttl(key)
            raw, ttl = await pipe.execute()
        return (int(raw), max(int(ttl), 1)) if raw is not None else (0, 0)

    async def hit(self, key: str, window: int) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, window, nx=True)
            await pipe.execute()

    async def reset(self, key: str) -> None:
        await self._redis.delete(key)

    async def close(self) -> None:
        await self._redis.aclose()


class LoginThrottle:
    def __init__(self, counter: Counter, settings: Settings) -> None:
        self.counter = counter
        self.window = settings.login_window_seconds
        self.limits = {
            "account": settings.login_max_failures,
            "ip": settings.login_max_failures_per_ip,
        }

    async def check(self, email: str, ip: str) -> None:
        """Raise TooManyRequestsError while either budget is spent."""
        for kind, key in self._keys(email, ip):
            hits, retry_after = await self.counter.count(key)
            if hits >= self.limits[kind]:
                raise TooManyRequestsError(
                    TOO_MANY, headers={"Retry-After": str(retry_after)}
                )

    async def failed(self, email: str, ip: str) -> None:
        for _kind, key in self._keys(email, ip):
            await self.counter.hit(key, self.window)

    async def succeeded(self, email: str) -> None:
        await self.counter.reset(_account_key(email))

    def _keys(self, email: str, ip: str) -> tuple[tuple[str, str], tuple[str, str]]:
        return (("account", _account_key(email)), ("ip", f"login:ip:{ip}"))


def create_counter(settings: Settings) -> Counter:
    return RedisCounter(settings.redis_url) if settings.redis_url else MemoryCounter()


def _account_key(email: str) -> str:
    # Hashed so that Redis never holds the addresses themselves.
    digest = hashlib.sha256(
        email.strip().lower().encode("utf-8", "surrogatepass")
    ).hexdigest()
    return f"login:account:{digest}"
