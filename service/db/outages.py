"""The one place that decides an error means "a backend cannot be reached" (503)."""

from __future__ import annotations

import sys

import asyncpg
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError


def is_unavailable(error: BaseException) -> bool:
    """The database or Redis cannot be reached: a 503, not a fault of ours."""
    # A pool checkout that timed out: every connection is busy, try again soon.
    if isinstance(
        error, OperationalError | OSError | PoolTimeoutError
    ) or _redis_unreachable(error):
        return True
    if isinstance(error, DBAPIError):
        return error.connection_invalidated or _refused(error.orig)
    return is_connection_lost(error)


def _redis_unreachable(error: BaseException) -> bool:
    # Only the Redis client raises these, and it is loaded only with REDIS_URL.
    redis = sys.modules.get("redis.exceptions")
    return redis is not None and isinstance(
        error, redis.ConnectionError | redis.TimeoutError
    )


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
