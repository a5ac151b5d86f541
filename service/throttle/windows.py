"""Per-route limits: requests per fixed window (registration, password-reset mail)."""

from __future__ import annotations

from service.errors import TooManyRequestsError
from service.throttle.keys import digest
from service.throttle.stores import Store


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
            f"limit:{self.name}:{digest(value)}", self.limit, self.window
        )
        if not allowed:
            raise TooManyRequestsError(
                message, headers={"Retry-After": str(retry_after)}
            )
