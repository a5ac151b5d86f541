"""Probes for load balancers and orchestrators, at the root."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Blueprint, current_app
from quart_schema import tag_blueprint
from sqlalchemy import text

from service.api.deps import settings
from service.api.io import document_errors, returns
from service.db.request import app_database, request_session
from service.errors import UnavailableError
from service.schemas.common import ReadinessSchema, StatusSchema

blueprint = Blueprint("health", __name__)
tag_blueprint(blueprint, ["operations"])


@blueprint.get("/healthz")
@returns(StatusSchema)
async def healthz() -> dict[str, str]:
    """The process serves (no database touch)."""
    return {"status": "ok"}


@blueprint.get("/readyz")
@returns(ReadinessSchema)
@document_errors(503)
async def readyz() -> dict[str, Any]:
    """The database answers within a short timeout; 503 otherwise.

    With read replicas, each is listed; a replica that is down or behind
    does not make the service unready (its reads go to the primary).
    """
    try:
        async with asyncio.timeout(settings().readiness_timeout):
            await request_session(readonly=True).execute(text("SELECT 1"))
    except Exception as error:
        raise UnavailableError("Database unavailable") from error
    answer: dict[str, Any] = {"status": "ready"}
    if (replicas := app_database(current_app).replicas) is not None:
        answer["replicas"] = await replicas.report()
    return answer
