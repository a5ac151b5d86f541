"""The composition root: create_app() wires every part of the service."""

from __future__ import annotations

from quart import Quart

from service import api, cli, db, errors, logs
from service.api.deps import HASHER_KEY, SETTINGS_KEY
from service.config import Settings
from service.security.passwords import PasswordHasher


def create_app(settings: Settings | None = None) -> Quart:
    settings = settings or Settings.from_env()
    app = Quart(__name__, static_folder=None)
    app.config.from_mapping(settings.quart_config())
    app.extensions[SETTINGS_KEY] = settings
    hasher = app.extensions[HASHER_KEY] = PasswordHasher(settings.password_hash_threads)

    logs.init_app(app, settings)
    db.init_app(app, settings)
    errors.register_error_handlers(app)
    app.register_blueprint(api.blueprint)
    cli.register(app, settings)

    @app.after_serving
    async def stop_hashing() -> None:
        hasher.shutdown()

    return app
