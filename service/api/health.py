"""Probes for load balancers and orchestrators, at the root."""

from __future__ import annotations

import asyncio

from quart import Blueprint
from sqlalchemy import text

from service.api.database import request_session
from service.api.deps import settings
from service.api.io import document_errors, returns
from service.errors import UnavailableError
from service.schemas.common import StatusSchema

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
@returns(StatusSchema)
async def healthz() -> dict[str, str]:
    """The process serves (no database touch)."""
    return {"status": "ok"}


@blueprint.get("/readyz")
@returns(StatusSchema)
@document_errors(503)
async def readyz() -> dict[str, str]:
    """The database answers within a short timeout; 503 otherwise."""
    try:
        async with asyncio.timeout(settings().readiness_timeout):
            await request_session(readonly=True).execute(text("SELECT 1"))
    except Exception as error:
        raise UnavailableError("Database unavailable") from error
    return {"status": "ready"}
