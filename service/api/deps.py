"""Typed access to what the app holds: settings, hasher, throttle, services, client."""

from __future__ import annotations

import ipaddress
from functools import lru_cache, partial

from quart import current_app, request

from service.config import Settings
from service.db.request import (
    hot_connection,
    read_connection,
    request_reads,
    request_session,
)
from service.mail import Mailer
from service.security.passwords import PasswordHasher
from service.services.auth import AuthService, Client
from service.services.posts import PostService
from service.services.sessions import SessionService
from service.services.users import UserService
from service.throttle.login import LoginThrottle

SETTINGS_KEY = "settings"
HASHER_KEY = "password_hasher"
THROTTLE_KEY = "login_throttle"
MAILER_KEY = "mailer"


def settings() -> Settings:
    value: Settings = current_app.extensions[SETTINGS_KEY]
    return value


def hasher() -> PasswordHasher:
    value: PasswordHasher = current_app.extensions[HASHER_KEY]
    return value


def mailer() -> Mailer:
    value: Mailer = current_app.extensions[MAILER_KEY]
    return value


def user_service(*, readonly: bool = False) -> UserService:
    # Plain-record reads (token checks, lists, one user) always take a pooled
    # read connection; `readonly` picks the session for the ORM ones, and
    # lets the reads that decide nothing go to a caught-up standby.
    return UserService(
        partial(request_session, readonly=readonly),
        hasher(),
        reads=read_connection,
        checks=hot_connection,
        display=request_reads() if readonly else None,
    )


def post_service(*, readonly: bool = False) -> PostService:
    # `readonly`: its reads decide nothing, and may go to a caught-up standby.
    return PostService(
        request_session(readonly=readonly),
        reads=request_reads() if readonly else None,
    )


def session_service(*, readonly: bool = False) -> SessionService:
    return SessionService(request_session(readonly=readonly))


def auth_service() -> AuthService:
    throttle: LoginThrottle | None = current_app.extensions.get(THROTTLE_KEY)
    return AuthService(request_session(), hasher(), settings(), throttle)


def client() -> Client:
    return Client(ip=client_ip(), user_agent=request.headers.get("User-Agent"))


def client_ip() -> str | None:
    """The socket's peer, or the last X-Forwarded-For hop a trusted proxy added."""
    remote = request.remote_addr
    proxies = _networks(settings().trusted_proxies)
    if not proxies or not _is_trusted(remote, proxies):
        return remote
    hops = [
        hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")
    ]
    # Walk back from the nearest hop: entries left of an untrusted one are the
    # client's own claims and could be forged.
    for hop in reversed([hop for hop in hops if hop]):
        if not _is_trusted(hop, proxies):
            return hop[:45]
    return remote


@lru_cache(maxsize=8)
def _networks(
    proxies: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def _is_trusted(
    address: str | None,
    proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in proxies)
