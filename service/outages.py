"""The one place that decides an error means "a backend cannot be reached" (503)."""

from __future__ import annotations

import asyncpg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, OperationalError


def is_unavailable(error: BaseException) -> bool:
    """The database or Redis cannot be reached: a 503, not a fault of ours."""
    if isinstance(
        error, OperationalError | OSError | RedisConnectionError | RedisTimeoutError
    ):
        return True
    if isinstance(error, DBAPIError):
        return error.connection_invalidated or _refused(error.orig)
    return is_connection_lost(error)


def is_connection_lost(error: BaseException) -> bool:
    """A driver-level error (asyncpg, unseen by SQLAlchemy) that ends the connection."""
    if isinstance(
        error,
        asyncpg.InterfaceError
        | asyncpg.exceptions.InternalClientError
        | asyncpg.PostgresConnectionError
        | OSError,
    ):
        return True
    return _refused(error)


def _refused(error: BaseException | None) -> bool:
    # asyncpg reports a refused connection as a plain error with a sqlstate:
    # connection exceptions (08), too many connections (53), shutting down or
    # starting up (57) and a database not accepting connections (55000).
    sqlstate = getattr(error, "sqlstate", None) or ""
    return sqlstate[:2] in ("08", "53", "57") or sqlstate == "55000"
