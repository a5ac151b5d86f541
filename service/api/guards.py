"""The JWT middleware, with flask-jwt-extended's names and meanings."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from functools import wraps
from typing import Any

from quart import current_app, request
from quart_schema import security_scheme

from service.api.deps import session_service, settings, user_service
from service.api.io import View, document_errors
from service.db.request import hot_connection
from service.errors import AuthError, ForbiddenError, InvalidTokenError
from service.models import SessionRecord, UserRecord, utcnow
from service.request_state import request_state
from service.security.tokens import Identity
from service.services.callers import Caller, identify

# flask-jwt-extended's answer to a stale token on a @jwt_required(fresh=True) route.
FRESH_REQUIRED = "Fresh token required"
# MFA_REQUIRED: admins' rights (admins, all), or every route but a few (all).
ADMIN_NEEDS_FACTOR = "Admin access requires a second factor"
SECOND_FACTOR_REQUIRED = "Second factor required"
WITHOUT_FACTOR_ATTR = "reachable_without_second_factor"
_EXPECTED = "Expected 'Authorization: Bearer <JWT>'"
# The OpenAPI security schemes: which token a route takes.
ACCESS_SCHEME = "bearer"
REFRESH_SCHEME = "refresh"


def jwt_required(refresh: bool = False) -> Callable[[View], View]:
    def decorator(view: View) -> View:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            await verify_jwt_in_request(refresh=refresh)
            return await view(*args, **kwargs)

        security_scheme([{REFRESH_SCHEME if refresh else ACCESS_SCHEME: []}])(wrapper)
        if not refresh:
            # MFA_REQUIRED=all: a session without a second factor reaches
            # only the routes marked @without_second_factor.
            document_errors(403)(wrapper)
        return document_errors(401, 422)(wrapper)

    return decorator


def fresh_required(view: View) -> View:
    """The caller's session was authenticated within FRESH_SESSION_SECONDS (a
    login, a second factor, POST /auth/fresh); under @jwt_required()."""

    @wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        await require_fresh()
        return await view(*args, **kwargs)

    return wrapper


async def require_fresh() -> None:
    """401 "Fresh token required" unless the caller's session is fresh: stale,
    or Flask-era (no session, never fresh)."""
    if not (await current_session()).is_fresh(utcnow()):
        raise AuthError(FRESH_REQUIRED, legacy_msg=True)


def without_second_factor(view: View) -> View:
    """A route a session without a second factor reaches under MFA_REQUIRED=all
    (the account, enrolment, sessions, logout): the innermost decorator."""
    setattr(view, WITHOUT_FACTOR_ATTR, True)
    return view


async def admin_rights_withheld() -> str | None:
    """Why the caller's admin rights do not count now (MFA_REQUIRED=admins or
    all, a session that used no second factor), or None."""
    if settings().mfa_required == "off":
        return None
    if (await current_session()).used_second_factor:
        return None
    return ADMIN_NEEDS_FACTOR


def admin_required(view: View) -> View:
    """Admin rights as the database has them now, not as the token remembers them
    (and, as MFA_REQUIRED says, from a session that used a second factor)."""

    @wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not (await get_current_user()).is_admin:
            raise ForbiddenError("Admin access required")
        if withheld := await admin_rights_withheld():
            raise ForbiddenError(withheld)
        return await view(*args, **kwargs)

    return document_errors(403)(wrapper)


def self_or_admin_required(param: str) -> Callable[[View], View]:
    """The caller is the route's `param` user or an admin; checked before the body."""

    def decorator(view: View) -> View:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if get_jwt_identity() != kwargs[param]:
                if not (await get_current_user()).is_admin:
                    raise ForbiddenError("Not authorized")
                # The admin override is an admin right.
                if withheld := await admin_rights_withheld():
                    raise ForbiddenError(withheld)
            return await view(*args, **kwargs)

        return document_errors(403)(wrapper)

    return decorator


async def verify_jwt_in_request(refresh: bool = False) -> Caller:
    token = _token_from_header(request.headers.get("Authorization", ""))
    current = settings()
    # With read replicas, the token check's query also reads the primary's WAL
    # position: the request's routable reads need no lookup of their own.
    read_position = bool(current.database_replica_urls)
    began = asyncio.get_running_loop().time()
    caller = await identify(
        token,
        "refresh" if refresh else "access",
        current,
        connect=hot_connection,
        read_position=read_position,
    )
    state = request_state()
    state.identity, state.user = caller.identity, caller.user
    state.auth_session = caller.session
    if caller.primary_position is not None:
        state.primary_position = (began, caller.primary_position)
    if not refresh and current.mfa_required == "all":
        await _require_second_factor()
    return caller


async def _require_second_factor() -> None:
    if (await current_session()).used_second_factor:
        return
    view = current_app.view_functions.get(request.endpoint or "")
    if not getattr(view, WITHOUT_FACTOR_ATTR, False):
        raise ForbiddenError(SECOND_FACTOR_REQUIRED)


def current_caller() -> Caller:
    return Caller(current_identity(), request_state().user)


def current_identity() -> Identity:
    identity = request_state().identity
    if identity is None:
        raise RuntimeError("no verified token: decorate the view with @jwt_required()")
    return identity


def get_jwt_identity() -> int:
    return current_identity().user_id


def get_jwt() -> dict[str, Any]:
    return current_identity().claims


async def get_current_user() -> UserRecord:
    """The caller's live row: read with the token check, or now (with revocation
    not checked, never in production)."""
    state = request_state()
    if state.user is None:
        state.user = await user_service(readonly=True).record(
            current_identity().user_id
        )
    return state.user


async def current_session() -> SessionRecord:
    """The caller's session as the token check read it (or now, with revocation
    not checked): its freshness and how its login was made."""
    state = request_state()
    if state.auth_session is None:
        identity = current_identity()
        state.auth_session = await session_service(readonly=True).record(
            identity.session_id, user_id=identity.user_id
        )
    return state.auth_session


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
