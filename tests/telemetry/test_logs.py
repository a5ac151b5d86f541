"""Structured access logs with request ids, text logs, and security events.

The logs are read where production writes them: the stream of the handler the
app installs on the root logger (named "service"), swapped for a buffer.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy.ext.asyncio import AsyncSession

from service import create_app
from service.config import Settings
from service.models import User
from service.services.events import security_logger
from service.telemetry.logs import JSONFormatter, TextFormatter, ToListener
from tests.factories import make_user
from tests.support import LOGIN, AppStarter, run_python_without_redis, send

HEX32 = re.compile(r"[0-9a-f]{32}")
UNREACHABLE_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:1/nope"
USER_RULE = "/api/v1/users/<int:user_id>"


class ServiceLog:
    """What the app's own log handler writes, one JSON document per line: its
    listener thread's stream, read once the records queued so far are written."""

    def __init__(self) -> None:
        handlers = [
            h for h in logging.getLogger().handlers if h.get_name() == "service"
        ]
        assert len(handlers) == 1
        handler = handlers[0]
        assert isinstance(handler, ToListener)
        self.handler = handler
        self.buffer = io.StringIO()
        self.handler.flush()
        self.previous = handler.stream_handler.setStream(self.buffer)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines()]

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["logger"] == "service.access"]

    def text(self) -> str:
        self.handler.flush()
        return self.buffer.getvalue()

    def clear(self) -> None:
        self.handler.flush()
        self.buffer.seek(0)
        self.buffer.truncate()

    def close(self) -> None:
        self.handler.flush()
        self.handler.stream_handler.setStream(self.previous or sys.stdout)


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
    response = await send(client, method, path)

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


class StalledStream(io.StringIO):
    """A stream whose writes wait until `release` is set: a pipe nobody reads."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait(timeout=30)
        return super().write(text)


async def test_a_stalled_stream_does_not_hold_the_request_back(
    app: Quart, client: Client
) -> None:
    log = ServiceLog()
    stalled = StalledStream()
    log.handler.stream_handler.setStream(stalled)
    try:
        started = time.monotonic()
        responses = [await client.get("/healthz") for _ in range(3)]
        elapsed = time.monotonic() - started
        written_before = stalled.getvalue()
    finally:
        stalled.release.set()
        log.handler.flush()
        log.handler.stream_handler.setStream(log.buffer)
        log.close()

    assert [response.status_code for response in responses] == [200] * 3
    # The writer thread waits on the stream; the requests did not.
    assert elapsed < 5
    assert written_before == ""
    lines = [json.loads(line) for line in stalled.getvalue().splitlines()]
    ids = [line["request_id"] for line in lines if line["logger"] == "service.access"]
    assert ids == [response.headers["X-Request-ID"] for response in responses]


async def test_the_access_line_is_made_once_in_the_request_and_written_as_made(
    client: Client, service_log: ServiceLog, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="service.access"):
        response = await client.get("/healthz")

    [record] = [r for r in caplog.records if r.name == "service.access"]
    [written] = service_log.text().splitlines()
    assert record.line == written  # type: ignore[attr-defined]
    line = json.loads(written)
    assert list(line)[:4] == ["time", "level", "logger", "message"]
    assert {key: line[key] for key in record.fields} == record.fields  # type: ignore[attr-defined]
    assert line["message"] == "GET /healthz 200"
    assert line["request_id"] == response.headers["X-Request-ID"]


def test_lines_still_queued_at_exit_are_written() -> None:
    script = (
        "import logging, service.asgi\n"
        "log = logging.getLogger('service.test')\n"
        "for n in range(2000): log.warning('line %d', n)\n"
    )

    result = run_python_without_redis(script, ENV_FILE="")

    lines = [json.loads(line) for line in result.stdout.splitlines()]
    messages = [line["message"] for line in lines if line["logger"] == "service.test"]
    assert messages == [f"line {n}" for n in range(2000)]


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


# --- text logs and security events ---------------------------------------


async def test_text_log_escapes_control_characters_in_the_path(
    start_app: AppStarter,
) -> None:
    app = await start_app(log_format="text")
    log = ServiceLog()

    try:
        response = await app.test_client().get(
            "/api/v1/nope%0A2026-01-01 00:00:00 INFO service.access: "
            "GET /forged 200%1b[2J"
        )
    finally:
        log.close()

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
    start_app: AppStarter, session: AsyncSession, caplog: pytest.LogCaptureFixture
) -> None:
    app = await start_app(trusted_proxies=("10.0.0.0/8",))
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
