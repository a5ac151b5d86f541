"""Werkzeug password hashes, computed on a bounded thread pool, never on the loop."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from werkzeug.security import check_password_hash, generate_password_hash

from service.errors import UnavailableError

T = TypeVar("T")
BUSY = "Too many password checks in progress; try again shortly"

# scrypt costs ~100 ms and 32 MiB per hash and releases the GIL: one thread per
# core uses every core without multiplying the memory like the default executor.
# A hash of a random, forgotten password, checked when an email is unknown so
# that the answer takes as long as for a wrong password.
DUMMY_HASH = (
    "scrypt:32768:8:1$mcKVhP1CU9MxW8rU$d32efc929e989671e69d452a2e90e948503989fa4404397d"
    "42b7f698a6bbf3dfc15505f1888d17b3b9c897d600e54aa923f84cd9ca114e90dbde8bdcb798cdf7"
)


CURRENT_METHOD = DUMMY_HASH.split("$", 1)[0]


def needs_rehash(password_hash: str) -> bool:
    """Older methods or weaker parameters than today's default (Flask-era pbkdf2)."""
    return password_hash.split("$", 1)[0] != CURRENT_METHOD


class PasswordHasher:
    """`queue` bounds the hashes waiting for a thread: past it the answer is 503
    with Retry-After at once, not a wait that grows with the crowd."""

    def __init__(
        self,
        threads: int,
        *,
        nice: int = 0,
        queue: int = 64,
        guard: Callable[[], None] | None = None,
    ) -> None:
        # Called before each hash: the web layer refuses routes with no limit.
        self.guard = guard
        self.threads = max(threads, 1)
        self.queue = queue
        self._pending = 0
        # A lower priority for the hashing threads keeps reads fast through a
        # login storm: the kernel runs the event loop first, logins take the rest.
        self._pool = ThreadPoolExecutor(
            max_workers=self.threads,
            thread_name_prefix="pwhash",
            initializer=_lower_priority,
            initargs=(nice,),
        )

    async def hash(self, password: str) -> str:
        return await self._run(generate_password_hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Check a password; with no hash, spend the same time on a dummy one."""
        stored = password_hash or DUMMY_HASH
        matches = await self._run(_safe_check, stored, password)
        return matches and password_hash is not None

    async def _run(self, work: Callable[..., T], *args: str) -> T:
        # Counted until the thread is done with it, even if the request that asked
        # went away: the queue holds work, not waiting requests.
        if self.guard is not None:
            self.guard()
        if self._pending >= self.threads + self.queue:
            raise UnavailableError(BUSY, headers={"Retry-After": "1"})
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, work, *args)
        self._pending += 1
        future.add_done_callback(self._done)
        return await future

    def _done(self, _future: asyncio.Future[Any]) -> None:
        self._pending -= 1

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _safe_check(password_hash: str, password: str) -> bool:
    # Werkzeug raises on hash methods it no longer knows (plain "sha256$...").
    try:
        return check_password_hash(password_hash, password)
    except ValueError:
        return False


def _lower_priority(nice: int) -> None:
    if nice > 0 and hasattr(os, "setpriority"):
        # On Linux PRIO_PROCESS with a thread id sets that thread's niceness.
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
