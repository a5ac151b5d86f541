"""The composition root: create_app() wires every part of the service."""

from __future__ import annotations

from quart import Quart
from quart.sessions import SecureCookieSessionInterface, SessionMixin
from quart.wrappers import BaseRequestWebsocket, Request
from werkzeug.sansio.utils import get_content_length
from werkzeug.utils import cached_property

from service import api, cli
from service.api import (
    account,
    deps,
    error_handlers,
    hashing,
    headers,
    health,
    limits,
    openapi,
    swagger_ui,
)
from service.config import Settings
from service.db import request as db
from service.db.engine import Database
from service.telemetry import logs, metrics, tracing
from service.throttle import lifecycle as throttle


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


class ServiceRequest(Request):
    """Quart's request, reading its body's length without a raising lookup, and
    its blueprints once.

    Quart reads `content_length` as it makes every request; werkzeug's looks up
    Content-Length and Transfer-Encoding with `Headers.get`, which raises and
    catches a BadRequestKeyError for each one absent: both, on every GET.
    """

    # (url_rule, its blueprints): Quart asks for them three times a request.
    _blueprints: tuple[object, list[str]] | None = None

    @property
    def blueprints(self) -> list[str]:
        """Quart's, computed once per routing result instead of on every call."""
        rule = self.url_rule
        known = self._blueprints
        if known is None or known[0] is not rule:
            known = self._blueprints = (rule, super().blueprints)
        return known[1]

    @cached_property
    def content_length(self) -> int | None:
        length = encoding = None
        for name, value in self.headers.items():
            lowered = name.lower()
            if lowered == "content-length":
                length = value if length is None else length
            elif lowered == "transfer-encoding":
                encoding = value if encoding is None else encoding
        return get_content_length(length, encoding)


def create_app(
    settings: Settings | None = None, *, database: Database | None = None
) -> Quart:
    """The app on `settings` (default: the environment's), serving on `database`
    when one is given (a test's), else on one it opens from the settings."""
    settings = settings or Settings.from_env()
    app = Quart(__name__, static_folder=None)
    # `//users` would otherwise be redirected with an HTML page, not a JSON 404.
    app.url_map.merge_slashes = False
    app.session_interface = NoCookieSession()
    app.request_class = ServiceRequest
    app.config.from_mapping(settings.quart_config())

    deps.init_app(app, settings)
    account.init_app(app, settings)
    logs.init_app(app, settings)
    metrics.init_app(app, settings)
    db.init_app(app, settings, database)
    error_handlers.register_error_handlers(app)
    headers.init_app(app, settings, no_store_under=api.NO_STORE_UNDER)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(health.blueprint)
    openapi.init_app(app)
    swagger_ui.init_app(app, title=openapi.TITLE, enabled=settings.docs_enabled)
    cli.register(app, settings)
    hashing.init_app(app, settings, guard=limits.require_declared)
    throttle.init_app(app, settings)
    # Last: its before_request reads the request id logs' hook has set.
    tracing.init_app(app, settings)
    return app
