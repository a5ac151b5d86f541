"""How every error becomes a JSON response (the tree itself is service/errors.py)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError
from quart import Quart, Response, jsonify
from werkzeug.exceptions import HTTPException

from service.db.outages import is_unavailable
from service.errors import AppError

# The name operators filter the log on, from before the handlers moved here.
logger = logging.getLogger("service.errors")


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(AppError)
    async def handle_app_error(error: AppError) -> Response:
        return _json(error.body(), error.status_code, error.headers)

    @app.errorhandler(ValidationError)
    async def handle_validation_error(error: ValidationError) -> Response:
        return _json({"error": "Validation failed", "errors": error.messages}, 400)

    @app.errorhandler(HTTPException)
    async def handle_http_exception(error: HTTPException) -> Response:
        # Keep werkzeug's headers (Allow on a 405) but not its HTML content type.
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        return _json({"error": error.description}, error.code or 500, headers)

    @app.errorhandler(Exception)
    async def handle_unexpected(error: Exception) -> Response:
        if is_unavailable(error):
            logger.warning("backend unavailable: %r", error)
            return _json({"error": "Service unavailable"}, 503, {"Retry-After": "5"})
        logger.exception("unhandled error")
        return _json({"error": "Internal server error"}, 500)


def _json(
    body: dict[str, Any], status: int, headers: Mapping[str, str] | None = None
) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response
