"""Without DATABASE_REPLICA_URL no trace of replicas (on the shared test database)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from service.models import User
from tests.support import METRICS_TOKEN, AppMaker, bearer


@pytest.fixture
async def app(make_app: AppMaker) -> AsyncIterator[Quart]:
    async with make_app(metrics_token=METRICS_TOKEN) as app:
        yield app


async def test_reads_log_no_targets_and_export_no_replica_metrics(
    client: Client,
    user: User,
    user_headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "service.access")
    for path in ("/api/v1/users", f"/api/v1/users/{user.id}", "/api/v1/posts"):
        response = await client.get(path, headers=user_headers)
        assert response.status_code == 200
    metrics = await client.get("/metrics", headers=bearer(METRICS_TOKEN))

    logged = [r.fields for r in caplog.records if r.name == "service.access"]  # type: ignore[attr-defined]
    assert len(logged) == 4
    assert not [
        entry for entry in logged if "db_reads" in entry or "db_fallbacks" in entry
    ]
    assert "db_replica" not in await metrics.get_data(as_text=True)
    assert await (await client.get("/readyz")).get_json() == {"status": "ready"}
