"""Each route that hashes a password or sends mail declares its limit.

`@limited(...)` names the budgets a route spends (tozo declares its rate limits
the same way); the budgets live in the throttle's store, Redis when REDIS_URL is
set, so replicas share them. The login budget is spent inside AuthService, where
the outcome of the password check is known; its routes declare it all the same.

The hasher refuses to work for a request whose route declares no limit
(`require_declared`), so a new route that hashes cannot ship without one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from quart import current_app, has_request_context, request

from service.api.deps import client_ip, settings
from service.api.io import View, document_errors
from service.security.client_address import client_key
from service.throttle.keys import fold_email
from service.throttle.lifecycle import app_throttle
from service.throttle.windows import RouteLimit

LIMITS_ATTR = "route_limits"
TOO_MANY = "Too many requests; try again later"


@dataclass(frozen=True, slots=True)
class Limit:
    """A budget: its name, the setting that sizes it, and whose it is."""

    name: str
    setting: str
    # The budget's owner from the view's keyword arguments: the client or a field.
    owner: Callable[[dict[str, Any]], str]


def per_client(name: str, setting: str) -> Limit:
    # The login throttle's key too: an IPv6 client is its /64.
    return Limit(name, setting, lambda _kwargs: client_key(client_ip()))


def per_email(name: str, setting: str) -> Limit:
    return Limit(name, setting, lambda kwargs: fold_email(kwargs["data"]["email"]))


# Spent by AuthService on each failed password check (LOGIN_MAX_FAILURES...).
LOGIN_BUDGET = Limit("login", "login_max_failures", lambda _kwargs: "")
REGISTRATION = per_client("registration", "registration_max_per_ip")
RESET_MAIL_PER_ADDRESS = per_email("reset-mail", "password_reset_max_per_address")
RESET_MAIL_PER_CLIENT = per_client("reset-mail-client", "password_reset_max_per_ip")
RESET_PER_CLIENT = per_client("reset-client", "password_reset_max_per_ip")


def limited(*limits: Limit) -> Callable[[View], View]:
    """Spend one unit of each budget before the view runs; 429 past any of them.

    Below @body, so that a budget can be owned by a field of the body.
    """

    def decorator(view: View) -> View:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            config = settings()
            throttle = app_throttle(current_app)
            for limit in limits:
                if limit is LOGIN_BUDGET:
                    continue
                await RouteLimit(
                    throttle.store,
                    limit.name,
                    getattr(config, limit.setting),
                    config.rate_limit_window_seconds,
                ).hit(limit.owner(kwargs), TOO_MANY)
            return await view(*args, **kwargs)

        setattr(wrapper, LIMITS_ATTR, limits)
        return document_errors(429)(wrapper)

    return decorator


def declared_limits(view: Any) -> tuple[Limit, ...]:
    """The limits a view declares, through any decorators wrapped around it."""
    while view is not None:
        found: tuple[Limit, ...] | None = getattr(view, LIMITS_ATTR, None)
        if found is not None:
            return found
        view = getattr(view, "__wrapped__", None)
    return ()


def require_declared() -> None:
    """Called by the hasher before each hash: outside requests (the CLI) free."""
    if not has_request_context() or request.endpoint is None:
        return
    view = current_app.view_functions.get(request.endpoint)
    if not declared_limits(view):
        raise RuntimeError(
            f"{request.endpoint} hashes a password but declares no @limited budget"
        )
