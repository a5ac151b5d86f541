"""Where budgets are counted: in memory, or in Redis (redis_store.py), shared by
replicas.

Both stores do the same thing: RedisStore in Lua scripts (each one atomic, every
key written with a TTL), MemoryStore in plain code with no await in between (atomic
on the event loop), in a capped LRU.
"""

from __future__ import annotations

import enum
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

# The longest a guess can hold budget if its process dies before settling it.
HOLD_SECONDS = 30.0
# Memory store: the most counters it keeps; the least recently used go first.
MEMORY_MAX_KEYS = 50_000


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
        self._entries.clear()


def seconds_left(remaining: float) -> int:
    # Less a microsecond: (now + window) - now can come back a hair over window.
    return max(math.ceil(remaining - 1e-6), 1)
