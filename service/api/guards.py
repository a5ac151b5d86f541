"""The JWT middleware, with flask-jwt-extended's names and meanings."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps
from typing import Any

from quart import g, request

from service.api.deps import settings
from service.api.io import View
from service.errors import AuthError, ForbiddenError, InvalidTokenError
from service.security.tokens import Identity, TokenType, decode_token

_EXPECTED = "Expected 'Authorization: Bearer <JWT>'"


def jwt_required(refresh: bool = False) -> Callable[[View], View]:
    def decorator(view: View) -> View:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            verify_jwt_in_request(refresh=refresh)
            return await view(*args, **kwargs)

        wrapper.__dict__.setdefault("_api", {})["auth"] = (
            "refresh" if refresh else "access"
        )
        return wrapper

    return decorator


def admin_required(view: View) -> View:
    @wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_identity().is_admin:
            raise ForbiddenError("Admin access required")
        return await view(*args, **kwargs)

    return wrapper


def roles_required(*roles: str) -> Callable[[View], View]:
    def decorator(view: View) -> View:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if get_jwt().get("role", "user") not in roles:
                raise ForbiddenError("Insufficient permissions")
            return await view(*args, **kwargs)

        return wrapper

    return decorator


def self_or_admin_required(param: str) -> Callable[[View], View]:
    """The caller is the route's `param` user or an admin; checked before the body."""

    def decorator(view: View) -> View:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            identity = current_identity()
            if identity.user_id != kwargs[param] and not identity.is_admin:
                raise ForbiddenError("Not authorized")
            return await view(*args, **kwargs)

        return wrapper

    return decorator


def verify_jwt_in_request(refresh: bool = False) -> Identity:
    expected: TokenType = "refresh" if refresh else "access"
    cached: Identity | None = g.get("identity")
    if cached is not None and cached.token_type == expected:
        return cached
    token = _token_from_header(request.headers.get("Authorization", ""))
    identity = decode_token(
        token, key=settings().jwt_secret_key, expected_type=expected
    )
    g.identity = identity
    return identity


def current_identity() -> Identity:
    identity: Identity | None = g.get("identity")
    return identity if identity is not None else verify_jwt_in_request()


def get_jwt_identity() -> int:
    return current_identity().user_id


def get_jwt() -> dict[str, Any]:
    return current_identity().claims


def _token_from_header(header: str) -> str:
    # flask-jwt-extended's parser: comma-separated schemes, case-sensitive "Bearer".
    value = header.strip().strip(",")
    if not value:
        raise AuthError("Missing Authorization Header", legacy_msg=True)
    bearer = [
        part for part in re.split(r",\s*", value) if part.split()[:1] == ["Bearer"]
    ]
    if len(bearer) != 1:
        raise AuthError(
            f"Missing 'Bearer' type in 'Authorization' header. {_EXPECTED}",
            legacy_msg=True,
        )
    words = bearer[0].split()
    if len(words) != 2:
        raise InvalidTokenError(
            f"Bad Authorization header. {_EXPECTED}", legacy_msg=True
        )
    return words[1]
