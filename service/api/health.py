"""Probes for load balancers and orchestrators, at the root."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from quart import Blueprint, current_app, request
from quart_schema import tag_blueprint
from sqlalchemy import text

from service.api.deps import settings
from service.api.io import document_errors, returns
from service.db.request import app_database, request_session
from service.errors import UnavailableError
from service.schemas.common import ReadinessSchema, StatusSchema
from service.security.client_address import from_proxy
from service.telemetry.metrics import presents_metrics_token

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
    """The database answers within a short timeout; 503 otherwise, and 503
    while the replica drains before it stops (the image's entrypoint).

    With read replicas, each is listed; a replica that is down or behind
    does not make the service unready (its reads go to the primary). That
    detail (each standby's host, port and database) is for operators: with
    `Authorization: Bearer <METRICS_TOKEN>`, or asked on the replica's own
    address. Through a load balancer (a request a proxy forwarded) the answer
    is the status alone.
    """
    config = settings()
    if config.drain_file is not None and await asyncio.to_thread(
        os.path.exists, config.drain_file
    ):
        raise UnavailableError("Draining: the replica is stopping")
    try:
        async with asyncio.timeout(config.readiness_timeout):
            await request_session(readonly=True).execute(text("SELECT 1"))
    except Exception as error:
        raise UnavailableError("Database unavailable") from error
    answer: dict[str, Any] = {"status": "ready"}
    replicas = app_database(current_app).replicas
    if replicas is not None and _for_operators():
        answer["replicas"] = await replicas.report()
    return answer


def _for_operators() -> bool:
    """The metrics token, or a request no proxy forwarded (the pod's own
    address: kubelet, Prometheus, an operator's port-forward)."""
    config = settings()
    if presents_metrics_token(config):
        return True
    forwarded = "X-Forwarded-For" in request.headers or "Forwarded" in request.headers
    return not forwarded and not from_proxy(request.remote_addr, config.trusted_proxies)
