"""Errors the service raises on purpose, and how each becomes a JSON response.

AppError (500)
├── BadRequestError (400)
├── AuthError (401)            # token errors carry flask-jwt-extended's "msg" text too
├── ForbiddenError (403)
├── NotFoundError (404)
├── ConflictError (409)
├── TooManyRequestsError (429) # with Retry-After
├── InvalidTokenError (422)    # malformed token or wrong token type, as in Flask
└── UnavailableError (503)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from marshmallow import ValidationError
from quart import Quart, Response, jsonify
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

logger = logging.getLogger(__name__)


class AppError(Exception):
    status_code: ClassVar[int] = 500

    def __init__(
        self,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        legacy_msg: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})
        self.legacy_msg = legacy_msg

    def body(self) -> dict[str, Any]:
        if self.legacy_msg:
            return {"msg": self.message, "error": self.message}
        return {"error": self.message}


class BadRequestError(AppError):
    status_code = 400


class AuthError(AppError):
    status_code = 401


class ForbiddenError(AppError):
    status_code = 403


class NotFoundError(AppError):
    status_code = 404


class ConflictError(AppError):
    status_code = 409


class TooManyRequestsError(AppError):
    status_code = 429


class InvalidTokenError(AppError):
    status_code = 422


class UnavailableError(AppError):
    status_code = 503


def validation_error(field: str, message: str) -> ValidationError:
    return ValidationError({field: [message]})


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(AppError)
    async def handle_app_error(error: AppError) -> Response:
        return _json(error.body(), error.status_code, error.headers)

    @app.errorhandler(ValidationError)
    async def handle_validation_error(error: ValidationError) -> Response:
        return _json({"error": "Validation failed", "errors": error.messages}, 400)

    @app.errorhandler(HTTPException)
    async def handle_http_exception(error: HTTPException) -> Response:
        # Keep werkzeug's headers (Allow on a 405) but not its HTML content type.
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        return _json({"error": error.description}, error.code or 500, headers)

    @app.errorhandler(Exception)
    async def handle_unexpected(error: Exception) -> Response:
        if _is_backend_unavailable(error):
            logger.warning("backend unavailable: %r", error)
            return _json({"error": "Service unavailable"}, 503, {"Retry-After": "5"})
        logger.exception("unhandled error")
        return _json({"error": "Internal server error"}, 500)


def _json(
    body: dict[str, Any], status: int, headers: Mapping[str, str] | None = None
) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _is_backend_unavailable(error: Exception) -> bool:
    """The database or Redis cannot be reached: a 503, not a fault of ours."""
    if isinstance(
        error, OperationalError | OSError | RedisConnectionError | RedisTimeoutError
    ):
        return True
    if not isinstance(error, DBAPIError):
        return False
    # asyncpg reports a refused connection as a plain DBAPIError: connection
    # exceptions (08), too many connections (53), shutting down or starting up
    # (57) and a database not accepting connections (55000).
    sqlstate = getattr(error.orig, "sqlstate", None) or ""
    return (
        error.connection_invalidated
        or sqlstate[:2] in ("08", "53", "57")
        or sqlstate == "55000"
    )
