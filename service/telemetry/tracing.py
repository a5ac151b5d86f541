"""OpenTelemetry traces, optional: the otel extra (`pip install 'service[otel]'`).

Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set; then every request is a server
span (named after its route, with the request id as `request.id`) and every
PostgreSQL query under it a client span: the ORM's, through asyncpg's prepared
statements, and the hot path's raw driver queries (statements.HotQuery) alike. Spans go
over OTLP/HTTP to that endpoint; the exporter reads the other standard
OTEL_EXPORTER_OTLP_* variables and the resource OTEL_SERVICE_NAME (default
`service`).

Off means nothing is installed: no ASGI wrapper, no patched driver method, no
hook; the request path is the same code as without the extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Quart, request

from service.config import ConfigError, Settings
from service.request_state import request_state

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"
REQUEST_ID_ATTRIBUTE = "request.id"
PROVIDER_KEY = "otel_tracer_provider"


def init_app(app: Quart, settings: Settings) -> None:
    """Trace to OTEL_EXPORTER_OTLP_ENDPOINT when it is set; otherwise do nothing."""
    if not settings.otel_exporter_otlp_endpoint:
        return
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigError(
            f"{ENDPOINT_VARIABLE} is set but OpenTelemetry is not installed: "
            "install the otel extra (pip install 'service[otel]')"
        ) from None
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: settings.otel_service_name})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    instrument(app, provider)


def instrument(app: Quart, provider: TracerProvider) -> None:
    """Request and database spans on this provider (the tests pass an in-memory one)."""
    from opentelemetry import trace
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    app.extensions[PROVIDER_KEY] = provider
    # Its ASGI types are plain mappings, Quart's are TypedDicts: the same calls.
    app.asgi_app = OpenTelemetryMiddleware(  # type: ignore[method-assign,assignment]
        app.asgi_app,
        tracer_provider=provider,
        # A span per ASGI message says nothing the request span does not.
        exclude_spans=["receive", "send"],
    )
    # Process-wide (it patches asyncpg's Connection and PreparedStatement), so
    # once per process; BaseInstrumentor ignores a second call.
    AsyncPGInstrumentor().instrument(  # type: ignore[no-untyped-call]
        tracer_provider=provider
    )

    # After logs' own before_request: the request id is set by then.
    @app.before_request
    async def name_request_span() -> None:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        if request.url_rule is not None:
            span.update_name(f"{request.method} {request.url_rule.rule}")
            span.set_attribute("http.route", request.url_rule.rule)
        if request_id := request_state().request_id:
            span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)

    @app.after_serving
    async def flush_spans() -> None:
        provider.force_flush()
