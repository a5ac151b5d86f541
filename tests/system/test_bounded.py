"""What a client cannot grow or shape: metrics series, hash queues, pages, log lines."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import create_app
from service.config import Settings
from service.db.request import SESSIONMAKER_KEY
from service.errors import UnavailableError
from service.schemas.post import POST_MAX_LENGTH
from service.security.passwords import PasswordHasher
from service.services.auth import security_logger
from service.telemetry.logs import TextFormatter
from tests.factories import PASSWORD, make_user
from tests.support import LOGIN, METRICS_TOKEN, bearer
from tests.system.conftest import serve


@pytest.fixture
async def started_app(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Any]:
    started: list[Any] = []

    async def make(**changes: Any) -> Quart:
        app = create_app(replace(settings, **changes))
        app.extensions[SESSIONMAKER_KEY] = sessionmaker
        test_app = app.test_app()
        await test_app.startup()
        started.append(test_app)
        return app

    yield make
    for test_app in started:
        await test_app.shutdown()


class Captured:
    """The app's own handler ("service"), writing into a buffer."""

    def __init__(self) -> None:
        [handler] = [
            h for h in logging.getLogger().handlers if h.get_name() == "service"
        ]
        assert isinstance(handler, logging.StreamHandler)
        self.handler = handler
        self.buffer = io.StringIO()
        self.previous = handler.setStream(self.buffer)

    def text(self) -> str:
        return self.buffer.getvalue()


@pytest.fixture
def capture() -> Iterator[Any]:
    opened: list[Captured] = []

    def open_() -> Captured:
        captured = Captured()
        opened.append(captured)
        return captured

    yield open_
    for captured in opened:
        captured.handler.setStream(captured.previous)


# --- metrics ------------------------------------------------------------------------


async def test_made_up_methods_are_one_metrics_series(started_app: Any) -> None:
    app = await started_app(metrics_token=METRICS_TOKEN)
    client = app.test_client()
    for number in range(20):
        response = await client.open("/healthz", method=f"MADEUP{number}")
        assert response.status_code == 405

    scraped = await client.get("/metrics", headers=bearer(METRICS_TOKEN))
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


# --- the hash pool ------------------------------------------------------------------


async def test_hash_pool_refuses_past_its_queue_with_503() -> None:
    hasher = PasswordHasher(1, queue=2)
    try:
        results = await asyncio.gather(
            *(hasher.verify(None, PASSWORD) for _ in range(8)), return_exceptions=True
        )
    finally:
        hasher.shutdown()

    refused = [r for r in results if isinstance(r, UnavailableError)]
    assert results[:3] == [False, False, False]
    assert len(refused) == 5
    assert all(error.headers["Retry-After"] == "1" for error in refused)


async def test_login_storm_past_the_hash_queue_answers_503_json(
    served_database_url: str, tmp_path: Path
) -> None:
    served = serve(
        served_database_url,
        tmp_path,
        PASSWORD_HASH_THREADS="1",
        PASSWORD_HASH_QUEUE="1",
    )
    try:

        async def attempt(number: int) -> httpx.Response:
            async with served.client() as client:
                return await client.post(
                    LOGIN,
                    json={"email": f"nobody{number}@example.com", "password": "x"},
                )

        responses = await asyncio.gather(*(attempt(n) for n in range(12)))
    finally:
        served.stop()

    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) == {401, 503}, statuses
    for response in responses:
        if response.status_code == 503:
            assert response.json() == {
                "error": "Too many password checks in progress; try again shortly"
            }
            assert response.headers["Retry-After"] == "1"


# --- pages of posts ------------------------------------------------------------------


async def test_post_content_is_bounded(
    client: Client, user_headers: dict[str, str]
) -> None:
    longest = await client.post(
        "/api/v1/posts",
        json={"title": "t", "content": "x" * POST_MAX_LENGTH},
        headers=user_headers,
    )
    too_long = await client.post(
        "/api/v1/posts",
        json={"title": "t", "content": "x" * (POST_MAX_LENGTH + 1)},
        headers=user_headers,
    )

    assert longest.status_code == 201
    assert too_long.status_code == 400
    assert (await too_long.get_json())["errors"] == {
        "content": [f"Longer than maximum length {POST_MAX_LENGTH}."]
    }


# --- logs -----------------------------------------------------------------------------


async def test_text_log_escapes_control_characters_in_the_path(
    started_app: Any, capture: Any
) -> None:
    app = await started_app(log_format="text")
    log = capture()

    response = await app.test_client().get(
        "/api/v1/nope%0A2026-01-01 00:00:00 INFO service.access: GET /forged 200%1b[2J"
    )

    assert response.status_code == 404
    lines = log.text().splitlines()
    assert len(lines) == 1, lines
    assert "\\x0a2026-01-01" in lines[0]
    assert "\\x1b[2J" in lines[0]


def test_text_log_indents_every_traceback_line() -> None:
    formatter = TextFormatter()
    try:
        raise ValueError("bad\nINFO forged line")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, "f", 1, "boom", (), sys.exc_info()
        )
    text = formatter.format(record)

    first, *rest = text.splitlines()
    assert first.endswith("boom")
    assert rest
    assert all(line.startswith("    ") for line in rest)


async def test_failed_login_event_names_the_forwarded_client_behind_a_trusted_proxy(
    started_app: Any, session: AsyncSession, caplog: pytest.LogCaptureFixture
) -> None:
    app = await started_app(trusted_proxies=("10.0.0.0/8",))
    user = await make_user(session)

    with caplog.at_level(logging.WARNING, logger=security_logger.name):
        response = await app.test_client().post(
            LOGIN,
            json={"email": user.email, "password": "wrong"},
            headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9"},
            scope_base={"client": ("10.0.0.1", 50000)},
        )

    assert response.status_code == 401
    [record] = [r for r in caplog.records if r.name == security_logger.name]
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["client_ip"] == "203.0.113.9"
    assert fields["user_id"] == user.id
    assert fields["event"] == "login_failed"
