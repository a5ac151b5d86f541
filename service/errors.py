"""Errors the service raises on purpose; service/api/error_handlers.py answers them.

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

from collections.abc import Mapping
from typing import Any, ClassVar

from marshmallow import ValidationError


class AppError(Exception):
    status_code: ClassVar[int] = 500

    def __init_subclass__(cls, *, status: int | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status_code = status

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


class BadRequestError(AppError, status=400): ...


class AuthError(AppError, status=401): ...


class ForbiddenError(AppError, status=403): ...


class NotFoundError(AppError, status=404): ...


class ConflictError(AppError, status=409): ...


class TooManyRequestsError(AppError, status=429): ...


class InvalidTokenError(AppError, status=422): ...


class UnavailableError(AppError, status=503): ...


def validation_error(field: str, message: str) -> ValidationError:
    return ValidationError({field: [message]})
