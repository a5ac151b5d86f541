"""The login throttle: failures, not attempts, spend an account's and an address's
budget.

A guess being checked holds one unit of its account's and its address's budgets,
so a burst of concurrent guesses can never exceed them; a later attempt that finds
the budget fully held waits a few seconds for the guesses in flight to resolve
instead of being refused. Only failures that really happened make an account or an
address answer 429.
"""

from __future__ import annotations

import asyncio
import enum
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from service.config import Settings
from service.errors import TooManyRequestsError
from service.throttle.keys import account_key, ip_key
from service.throttle.stores import HOLD_SECONDS, Store, Verdict

TOO_MANY = "Too many failed login attempts; try again later"
# An attempt that finds the whole budget held waits while the guesses in flight
# resolve: up to WAIT_SECONDS with none resolving, HOLD_SECONDS in all.
WAIT_SECONDS = 5.0


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
