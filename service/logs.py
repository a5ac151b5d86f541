"""Logging set-up."""

from __future__ import annotations

import logging

from quart import Quart

from service.config import Settings


def init_app(app: Quart, settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app.logger.setLevel(settings.log_level)
