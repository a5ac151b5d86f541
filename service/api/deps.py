"""Typed access to what the app holds: settings, outbox, services, the client."""

from __future__ import annotations

from quart import Quart, current_app, request

from service.api.hashing import hasher
from service.config import Settings
from service.db.request import request_reads, request_session
from service.mail import Mailer, Outbox
from service.security.client_address import client_address
from service.security.password_policy import PasswordPolicy
from service.services.auth import AuthService, Client
from service.services.factors import FactorService
from service.services.passkeys import PasskeyService, RelyingParty
from service.services.posts import PostService
from service.services.sessions import SessionService
from service.services.users import UserService
from service.telemetry.tally import Tally
from service.throttle.lifecycle import app_challenges, app_throttle

SETTINGS_KEY = "settings"
OUTBOX_KEY = "outbox"
TALLY_KEY = "tally"
POLICY_KEY = "password_policy"


def init_app(app: Quart, settings: Settings) -> None:
    app.extensions[SETTINGS_KEY] = settings
    app.extensions[TALLY_KEY] = tally = Tally()
    app.extensions[OUTBOX_KEY] = box = Outbox(Mailer(settings), settings, tally)

    app.extensions[POLICY_KEY] = policy = PasswordPolicy(
        settings, on_miss=lambda: tally.add("pwned_passwords_misses")
    )

    @app.before_serving
    async def open_outbox() -> None:
        box.start()

    @app.after_serving
    async def close_outbox() -> None:
        await box.close()
        await policy.close()


def settings() -> Settings:
    value: Settings = current_app.extensions[SETTINGS_KEY]
    return value


def outbox() -> Outbox:
    """Where a route puts the mail it sends: delivered after the answer."""
    value: Outbox = current_app.extensions[OUTBOX_KEY]
    return value


def password_policy() -> PasswordPolicy | None:
    """The policy new passwords are checked against; None when only length counts."""
    value: PasswordPolicy = current_app.extensions[POLICY_KEY]
    return value if value.active else None


def tally() -> Tally:
    value: Tally = current_app.extensions[TALLY_KEY]
    return value


# `readonly`: a route that only shows. Its session is an autocommit one, and
# its display reads may go to a caught-up standby; once a request has a
# transactional session, its display reads run in that transaction instead.


def user_service(*, readonly: bool = False) -> UserService:
    return UserService(
        request_session(readonly=readonly),
        hasher(),
        reads=request_reads,
        policy=password_policy(),
    )


def post_service(*, readonly: bool = False) -> PostService:
    return PostService(request_session(readonly=readonly), reads=request_reads)


def session_service(*, readonly: bool = False) -> SessionService:
    return SessionService(request_session(readonly=readonly))


def auth_service() -> AuthService:
    return AuthService(
        request_session(),
        hasher(),
        settings(),
        app_throttle(current_app),
        policy=password_policy(),
    )


def factor_service() -> FactorService:
    return FactorService(request_session(), settings())


def passkey_service() -> PasskeyService:
    return PasskeyService(
        request_session(),
        RelyingParty.from_settings(settings()),
        app_challenges(current_app),
    )


def client() -> Client:
    return Client(ip=client_ip(), user_agent=request.headers.get("User-Agent"))


def client_ip() -> str | None:
    """The client's address: the socket's peer, or the client that trusted
    proxies forwarded for (service/security/client_address.py)."""
    forwarded = ", ".join(request.headers.getlist("X-Forwarded-For")) or None
    return client_address(request.remote_addr, forwarded, settings().trusted_proxies)
