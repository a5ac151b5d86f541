"""The composition root: create_app() wires every part of the service."""

from __future__ import annotations

from quart import Quart
from quart.sessions import SecureCookieSessionInterface, SessionMixin
from quart.wrappers import BaseRequestWebsocket

from service import api, cli
from service.api import error_handlers, headers, health, limits, openapi, swagger_ui
from service.api.deps import HASHER_KEY, MAILER_KEY, SETTINGS_KEY, THROTTLE_KEY
from service.config import Settings
from service.db import request as database
from service.mail import Mailer
from service.security.passwords import PasswordHasher
from service.telemetry import logs, metrics, tracing
from service.throttle.lifecycle import create_store
from service.throttle.login import LoginThrottle


class NoCookieSession(SecureCookieSessionInterface):
    """Bearer tokens, no cookie session: nothing to sign or read per request.

    Quart's default opens a signed-cookie session on every request; the
    service never uses one, so each request gets Quart's null session.
    """

    async def open_session(self, app: Quart, request: BaseRequestWebsocket) -> None:
        return None

    async def save_session(
        self, app: Quart, session: SessionMixin, response: object
    ) -> None:
        return None


def create_app(settings: Settings | None = None) -> Quart:
    settings = settings or Settings.from_env()
    app = Quart(__name__, static_folder=None)
    # `//users` would otherwise be redirected with an HTML page, not a JSON 404.
    app.url_map.merge_slashes = False
    app.session_interface = NoCookieSession()
    app.config.from_mapping(settings.quart_config())
    app.extensions[SETTINGS_KEY] = settings
    app.extensions[MAILER_KEY] = Mailer(settings)

    logs.init_app(app, settings)
    metrics.init_app(app, settings)
    database.init_app(app, settings)
    error_handlers.register_error_handlers(app)
    headers.init_app(app, settings)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(health.blueprint)
    openapi.init_app(app)
    swagger_ui.init_app(app, title=openapi.TITLE, enabled=settings.docs_enabled)
    unwrap_make_response(app)
    cli.register(app, settings)
    # Last: its before_request reads the request id logs' hook has set.
    tracing.init_app(app)

    # Started and stopped with serving, so an app can serve again after a stop.
    @app.before_serving
    async def start_workers() -> None:
        app.extensions[HASHER_KEY] = PasswordHasher(
            settings.password_hash_threads,
            nice=settings.password_hash_nice,
            queue=settings.password_hash_queue,
            guard=limits.require_declared,
        )
        store = create_store(settings)
        await store.start()
        app.extensions[THROTTLE_KEY] = LoginThrottle(store, settings)

    @app.after_serving
    async def stop_workers() -> None:
        hasher: PasswordHasher | None = app.extensions.pop(HASHER_KEY, None)
        if hasher is not None:
            hasher.shutdown()
        throttle: LoginThrottle | None = app.extensions.pop(THROTTLE_KEY, None)
        if throttle is not None:
            await throttle.store.close()

    return app


def unwrap_make_response(app: Quart) -> None:
    """Build every response with Quart's own make_response, not quart-schema's.

    quart-schema (openapi.init_app) wraps it to turn pydantic/msgspec models into
    JSON; views here return dicts and marshmallow dumps, and the wrapper cost
    ~80 us of every request's CPU (measured in-process).
    """
    if "make_response" in vars(app):
        del app.make_response
