"""Login throttling: failed attempts counted per account and per client IP.

Counters live in Redis when REDIS_URL is set, so every replica sees the same
budget; otherwise in this process's memory.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from typing import TYPE_CHECKING, Protocol

from service.config import Settings
from service.errors import TooManyRequestsError

if TYPE_CHECKING:
    from redis.asyncio import Redis

TOO_MANY = "Too many failed login attempts; try again later"


class Counter(Protocol):
    async def hit(self, key: str, window: int) -> tuple[int, int]:
        """Count one more in the key's window: the new count and seconds left."""
        ...

    async def forget(self, key: str) -> None: ...

    async def take_back(self, key: str) -> None: ...

    async def close(self) -> None: ...


class MemoryCounter:
    def __init__(self) -> None:
        self._windows: dict[str, tuple[int, float]] = {}

    async def hit(self, key: str, window: int) -> tuple[int, int]:
        # No await inside: atomic within the event loop.
        now = time.monotonic()
        hits, ends = self._windows.get(key, (0, 0.0))
        if ends <= now:
            hits, ends = 0, now + window
            if len(self._windows) > 10_000:
                self._forget_expired(now)
        self._windows[key] = (hits + 1, ends)
        return hits + 1, max(math.ceil(ends - now), 1)

    async def forget(self, key: str) -> None:
        self._windows.pop(key, None)

    async def take_back(self, key: str) -> None:
        hits, ends = self._windows.get(key, (0, 0.0))
        if hits > 1:
            self._windows[key] = (hits - 1, ends)
        else:
            self._windows.pop(key, None)

    async def close(self) -> None:
        self._windows.clear()

    def _forget_expired(self, now: float) -> None:
        for key in [k for k, (_, ends) in self._windows.items() if ends <= now]:
            del self._windows[key]


class RedisCounter:
    def __init__(self, url: str) -> None:
        # Imported only with REDIS_URL set: the client weighs ~20 MiB per worker.
        from redis.asyncio import Redis

        self._redis: Redis = Redis.from_url(
            url, socket_timeout=2, socket_connect_timeout=2
        )

    async def hit(self, key: str, window: int) -> tuple[int, int]:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, window, nx=True)
            pipe.ttl(key)
            hits, _, ttl = await pipe.execute()
        return int(hits), max(int(ttl), 1)

    async def forget(self, key: str) -> None:
        await self._redis.delete(key)

    async def take_back(self, key: str) -> None:
        await self._redis.decr(key)

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

    async def attempt(self, email: str, ip: str) -> None:
        """Count this attempt before the password is checked; 429 past either budget.

        Counting first (one atomic increment) means a burst of concurrent
        guesses cannot all pass a check before any failure is recorded.
        """
        for kind, key in self._keys(email, ip):
            hits, retry_after = await self.counter.hit(key, self.window)
            if hits > self.limits[kind]:
                raise TooManyRequestsError(
                    TOO_MANY, headers={"Retry-After": str(retry_after)}
                )

    async def succeeded(self, email: str, ip: str) -> None:
        """A right password: the account's budget is whole again, the attempt not held
        against the IP."""
        await self.counter.forget(account_key(email))
        await self.counter.take_back(ip_key(ip))

    def _keys(self, email: str, ip: str) -> tuple[tuple[str, str], tuple[str, str]]:
        return (("account", account_key(email)), ("ip", ip_key(ip)))


def create_counter(settings: Settings) -> Counter:
    return RedisCounter(settings.redis_url) if settings.redis_url else MemoryCounter()


def account_key(email: str) -> str:
    # Hashed so that Redis never holds the addresses themselves.
    digest = hashlib.sha256(
        email.strip().lower().encode("utf-8", "surrogatepass")
    ).hexdigest()
    return f"login:account:{digest}"


def ip_key(ip: str) -> str:
    # One IPv6 client usually holds a whole /64: budget it as one address.
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return f"login:ip:{ip}"
    if address.version == 6:
        return f"login:ip:{ipaddress.ip_network(f'{address}/64', strict=False)}"
    return f"login:ip:{address}"
