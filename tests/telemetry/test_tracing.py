"""service/telemetry/tracing.py: spans for requests and queries, or nothing installed
at all."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import asyncpg
import pytest
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind
from quart import Quart

from service import create_app
from service.api.headers import ResponseHeaders
from service.config import ConfigError, Settings
from service.db.engine import Database
from service.db.request import app_database
from service.models import User
from service.services.callers import SESSION_USER
from service.telemetry import tracing as otel
from tests.factories import PASSWORD
from tests.ports import free_port
from tests.support import ME, get_me

DRIVER_METHODS = ("execute", "fetch", "fetchrow", "fetchval")


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    # The driver patch is process-wide: later tests get the plain driver back.
    AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]


@pytest.fixture
async def traced_app(
    settings: Settings,
    database: Database,
    exporter: InMemorySpanExporter,
) -> AsyncIterator[Quart]:
    app = create_app(settings, database=database)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.instrument(app, provider)
    async with app.test_app():
        yield app


def server_span(spans: tuple[ReadableSpan, ...]) -> ReadableSpan:
    (span,) = [span for span in spans if span.kind is SpanKind.SERVER]
    return span


def query_spans(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    return [
        span
        for span in spans
        if span.kind is SpanKind.CLIENT
        and span.attributes
        and span.attributes.get("db.system") == "postgresql"
    ]


async def test_request_span_is_named_after_the_route_and_carries_the_request_id(
    traced_app: Quart, exporter: InMemorySpanExporter, user_headers: dict[str, str]
) -> None:
    response = await traced_app.test_client().get(
        ME, headers={**user_headers, "X-Request-ID": "trace-me-0001"}
    )

    assert response.status_code == 200
    span = server_span(exporter.get_finished_spans())
    assert span.name == f"GET {ME}"
    assert span.attributes is not None
    assert span.attributes["request.id"] == "trace-me-0001"
    assert span.attributes["http.route"] == ME
    assert response.headers["X-Request-ID"] == "trace-me-0001"


async def test_hot_path_raw_query_is_a_child_span_of_the_request(
    traced_app: Quart, exporter: InMemorySpanExporter, user: User
) -> None:
    client = traced_app.test_client()
    login = await client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}
    )
    token = (await login.get_json())["access_token"]
    exporter.clear()

    response = await get_me(client, token)

    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    request_span = server_span(spans)
    # The token check: the HotQuery SESSION_USER, run on the driver connection.
    (check,) = [
        span
        for span in query_spans(spans)
        if (span.attributes or {}).get("db.statement") == SESSION_USER.asyncpg_sql
    ]
    assert check.parent is not None
    assert request_span.context is not None
    assert check.parent.span_id == request_span.context.span_id
    assert [span.name for span in spans if span.kind is SpanKind.INTERNAL] == []


async def test_orm_queries_are_spans_too(
    traced_app: Quart, exporter: InMemorySpanExporter, admin_headers: dict[str, str]
) -> None:
    response = await traced_app.test_client().patch(
        "/api/v1/users/999999", headers=admin_headers, json={"first_name": "X"}
    )

    assert response.status_code == 404
    statements = [
        str((span.attributes or {}).get("db.statement"))
        for span in query_spans(exporter.get_finished_spans())
    ]
    assert any("FROM users" in sql and "users.id" in sql for sql in statements)


async def test_failed_query_span_is_marked_error(
    traced_app: Quart, exporter: InMemorySpanExporter, user: User
) -> None:
    async with (
        traced_app.app_context(),
        app_database(traced_app).sessions() as session,
    ):
        raw = await (await session.connection()).get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection
        with pytest.raises(asyncpg.UndefinedTableError):
            await driver.fetchrow("SELECT 1 FROM no_such_table")
        await session.rollback()

    (span,) = [
        span
        for span in query_spans(exporter.get_finished_spans())
        if "no_such_table" in str((span.attributes or {}).get("db.statement"))
    ]
    assert not span.status.is_ok


def test_without_the_endpoint_nothing_is_installed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(otel.ENDPOINT_VARIABLE, raising=False)

    app = create_app(settings)

    # The ASGI entry is the headers' middleware over Quart's own method, and the
    # driver is unpatched.
    assert isinstance(app.asgi_app, ResponseHeaders)
    assert app.asgi_app.app.__func__ is Quart.asgi_app  # type: ignore[attr-defined]
    assert otel.PROVIDER_KEY not in app.extensions
    for method in DRIVER_METHODS:
        assert not hasattr(getattr(asyncpg.Connection, method), "__wrapped__")
    hooks = [hook.__name__ for hook in app.before_request_funcs[None]]
    assert "name_request_span" not in hooks


async def test_with_the_endpoint_create_app_installs_the_exporter(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, exporter: object
) -> None:
    # A loopback port nothing listens on: no span is exported here.
    endpoint = f"http://127.0.0.1:{free_port()}"
    # The setting turns tracing on; the exporter reads its endpoint itself.
    monkeypatch.setenv(otel.ENDPOINT_VARIABLE, endpoint)

    app = create_app(replace(settings, otel_exporter_otlp_endpoint=endpoint))

    assert isinstance(app.asgi_app, OpenTelemetryMiddleware)
    assert hasattr(asyncpg.Connection.fetchrow, "__wrapped__")
    provider: TracerProvider = app.extensions[otel.PROVIDER_KEY]
    await asyncio.to_thread(provider.shutdown)


def test_endpoint_without_the_extra_installed_is_a_clear_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(otel.ENDPOINT_VARIABLE, "http://127.0.0.1:4318")
    # None in sys.modules makes the import fail as if the extra were absent.
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace.export", None)

    with pytest.raises(ConfigError, match=r"install the otel extra"):
        create_app(
            replace(settings, otel_exporter_otlp_endpoint="http://127.0.0.1:4318")
        )
