"""Login throttling and per-route limits, in Redis (shared by replicas) or in memory.

The login throttle charges failures, not attempts. A guess being checked holds one
unit of its account's and its address's budgets, so a burst of concurrent guesses
can never exceed them; a later attempt that finds the budget fully held waits a
few seconds for the guesses in flight to resolve instead of being refused. Only
failures that really happened make an account or an address answer 429.

Per-route limits (registration, password-reset mail) count requests in a fixed
window.

Both stores do the same thing: RedisStore in Lua scripts (each one atomic, every
key written with a TTL), MemoryStore in plain code with no await in between (atomic
on the event loop), in a capped LRU.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import ipaddress
import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from service.config import ConfigError, Settings
from service.errors import TooManyRequestsError

if TYPE_CHECKING:
    from redis.asyncio import Redis

TOO_MANY = "Too many failed login attempts; try again later"
# Scripts read the server's clock (TIME) before they write; Redis replicates them
# by their effects, the only mode from 7.0 on. Valkey reports redis_version 7.2.4.
MIN_REDIS_VERSION = (7, 0)
# The longest a guess can hold budget if its process dies before settling it.
HOLD_SECONDS = 30.0
# An attempt that finds the whole budget held waits while the guesses in flight
# resolve: up to WAIT_SECONDS with none resolving, HOLD_SECONDS in all.
WAIT_SECONDS = 5.0
# Memory store: the most counters it keeps; the least recently used go first.
MEMORY_MAX_KEYS = 50_000
_HOLD_MS = int(HOLD_SECONDS * 1000)
# The name operators filter the log on, from before the move to this module.
logger = logging.getLogger("service.throttle")


class Verdict(enum.Enum):
    HELD = "held"  # one unit of budget is this guess's until it settles
    BUSY = "busy"  # guesses in flight hold the rest of the budget: wait
    SPENT = "spent"  # failures spent the budget: 429


class Store(Protocol):
    async def hold(self, key: str, limit: int, hold_id: str) -> tuple[Verdict, int]:
        """Reserve a unit of `key`'s budget. With SPENT, the seconds until it
        returns; with BUSY, how many holds have settled so far (progress)."""
        ...

    async def fail(self, key: str, hold_id: str, window: int) -> None:
        """The held guess failed: one more failure in the window, the hold released."""
        ...

    async def release(self, key: str, hold_id: str, *, forget: bool = False) -> None:
        """The guess settled without a failure; `forget` also clears the failures."""
        ...

    async def hit(self, key: str, limit: int, window: int) -> tuple[bool, int]:
        """Count one request: whether it is within `limit`, and seconds left."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class _Entry:
    count: int = 0
    expires_at: float = 0.0
    # hold id -> deadline: only guesses in flight, never more than the concurrency.
    holds: dict[str, float] = field(default_factory=dict)
    settled: int = 0


class MemoryStore:
    """One process's counters in a capped LRU; expired entries are dropped as met."""

    def __init__(self, max_keys: int = MEMORY_MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, key: str, now: float) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            self._evict(now)
            entry = self._entries[key] = _Entry()
        else:
            self._entries.move_to_end(key)
        if entry.count and entry.expires_at <= now:
            entry.count = 0
        for hold_id in [h for h, deadline in entry.holds.items() if deadline <= now]:
            del entry.holds[hold_id]
        return entry

    def _evict(self, now: float) -> None:
        # Expired entries at the old end go for free (O(1) each, amortized); at
        # the cap the least recently used goes too, unless a guess still holds it.
        for _ in range(len(self._entries)):
            key, oldest = next(iter(self._entries.items()))
            full = len(self._entries) >= self.max_keys
            if oldest.holds:
                if not full:
                    return
                self._entries.move_to_end(key)
                continue
            if not full and oldest.expires_at > now:
                return
            del self._entries[key]

    def _drop_if_empty(self, key: str, entry: _Entry, now: float) -> None:
        if not entry.holds and (entry.count == 0 or entry.expires_at <= now):
            self._entries.pop(key, None)

    async def hold(self, key: str, limit: int, hold_id: str) -> tuple[Verdict, int]:
        now = time.monotonic()
        entry = self._entry(key, now)
        if entry.count >= limit:
            return Verdict.SPENT, _seconds(entry.expires_at - now)
        if entry.count + len(entry.holds) >= limit:
            return Verdict.BUSY, entry.settled
        entry.holds[hold_id] = now + HOLD_SECONDS
        return Verdict.HELD, 0

    async def fail(self, key: str, hold_id: str, window: int) -> None:
        now = time.monotonic()
        entry = self._entry(key, now)
        if entry.holds.pop(hold_id, None) is not None:
            entry.settled += 1
        if entry.count == 0:
            entry.expires_at = now + window
        entry.count += 1

    async def release(self, key: str, hold_id: str, *, forget: bool = False) -> None:
        now = time.monotonic()
        entry = self._entry(key, now)
        if entry.holds.pop(hold_id, None) is not None:
            entry.settled += 1
        if forget:
            entry.count = 0
        self._drop_if_empty(key, entry, now)

    async def hit(self, key: str, limit: int, window: int) -> tuple[bool, int]:
        now = time.monotonic()
        entry = self._entry(key, now)
        if entry.count == 0:
            entry.expires_at = now + window
        if entry.count < limit:
            entry.count += 1
            return True, _seconds(entry.expires_at - now)
        return False, _seconds(entry.expires_at - now)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()


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
        return verdict, _seconds(int(ttl_ms) / 1000)

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
        return bool(allowed), _seconds(int(ttl_ms) / 1000)

    async def close(self) -> None:
        await self._redis.aclose()


def create_store(settings: Settings) -> Store:
    if settings.redis_url:
        return RedisStore(settings.redis_url, settings.redis_key_prefix)
    return MemoryStore()


class LoginThrottle:
    def __init__(
        self, store: Store, settings: Settings, *, wait_seconds: float = WAIT_SECONDS
    ) -> None:
        self.store = store
        self.window = settings.login_window_seconds
        self.account_limit = settings.login_max_failures
        self.ip_limit = settings.login_max_failures_per_ip
        self.wait_seconds = wait_seconds

    @asynccontextmanager
    async def guess(self, email: str, ip: str) -> AsyncIterator[Guess]:
        """One password guess for `email` from `ip`, settled on the way out.

        The address comes first: one that spent its budget is refused before its
        attempt can hold or charge anyone's account.
        """
        guess = Guess(self)
        try:
            await guess.hold(ip_key(ip), self.ip_limit)
            await guess.hold(account_key(email), self.account_limit, account=True)
            yield guess
        finally:
            # Settled even when the request is cancelled mid-check.
            await asyncio.shield(guess.settle())

    async def hold_until(self, key: str, limit: int, hold_id: str) -> None:
        """Hold a unit of `key`'s budget: 429 when failures spent it, or when the
        guesses in flight that hold all of it stop resolving or take too long."""
        started = progressed = time.monotonic()
        seen: int | None = None
        pause = 0.02
        while True:
            verdict, detail = await self.store.hold(key, limit, hold_id)
            if verdict is Verdict.HELD:
                return
            now = time.monotonic()
            if verdict is Verdict.BUSY and detail != seen:
                seen, progressed = detail, now
            if (
                verdict is Verdict.SPENT
                or now - progressed + pause > self.wait_seconds
                or now - started + pause > HOLD_SECONDS
            ):
                retry_after = detail if verdict is Verdict.SPENT else 1
                raise TooManyRequestsError(
                    TOO_MANY, headers={"Retry-After": str(retry_after)}
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)


class Outcome(enum.Enum):
    UNKNOWN = "unknown"
    FAILED = "failed"
    SUCCEEDED = "succeeded"


class Guess:
    """The budget one login attempt holds, and what it costs once it is known."""

    def __init__(self, throttle: LoginThrottle) -> None:
        self.throttle = throttle
        self.id = uuid.uuid4().hex
        self.held: list[tuple[str, bool]] = []
        self.outcome = Outcome.UNKNOWN

    async def hold(self, key: str, limit: int, *, account: bool = False) -> None:
        await self.throttle.hold_until(key, limit, self.id)
        self.held.append((key, account))

    def failed(self) -> None:
        self.outcome = Outcome.FAILED

    def succeeded(self) -> None:
        self.outcome = Outcome.SUCCEEDED

    async def settle(self) -> None:
        store, held, self.held = self.throttle.store, self.held, []
        for key, account in held:
            if self.outcome is Outcome.FAILED:
                await store.fail(key, self.id, self.throttle.window)
            else:
                # A right password gives its account the budget back; the
                # address keeps the failures it made elsewhere. Anything else
                # (an error, a cancelled request) only lets go of the hold.
                forget = self.outcome is Outcome.SUCCEEDED and account
                await store.release(key, self.id, forget=forget)


class RouteLimit:
    """A fixed-window request budget for one route and one kind of key."""

    def __init__(self, store: Store, name: str, limit: int, window: int) -> None:
        self.store = store
        self.name = name
        self.limit = limit
        self.window = window

    async def hit(self, value: str, message: str) -> None:
        if self.limit <= 0:
            return
        allowed, retry_after = await self.store.hit(
            f"limit:{self.name}:{_digest(value)}", self.limit, self.window
        )
        if not allowed:
            raise TooManyRequestsError(
                message, headers={"Retry-After": str(retry_after)}
            )


def fold_email(email: str) -> str:
    """What PostgreSQL's lower() makes of an address (glibc/C.UTF-8 towlower: one
    code point at a time), which is how the login lookup compares it."""
    return "".join(_fold_char(char) for char in email.strip())


def _fold_char(char: str) -> str:
    lowered = char.lower()
    # str.lower() applies full case mapping; towlower the simple one. They differ
    # only where the full mapping is longer: U+0130 (İ) lowers to i + U+0307.
    if len(lowered) == 1:
        return lowered
    return "i" if char == "\u0130" else char


def account_key(email: str) -> str:
    """The address folded as the login lookup folds it, so that every spelling of
    one account shares its budget; hashed so that Redis never holds it."""
    return f"login:account:{_digest(fold_email(email))}"


def ip_key(ip: str) -> str:
    # One IPv6 client usually holds a whole /64: budget it as one address.
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return f"login:ip:{_digest(ip)}"
    if address.version == 6:
        return f"login:ip:{ipaddress.ip_network(f'{address}/64', strict=False)}"
    return f"login:ip:{address}"


def require_redis_version(version: str) -> None:
    """Valkey answers with the Redis version it is compatible with (7.2.4)."""
    parts = []
    for part in version.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    if tuple(parts) < MIN_REDIS_VERSION:
        wanted = ".".join(map(str, MIN_REDIS_VERSION))
        raise ConfigError(f"REDIS_URL: Redis {version} is older than {wanted}")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _seconds(remaining: float) -> int:
    # Less a microsecond: (now + window) - now can come back a hair over window.
    return max(math.ceil(remaining - 1e-6), 1)
