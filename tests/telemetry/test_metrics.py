"""/metrics: Prometheus text behind a token, series by route rule, pool gauges."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy.ext.asyncio import AsyncEngine

from service import create_app
from service.config import Settings
from service.db.request import app_database
from service.models import User
from tests.support import METRICS_TOKEN, AppMaker, bearer, send

USER_RULE = "/api/v1/users/<int:user_id>"


@pytest.fixture
async def metrics_app(make_app: AppMaker) -> AsyncIterator[Quart]:
    async with make_app(metrics_token=METRICS_TOKEN) as app:
        yield app


@pytest.fixture
def metrics_client(metrics_app: Quart) -> Client:
    return metrics_app.test_client()


@pytest.fixture
async def engine_app(settings: Settings) -> AsyncIterator[Quart]:
    # Its own engine and pool on the per-run database, as in production.
    app = create_app(replace(settings, metrics_token=METRICS_TOKEN, db_pool_size=3))
    async with app.test_app():
        yield app


async def scrape(client: Client) -> list[Sample]:
    response = await client.get("/metrics", headers=bearer(METRICS_TOKEN))
    assert response.status_code == 200
    text = await response.get_data(as_text=True)
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) <= 1
    return found[0] if found else None


# --- /metrics -----------------------------------------------------------------


async def test_metrics_without_token_configured_404(client: Client) -> None:
    unknown = await client.get("/no-such-route")

    response = await client.get("/metrics", headers=bearer("anything"))

    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert await response.get_json() == await unknown.get_json()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong-token"),
        bearer(METRICS_TOKEN + "x"),
        bearer(METRICS_TOKEN[:-1]),
        {"Authorization": f"Basic {METRICS_TOKEN}"},
        bearer(""),
    ],
)
async def test_metrics_without_right_token_404(
    metrics_client: Client, headers: dict[str, str]
) -> None:
    unknown = await metrics_client.get("/no-such-route")

    response = await metrics_client.get("/metrics", headers=headers)

    assert response.status_code == 404
    assert await response.get_json() == await unknown.get_json()


async def test_metrics_right_token_200_prometheus_text(metrics_client: Client) -> None:
    response = await metrics_client.get("/metrics", headers=bearer(METRICS_TOKEN))

    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await response.get_data(as_text=True)
    assert "# TYPE http_requests_total counter" in text
    assert "# TYPE http_request_duration_seconds histogram" in text


async def test_metrics_count_requests_by_route_rule_and_status(
    metrics_client: Client, user: User, user_headers: dict[str, str]
) -> None:
    for _ in range(2):
        await metrics_client.get(f"/api/v1/users/{user.id}", headers=user_headers)
    await metrics_client.get("/api/v1/users/999999999", headers=user_headers)

    samples = await scrape(metrics_client)

    total = "http_requests_total"
    assert value(samples, total, method="GET", route=USER_RULE, status="200") == 2
    assert value(samples, total, method="GET", route=USER_RULE, status="404") == 1
    # Rules, not paths: one series per route, not per user id.
    assert not any(str(user.id) in s.labels.get("route", "") for s in samples)


async def test_metrics_label_unknown_paths_unmatched(metrics_client: Client) -> None:
    await metrics_client.get("/wp-admin/setup.php")

    samples = await scrape(metrics_client)

    total = "http_requests_total"
    assert value(samples, total, method="GET", route="unmatched", status="404") == 1
    assert not any("wp-admin" in s.labels.get("route", "") for s in samples)


async def test_metrics_latency_histogram_per_route(
    metrics_client: Client, user: User, user_headers: dict[str, str]
) -> None:
    for _ in range(3):
        await metrics_client.get(f"/api/v1/users/{user.id}", headers=user_headers)

    samples = await scrape(metrics_client)

    bucket = "http_request_duration_seconds_bucket"
    assert value(samples, bucket, method="GET", route=USER_RULE, le="+Inf") == 3
    count = "http_request_duration_seconds_count"
    assert value(samples, count, method="GET", route=USER_RULE) == 3
    buckets = [
        s for s in samples if s.name == bucket and s.labels.get("route") == USER_RULE
    ]
    assert len(buckets) > 2  # a histogram, not a single count


async def test_metrics_pool_gauges_on_real_engine(engine_app: Quart) -> None:
    client = engine_app.test_client()
    assert (await client.get("/readyz")).status_code == 200

    samples = await scrape(client)

    assert value(samples, "db_pool_size") == 3
    assert value(samples, "db_pool_checked_out") == 0


async def test_metrics_pool_checked_out_counts_connections_in_use(
    engine_app: Quart,
) -> None:
    client = engine_app.test_client()
    engine: AsyncEngine = app_database(engine_app).engine

    async with engine.connect():
        samples = await scrape(client)

    assert value(samples, "db_pool_checked_out") == 1


async def test_metrics_not_in_openapi_document(metrics_client: Client) -> None:
    response = await metrics_client.get("/openapi.json")

    assert response.status_code == 200
    paths = (await response.get_json())["paths"]
    assert "/metrics" not in paths
    assert "/healthz" in paths  # the document does list the root routes


async def test_made_up_methods_are_one_metrics_series(metrics_client: Client) -> None:
    for number in range(20):
        response = await send(metrics_client, f"MADEUP{number}", "/healthz")
        assert response.status_code == 405

    scraped = await metrics_client.get("/metrics", headers=bearer(METRICS_TOKEN))
    text = await scraped.get_data(as_text=True)
    methods = {
        sample.labels["method"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "method" in sample.labels
    }
    assert "MADEUP0" not in text
    # The scrape itself is counted after it is written.
    assert methods == {"other"}
    [other] = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "http_requests_total" and sample.labels["method"] == "other"
    ]
    assert other == 20
