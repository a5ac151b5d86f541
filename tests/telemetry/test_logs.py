"""Structured access logs with request ids, and the Prometheus endpoint.

The logs are read where production writes them: the stream of the handler the
app installs on the root logger (named "service"), swapped for a buffer.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy.ext.asyncio import AsyncEngine

from service import create_app
from service.config import Settings
from service.db.request import ENGINE_KEY
from service.models import User
from service.telemetry.logs import JSONFormatter
from tests.support import METRICS_TOKEN, AppMaker, bearer

HEX32 = re.compile(r"[0-9a-f]{32}")
UNREACHABLE_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:1/nope"
USER_RULE = "/api/v1/users/<int:user_id>"


class ServiceLog:
    """What the app's own log handler writes, one JSON document per line."""

    def __init__(self) -> None:
        handlers = [
            h for h in logging.getLogger().handlers if h.get_name() == "service"
        ]
        assert len(handlers) == 1
        handler = handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        self.handler: logging.StreamHandler[Any] = handler
        self.buffer = io.StringIO()
        self.previous = handler.setStream(self.buffer)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.buffer.getvalue().splitlines()]

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["logger"] == "service.access"]

    def clear(self) -> None:
        self.buffer.seek(0)
        self.buffer.truncate()

    def close(self) -> None:
        self.handler.setStream(self.previous or sys.stdout)


@pytest.fixture
def service_log(app: Quart) -> Iterator[ServiceLog]:
    log = ServiceLog()
    yield log
    log.close()


@pytest.fixture
async def unreachable_app(settings: Settings) -> AsyncIterator[Quart]:
    app = create_app(
        replace(settings, database_url=UNREACHABLE_DATABASE, readiness_timeout=1)
    )
    async with app.test_app():
        yield app


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


# --- access log ---------------------------------------------------------------


async def test_authenticated_request_logs_one_access_line(
    client: Client,
    service_log: ServiceLog,
    user: User,
    user_headers: dict[str, str],
) -> None:
    response = await client.get(f"/api/v1/users/{user.id}", headers=user_headers)

    assert response.status_code == 200
    [line] = service_log.access()
    duration = line.pop("duration_ms")
    assert isinstance(duration, float | int)
    assert duration >= 0
    expected = {
        "level": "info",
        "logger": "service.access",
        "message": f"GET /api/v1/users/{user.id} 200",
        "method": "GET",
        "path": f"/api/v1/users/{user.id}",
        "status": 200,
        "user_id": user.id,
        "request_id": response.headers["X-Request-ID"],
    }
    # Further fields (remote address, time) may come; these must be there.
    assert {key: line.get(key) for key in expected} == expected


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/api/v1/users/me", 401),
        ("GET", "/api/v1/no-such-route", 404),
        ("DELETE", "/healthz", 405),
        ("POST", "/api/v1/users", 415),
    ],
)
async def test_anonymous_request_logs_one_access_line_without_user(
    client: Client, service_log: ServiceLog, method: str, path: str, status: int
) -> None:
    # No body at all; the protocol's stub wants `json` although the client
    # does not (passing json=None would send a JSON null).
    no_body: dict[str, Any] = {}
    response = await client.open(path, method=method, **no_body)

    assert response.status_code == status
    [line] = service_log.access()
    assert (line["method"], line["path"], line["status"]) == (method, path, status)
    assert line["user_id"] is None
    assert line["request_id"] == response.headers["X-Request-ID"]


async def test_access_line_time_is_utc_iso8601(
    client: Client, service_log: ServiceLog
) -> None:
    await client.get("/healthz")

    [line] = service_log.access()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])


@pytest.mark.parametrize(
    "request_id",
    ["abc-123", "0f8fad5b-d9cb-469f-a165-70867728950e", "lb.host:42_x", "a" * 128],
)
async def test_valid_request_id_echoed_and_logged(
    client: Client, service_log: ServiceLog, request_id: str
) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": request_id})

    assert response.headers["X-Request-ID"] == request_id
    [line] = service_log.access()
    assert line["request_id"] == request_id


@pytest.mark.parametrize(
    "request_id",
    [
        "has spaces in it",
        "a" * 129,
        "a" * 300,
        "tab\there",
        "forged%0Aline",  # a raw newline never reaches the app: Werkzeug refuses it
        '{"json": "injection"}',
        "",
    ],
)
async def test_unsafe_request_id_replaced_by_generated(
    client: Client, service_log: ServiceLog, request_id: str
) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": request_id})

    echoed = response.headers["X-Request-ID"]
    assert HEX32.fullmatch(echoed)
    [line] = service_log.access()
    assert line["request_id"] == echoed


async def test_missing_request_id_generated_echoed_and_logged(
    client: Client, service_log: ServiceLog
) -> None:
    response = await client.get("/healthz")

    echoed = response.headers["X-Request-ID"]
    assert HEX32.fullmatch(echoed)
    [line] = service_log.access()
    assert line["request_id"] == echoed


async def test_generated_request_ids_differ_per_request(client: Client) -> None:
    first = await client.get("/healthz")
    second = await client.get("/healthz")

    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


async def test_error_path_log_lines_carry_request_id(
    unreachable_app: Quart,
) -> None:
    log = ServiceLog()
    try:
        response = await unreachable_app.test_client().post(
            "/api/v1/auth/login",
            json={"email": "nobody@example.com", "password": "password123"},
            headers={"X-Request-ID": "trace-503"},
        )
        lines = log.lines()
    finally:
        log.close()

    assert response.status_code == 503
    assert response.headers["X-Request-ID"] == "trace-503"
    [error] = [line for line in lines if line["logger"] == "service.errors"]
    assert error["level"] == "warning"
    assert error["request_id"] == "trace-503"
    [access] = [line for line in lines if line["logger"] == "service.access"]
    assert (access["status"], access["request_id"]) == (503, "trace-503")


# --- JSONFormatter ------------------------------------------------------------


def record(message: str, **kwargs: Any) -> logging.LogRecord:
    return logging.LogRecord(
        "service.test", logging.WARNING, __file__, 1, message, None, None, **kwargs
    )


def test_json_formatter_emits_level_logger_message() -> None:
    entry = json.loads(JSONFormatter().format(record("disk almost full")))

    assert entry["level"] == "warning"
    assert entry["logger"] == "service.test"
    assert entry["message"] == "disk almost full"
    assert "request_id" not in entry  # no request, no id


def test_json_formatter_multiline_message_stays_one_line() -> None:
    # One line per event is what log shippers split on.
    formatted = JSONFormatter().format(record('first line\nsecond "quoted" ünïcode'))

    assert "\n" not in formatted
    assert json.loads(formatted)["message"] == 'first line\nsecond "quoted" ünïcode'


def test_json_formatter_adds_fields_and_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    entry_record = record("failed")
    entry_record.exc_info = exc_info
    entry_record.fields = {"user_id": 7, "path": "/x"}

    entry = json.loads(JSONFormatter().format(entry_record))

    assert (entry["user_id"], entry["path"]) == (7, "/x")
    assert "ValueError: boom" in entry["exception"]


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
    engine: AsyncEngine = engine_app.extensions[ENGINE_KEY]

    async with engine.connect():
        samples = await scrape(client)

    assert value(samples, "db_pool_checked_out") == 1


async def test_metrics_not_in_openapi_document(metrics_client: Client) -> None:
    response = await metrics_client.get("/openapi.json")

    assert response.status_code == 200
    paths = (await response.get_json())["paths"]
    assert "/metrics" not in paths
    assert "/healthz" in paths  # the document does list the root routes
