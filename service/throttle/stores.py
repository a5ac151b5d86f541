"""Where budgets are counted: in memory, or in Redis (redis_store.py), shared by
replicas.

Both stores do the same thing: RedisStore in Lua scripts (each one atomic, every
key written with a TTL), MemoryStore in plain code with no await in between (atomic
on the event loop), in capped pools, one per kind of counter.
"""

from __future__ import annotations

import enum
import itertools
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

# The longest a guess can hold budget if its process dies before settling it.
HOLD_SECONDS = 30.0
# Memory store: the most counters each of its pools keeps (see _Pool).
MEMORY_MAX_KEYS = 50_000
EVICTION_SCAN = 64
# Where keys.py's keys go: account failures, client failures, route limits.
ACCOUNT_PREFIX = "login:account:"
CLIENT_PREFIX = "login:ip:"


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


class _Pool:
    """One kind of counters in a capped LRU; expired entries are dropped as met.

    At the cap, the entry that goes is, among the least recently used
    EVICTION_SCAN, the one with the fewest failures (the oldest of those): a
    counter that failures ran up outlives any number of fresh ones, and an entry
    a guess still holds is never dropped.
    """

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        self.entries: OrderedDict[str, _Entry] = OrderedDict()

    def entry(self, key: str, now: float) -> _Entry:
        entry = self.entries.get(key)
        if entry is None:
            self._evict(now)
            entry = self.entries[key] = _Entry()
        else:
            self.entries.move_to_end(key)
        if entry.count and entry.expires_at <= now:
            entry.count = 0
        for hold_id in [h for h, deadline in entry.holds.items() if deadline <= now]:
            del entry.holds[hold_id]
        return entry

    def _evict(self, now: float) -> None:
        # Expired entries at the old end go for free (O(1) each, amortized).
        while self.entries:
            key, oldest = next(iter(self.entries.items()))
            if oldest.holds or oldest.expires_at > now:
                break
            del self.entries[key]
        if len(self.entries) < self.max_keys:
            return
        victim: str | None = None
        fewest = 0
        for key, entry in itertools.islice(self.entries.items(), EVICTION_SCAN):
            if entry.holds:
                continue
            count = entry.count if entry.expires_at > now else 0
            if victim is None or count < fewest:
                victim, fewest = key, count
        if victim is None:
            # Every scanned entry is held by a guess in flight: the pool grows
            # past its cap by at most the guesses in flight, and shrinks again.
            return
        del self.entries[victim]

    def drop_if_empty(self, key: str, entry: _Entry, now: float) -> None:
        if not entry.holds and (entry.count == 0 or entry.expires_at <= now):
            self.entries.pop(key, None)


class MemoryStore:
    """One process's counters, each kind in its own capped pool.

    Failed logins per account, per client and the route limits are counted in
    separate pools of `max_keys` each: no amount of traffic with fresh emails
    (reset mail, registrations) or fresh addresses can push an account's
    failure counter out, and memory stays bounded (three pools).
    """

    def __init__(self, max_keys: int = MEMORY_MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._accounts = _Pool(max_keys)
        self._clients = _Pool(max_keys)
        self._routes = _Pool(max_keys)

    def __len__(self) -> int:
        return sum(len(pool.entries) for pool in self._pools())

    def _pools(self) -> tuple[_Pool, _Pool, _Pool]:
        return self._accounts, self._clients, self._routes

    def _pool(self, key: str) -> _Pool:
        if key.startswith(ACCOUNT_PREFIX):
            return self._accounts
        if key.startswith(CLIENT_PREFIX):
            return self._clients
        return self._routes

    def _entry(self, key: str, now: float) -> _Entry:
        return self._pool(key).entry(key, now)

    def _drop_if_empty(self, key: str, entry: _Entry, now: float) -> None:
        self._pool(key).drop_if_empty(key, entry, now)

    async def hold(self, key: str, limit: int, hold_id: str) -> tuple[Verdict, int]:
        now = time.monotonic()
        entry = self._entry(key, now)
        if entry.count >= limit:
            return Verdict.SPENT, seconds_left(entry.expires_at - now)
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
            return True, seconds_left(entry.expires_at - now)
        return False, seconds_left(entry.expires_at - now)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for pool in self._pools():
            pool.entries.clear()


def seconds_left(remaining: float) -> int:
    # Less a microsecond: (now + window) - now can come back a hair over window.
    return max(math.ceil(remaining - 1e-6), 1)
