"""The Redis store: each operation one atomic Lua script, every key with a TTL."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from service.config import ConfigError
from service.throttle.stores import HOLD_SECONDS, Verdict, seconds_left

if TYPE_CHECKING:
    from redis.asyncio import Redis

# Scripts read the server's clock (TIME) before they write; Redis replicates them
# by their effects, the only mode from 7.0 on. Valkey reports redis_version 7.2.4.
MIN_REDIS_VERSION = (7, 0)
_HOLD_MS = int(HOLD_SECONDS * 1000)
# The name operators filter the log on, from before the move to this module.
logger = logging.getLogger("service.throttle")


# KEYS[1] failures (a counter), KEYS[2] holds (a sorted set: hold id by deadline).
_TIME = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""
_HOLD = (
    _TIME
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local failures = tonumber(redis.call('GET', KEYS[1]) or '0')
local limit = tonumber(ARGV[1])
if failures >= limit then
  return {2, redis.call('PTTL', KEYS[1])}
end
if failures + redis.call('ZCARD', KEYS[2]) >= limit then
  return {1, tonumber(redis.call('GET', KEYS[3]) or '0')}
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {0, 0}
"""
)
# KEYS[3] counts settled holds (progress a waiting attempt can see).
_SETTLED = """
if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then
  redis.call('INCR', KEYS[3])
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
end
"""
_FAIL = (
    _SETTLED
    + """
local failures = redis.call('INCR', KEYS[1])
if failures == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return failures
"""
)
_RELEASE = (
    _SETTLED
    + """
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1])
end
return 0
"""
)
_HIT = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= tonumber(ARGV[1]) then
  return {0, redis.call('PTTL', KEYS[1])}
end
count = redis.call('INCR', KEYS[1])
if count == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {1, redis.call('PTTL', KEYS[1])}
"""


class RedisStore:
    """Counters every replica shares; each operation is one atomic script."""

    def __init__(self, url: str, prefix: str = "") -> None:
        self.prefix = prefix
        # Imported only with REDIS_URL set: the client weighs ~20 MiB per worker.
        from redis.asyncio import Redis

        self._redis: Redis = Redis.from_url(
            url, socket_timeout=2, socket_connect_timeout=2
        )
        self._hold = self._redis.register_script(_HOLD)
        self._fail = self._redis.register_script(_FAIL)
        self._release = self._redis.register_script(_RELEASE)
        self._hit = self._redis.register_script(_HIT)
        self.version_checked = False

    def _keys(self, key: str) -> list[str]:
        name = f"{self.prefix}{key}"
        return [name, f"{name}:holds", f"{name}:settled"]

    async def start(self) -> None:
        """Refuse a server too old for the scripts; an unreachable one is checked
        at its first use instead, so that the service starts and answers 503."""
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        try:
            await self._check_version()
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            logger.warning("Redis unreachable at start, checked later: %r", error)

    async def _check_version(self) -> None:
        if self.version_checked:
            return
        info: dict[str, Any] = await self._redis.info("server")
        require_redis_version(str(info.get("redis_version", "0")))
        self.version_checked = True

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        await self._check_version()
        return await script(keys=keys, args=args)

    async def hold(self, key: str, limit: int, hold_id: str) -> tuple[Verdict, int]:
        code, ttl_ms = await self._run(
            self._hold, self._keys(key), [limit, _HOLD_MS, hold_id]
        )
        verdict = (Verdict.HELD, Verdict.BUSY, Verdict.SPENT)[int(code)]
        if verdict is Verdict.BUSY:
            return verdict, int(ttl_ms)
        return verdict, seconds_left(int(ttl_ms) / 1000)

    async def fail(self, key: str, hold_id: str, window: int) -> None:
        await self._run(self._fail, self._keys(key), [hold_id, window * 1000, _HOLD_MS])

    async def release(self, key: str, hold_id: str, *, forget: bool = False) -> None:
        await self._run(
            self._release,
            self._keys(key),
            [hold_id, "1" if forget else "0", _HOLD_MS],
        )

    async def hit(self, key: str, limit: int, window: int) -> tuple[bool, int]:
        allowed, ttl_ms = await self._run(
            self._hit, self._keys(key)[:1], [limit, window * 1000]
        )
        return bool(allowed), seconds_left(int(ttl_ms) / 1000)

    async def close(self) -> None:
        await self._redis.aclose()


def require_redis_version(version: str) -> None:
    """Valkey answers with the Redis version it is compatible with (7.2.4)."""
    parts = []
    for part in version.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    if tuple(parts) < MIN_REDIS_VERSION:
        wanted = ".".join(map(str, MIN_REDIS_VERSION))
        raise ConfigError(f"REDIS_URL: Redis {version} is older than {wanted}")
