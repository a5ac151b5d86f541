"""Prometheus metrics at /metrics, readable only with METRICS_TOKEN."""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from quart import Quart, Response, request
from quart_schema import hide
from sqlalchemy.pool import QueuePool
from werkzeug.exceptions import NotFound

from service.config import Settings
from service.db.replicas import FALLBACKS
from service.db.request import serving_database
from service.request_state import request_state
from service.telemetry.tally import COUNTED, Tally

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Any token is a valid HTTP method: one series per made-up method would let a
# client grow the registry without bound.
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "other"


class PoolCollector(Collector):
    """Database pool use, read when scraped."""

    def __init__(self, app: Quart) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        database = serving_database(self.app)
        pool = database.engine.sync_engine.pool if database is not None else None
        if not isinstance(pool, QueuePool):
            return
        for name, value, text in (
            ("db_pool_size", pool.size(), "Connections the pool keeps"),
            ("db_pool_checked_out", pool.checkedout(), "Connections in use"),
            ("db_pool_overflow", pool.overflow(), "Connections beyond the pool size"),
        ):
            yield GaugeMetricFamily(name, text, value=value)


class ReplicaCollector(Collector):
    """Where reads that decide nothing went, and why some did not go to a standby."""

    def __init__(self, app: Quart) -> None:
        self.app = app

    def collect(self) -> Iterator[CounterMetricFamily]:
        database = serving_database(self.app)
        replicas = database.replicas if database is not None else None
        if replicas is None:
            return
        reads = CounterMetricFamily(
            "db_replica_reads",
            "Reads that decide nothing, per target (primary or a standby's name)",
            labels=["target"],
        )
        for target, count in sorted(replicas.reads.items()):
            reads.add_metric([target], count)
        fallbacks = CounterMetricFamily(
            "db_replica_fallbacks",
            "Such reads sent to the primary, per reason",
            labels=["reason"],
        )
        for reason in FALLBACKS:
            fallbacks.add_metric([reason], replicas.fallbacks[reason])
        yield reads
        yield fallbacks


class TallyCollector(Collector):
    """What went wrong out of sight: mail retried or lost, range-service misses."""

    def __init__(self, app: Quart) -> None:
        self.app = app

    def collect(self) -> Iterator[CounterMetricFamily]:
        tally: Tally | None = self.app.extensions.get("tally")
        if tally is None:
            return
        for name, text in COUNTED.items():
            yield CounterMetricFamily(name, text, value=tally[name])


def init_app(app: Quart, settings: Settings) -> None:
    registry = CollectorRegistry()
    requests = Counter(
        "http_requests",
        "Requests answered",
        ["method", "route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "http_request_duration_seconds",
        "Time to answer a request",
        ["method", "route"],
        registry=registry,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    )
    registry.register(PoolCollector(app))
    registry.register(ReplicaCollector(app))
    registry.register(TallyCollector(app))
    # labels() validates and looks its child up under a lock on every call;
    # the few (method, route, status) series are looked up once each here.
    counted: dict[tuple[str, str, int], Any] = {}
    timed: dict[tuple[str, str], Any] = {}

    @app.after_request
    async def observe(response: Response) -> Response:
        # The rule, not the path: ids in paths would make one series per user.
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        key = (method_label(request.method), route, response.status_code)
        counter = counted.get(key)
        if counter is None:
            counter = counted[key] = requests.labels(key[0], route, str(key[2]))
        counter.inc()
        started = request_state().started
        if started:
            histogram = timed.get(key[:2])
            if histogram is None:
                histogram = timed[key[:2]] = latency.labels(key[0], route)
            histogram.observe(time.perf_counter() - started)
        return response

    @app.get("/metrics")
    @hide
    async def metrics() -> Response:
        if not presents_metrics_token(settings):
            # Not public: without the token it does not exist.
            raise NotFound()
        return Response(generate_latest(registry), content_type=CONTENT_TYPE)


def presents_metrics_token(settings: Settings) -> bool:
    """Whether the request carries `Authorization: Bearer <METRICS_TOKEN>`."""
    expected = settings.metrics_token
    presented = request.headers.get("Authorization", "").removeprefix("Bearer ")
    return bool(expected) and hmac.compare_digest(
        presented.encode(), (expected or "").encode()
    )
