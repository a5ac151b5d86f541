"""HTTP/2 without TLS (h2c), as Hypercorn serves it: by prior knowledge and by
`Upgrade: h2c`. The same answers, headers, request ids, 413s, client addresses
and throttle keys as over HTTP/1.1; many streams on one connection; a graceful
stop with streams open.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.models import User
from tests.factories import PASSWORD, committed_user
from tests.support import LOGIN, ME, TOO_LARGE, USERS, bearer
from tests.system.conftest import serve
from tests.system.harness import ServedApp, loopback_address

CURL = shutil.which("curl")
SECURITY_HEADERS = (
    "content-type",
    "x-content-type-options",
    "referrer-policy",
    "x-frame-options",
    "content-security-policy",
    "cache-control",
    "pragma",
)


def h2c_client(served: ServedApp, address: str | None = None) -> httpx.AsyncClient:
    """HTTP/2 by prior knowledge: no HTTP/1.1 at all."""
    transport = httpx.AsyncHTTPTransport(
        http1=False, http2=True, local_address=address or loopback_address()
    )
    return httpx.AsyncClient(base_url=served.base_url, transport=transport, timeout=60)


@pytest.fixture
async def user(served_engine: AsyncEngine) -> User:
    return await committed_user(served_engine)


async def access_token(client: httpx.AsyncClient, user: User) -> str:
    response = await client.post(
        LOGIN, json={"email": user.email, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def comparable(response: httpx.Response) -> tuple[int, Any, dict[str, str | None]]:
    body = response.json() if response.content else None
    if isinstance(body, dict):
        # Fields that differ from one answer to the next.
        for key in ("access_token", "refresh_token", "last_used_at"):
            body.pop(key, None)
    return (
        response.status_code,
        body,
        {name: response.headers.get(name) for name in SECURITY_HEADERS},
    )


REQUESTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "healthz": ("GET", "/healthz", {}),
    "me": ("GET", ME, {"auth": True}),
    "me-no-token": ("GET", ME, {}),
    "users-page": ("GET", f"{USERS}?page=1&per_page=5", {"auth": True}),
    "unknown-route": ("GET", "/api/v1/no-such-route", {}),
    "wrong-method": ("DELETE", "/healthz", {}),
    "login-bad-json": ("POST", LOGIN, {"content": b"{", "json_type": True}),
    "login-missing-fields": ("POST", LOGIN, {"json": {}}),
}


async def send(
    client: httpx.AsyncClient, name: str, token: str, request_id: str
) -> httpx.Response:
    method, path, options = REQUESTS[name]
    headers = {"X-Request-ID": request_id}
    if options.get("auth"):
        headers |= bearer(token)
    if options.get("json_type"):
        headers["Content-Type"] = "application/json"
    return await client.request(
        method,
        path,
        headers=headers,
        content=options.get("content"),
        json=options.get("json"),
    )


@pytest.mark.parametrize("name", list(REQUESTS))
async def test_h2c_answers_as_http11_does(
    served: ServedApp, user: User, name: str
) -> None:
    async with served.client() as http11, h2c_client(served) as http2:
        token = await access_token(http11, user)
        over_11 = await send(http11, name, token, f"h1-{name}")
        over_2 = await send(http2, name, token, f"h2-{name}")

    assert (over_11.http_version, over_2.http_version) == ("HTTP/1.1", "HTTP/2")
    assert comparable(over_2) == comparable(over_11)
    assert over_11.headers["x-request-id"] == f"h1-{name}"
    assert over_2.headers["x-request-id"] == f"h2-{name}"


async def test_h2c_request_ids_are_echoed_made_and_logged(
    served: ServedApp, user: User
) -> None:
    echoed = f"h2-{uuid.uuid4().hex}"
    async with h2c_client(served) as http2:
        given = await http2.get("/healthz", headers={"X-Request-ID": echoed})
        made = await http2.get("/healthz")
        unsafe = await http2.get("/healthz", headers={"X-Request-ID": "bad id"})

    assert given.headers["x-request-id"] == echoed
    assert len(made.headers["x-request-id"]) == 32
    assert unsafe.headers["x-request-id"] not in (
        "bad id",
        made.headers["x-request-id"],
    )
    logged = wait_for_access_lines(served, given, made, unsafe)
    assert [line["request_id"] for line in logged] == [
        given.headers["x-request-id"],
        made.headers["x-request-id"],
        unsafe.headers["x-request-id"],
    ]


def wait_for_access_lines(
    served: ServedApp, *responses: httpx.Response
) -> list[dict[str, Any]]:
    """The served instance's access lines of these answers, in their order."""
    ids = [response.headers["x-request-id"] for response in responses]
    deadline = time.monotonic() + 10
    while True:
        lines = {
            line["request_id"]: line
            for line in served.log_lines("service.access")
            if line.get("request_id") in ids
        }
        if len(lines) == len(ids) or time.monotonic() > deadline:
            return [lines[request_id] for request_id in ids if request_id in lines]
        time.sleep(0.05)


async def test_h2c_client_address_is_the_connections_as_over_http11(
    served: ServedApp,
) -> None:
    address = loopback_address()
    async with served.client(address) as http11, h2c_client(served, address) as http2:
        over_11 = await http11.get("/healthz")
        over_2 = await http2.get("/healthz")

    logged = wait_for_access_lines(served, over_11, over_2)
    assert [line["remote_addr"] for line in logged] == [address, address]


async def test_login_failures_over_h2c_and_http11_spend_one_address_budget(
    served_small: ServedApp,
) -> None:
    # served_small: LOGIN_MAX_FAILURES_PER_IP=5. A new account each time, so that
    # only the address's budget is spent.
    address = loopback_address()

    def attempt() -> dict[str, str]:
        return {"email": f"{uuid.uuid4().hex}@example.com", "password": "wrong-pass"}

    async with (
        served_small.client(address) as http11,
        h2c_client(served_small, address) as http2,
    ):
        statuses = [(await http11.post(LOGIN, json=attempt())).status_code]
        for _ in range(2):
            statuses.append((await http2.post(LOGIN, json=attempt())).status_code)
            statuses.append((await http11.post(LOGIN, json=attempt())).status_code)
        refused_2 = await http2.post(LOGIN, json=attempt())
        refused_11 = await http11.post(LOGIN, json=attempt())

    assert statuses == [401] * 5
    assert (refused_2.status_code, refused_11.status_code) == (429, 429)
    assert refused_2.json() == refused_11.json()


# ------------------------------------------------------------ raw HTTP/2 streams


@dataclass
class Stream:
    status: int = 0
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: bool = False


class H2Connection:
    """One TCP connection speaking HTTP/2 by prior knowledge, streams by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.streams: dict[int, Stream] = {}
        self.goaway = False
        self.closed = False

    @classmethod
    async def open(cls, port: int) -> H2Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        connection = cls(reader, writer)
        connection.h2.initiate_connection()
        await connection.flush()
        return connection

    async def flush(self) -> None:
        self.writer.write(self.h2.data_to_send())
        await self.writer.drain()

    def start(
        self, method: str, path: str, headers: dict[str, str], *, end: bool = True
    ) -> int:
        stream_id: int = self.h2.get_next_available_stream_id()
        self.h2.send_headers(
            stream_id,
            [
                (":method", method),
                (":path", path),
                (":scheme", "http"),
                (":authority", "127.0.0.1"),
                *headers.items(),
            ],
            end_stream=end,
        )
        self.streams[stream_id] = Stream()
        return stream_id

    async def read_until(self, done: Any) -> None:
        async with asyncio.timeout(30):
            while not done() and not self.closed:
                await self.read_once()

    async def read_once(self) -> None:
        data = await self.reader.read(65536)
        if not data:
            self.closed = True
            return
        for event in self.h2.receive_data(data):
            self._handle(event)
        await self.flush()

    async def send_body(self, stream_id: int, body: bytes) -> None:
        """`body` as flow control lets it go, until the answer has ended (an
        early answer: the rest is not sent, the stream is cancelled)."""
        stream = self.streams[stream_id]
        sent = 0
        async with asyncio.timeout(30):
            while sent < len(body) and not stream.ended and not self.closed:
                window = min(
                    self.h2.local_flow_control_window(stream_id),
                    self.h2.max_outbound_frame_size,
                )
                if window == 0:
                    await self.read_once()
                    continue
                chunk = body[sent : sent + window]
                sent += len(chunk)
                self.h2.send_data(stream_id, chunk, end_stream=sent == len(body))
                await self.flush()
        if sent < len(body):
            self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            await self.flush()

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            stream = self.streams[event.stream_id]
            stream.headers = dict(event.headers)
            stream.status = int(stream.headers[b":status"])
        elif isinstance(event, h2.events.DataReceived):
            self.streams[event.stream_id].body += event.data
            self.h2.acknowledge_received_data(
                event.flow_controlled_length, event.stream_id
            )
        elif isinstance(event, h2.events.StreamEnded):
            self.streams[event.stream_id].ended = True
        elif isinstance(event, h2.events.StreamReset):
            self.streams[event.stream_id].reset = True
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = True

    def all_ended(self, ids: list[int]) -> bool:
        return all(self.streams[i].ended or self.streams[i].reset for i in ids)

    async def get_healthz(self) -> int:
        """GET /healthz on this connection, read to its end: the stream's id."""
        stream_id = self.start("GET", "/healthz", {})
        await self.flush()
        await self.read_until(lambda: self.all_ended([stream_id]))
        return stream_id

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def test_h2c_body_too_large_is_a_413_json_as_over_http11(
    served: ServedApp,
) -> None:
    body = b"{" + b" " * (1024 * 1024 + 1) + b"}"
    headers = {"content-type": "application/json", "content-length": str(len(body))}
    async with served.client() as http11:
        over_11 = await http11.post(LOGIN, content=body, headers=headers)
    connection = await H2Connection.open(served.port)
    try:
        refused = connection.start("POST", LOGIN, headers, end=False)
        await connection.flush()
        await connection.send_body(refused, body)
        await connection.read_until(lambda: connection.all_ended([refused]))
        # The connection serves on after it.
        after = await connection.get_healthz()
    finally:
        await connection.close()

    over_2 = connection.streams[refused]
    assert (over_2.status, orjson.loads(over_2.body)) == (413, TOO_LARGE)
    assert (over_11.status_code, over_11.json()) == (413, TOO_LARGE)
    for name in SECURITY_HEADERS:
        assert over_2.headers.get(name.encode()) == (
            None if name not in over_11.headers else over_11.headers[name].encode()
        ), name
    assert connection.streams[after].status == 200


async def test_an_early_answer_with_its_body_still_coming_keeps_the_connection(
    served: ServedApp,
) -> None:
    """A 401 before the body (no token): the body's data come after the answer
    would have ended. Hypercorn 0.18 would drop the connection for them, every
    stream on it; service/unread_body.py holds the answer's end until they came."""
    body = orjson.dumps({"title": "t", "content": "x" * 2000})
    headers = {"content-type": "application/json", "content-length": str(len(body))}
    connection = await H2Connection.open(served.port)
    try:
        early = connection.start("POST", "/api/v1/posts", headers, end=False)
        connection.h2.send_data(early, body[:100])
        await connection.flush()
        await asyncio.sleep(0.5)
        connection.h2.send_data(early, body[100:], end_stream=True)
        await connection.flush()
        await connection.read_until(lambda: connection.all_ended([early]))
        later = await connection.get_healthz()
    finally:
        await connection.close()

    assert (connection.streams[early].status, connection.streams[early].reset) == (
        401,
        False,
    )
    assert b"connection" not in connection.streams[early].headers
    assert connection.streams[later].status == 200
    assert not connection.closed


async def test_fifty_concurrent_requests_on_one_connection(
    served: ServedApp, user: User
) -> None:
    async with served.client() as http11:
        token = await access_token(http11, user)
    connection = await H2Connection.open(served.port)
    try:
        ids = [
            connection.start("GET", ME, {"authorization": f"Bearer {token}"})
            for _ in range(50)
        ]
        await connection.flush()
        await connection.read_until(lambda: connection.all_ended(ids))
    finally:
        await connection.close()

    streams = [connection.streams[i] for i in ids]
    assert [stream.status for stream in streams] == [200] * 50
    assert {orjson.loads(stream.body)["email"] for stream in streams} == {user.email}
    request_ids = {stream.headers[b"x-request-id"] for stream in streams}
    assert len(request_ids) == 50


@pytest.fixture
def own_instance(served_database_url: str, tmp_path: Path) -> Iterator[ServedApp]:
    """An instance of the test's own, to stop."""
    with serve(served_database_url, tmp_path) as instance:
        yield instance


async def test_sigterm_with_streams_open_answers_them_then_exits(
    own_instance: ServedApp, user: User
) -> None:
    connection = await H2Connection.open(own_instance.port)
    body = orjson.dumps({"email": user.email, "password": PASSWORD})
    half = len(body) // 2
    try:
        # Logins whose bodies have not all come when the stop begins.
        ids = [
            connection.start(
                "POST",
                LOGIN,
                {"content-type": "application/json", "content-length": str(len(body))},
                end=False,
            )
            for _ in range(10)
        ]
        for stream_id in ids:
            connection.h2.send_data(stream_id, body[:half])
        await connection.flush()
        await asyncio.sleep(0.3)
        process = own_instance.process
        assert process is not None
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        for stream_id in ids:
            connection.h2.send_data(stream_id, body[half:], end_stream=True)
        await connection.flush()
        await connection.read_until(lambda: connection.all_ended(ids))
        exit_code = await asyncio.to_thread(process.wait, 30)
        stopped_in = time.monotonic() - stopping
    finally:
        await connection.close()

    streams = [connection.streams[i] for i in ids]
    assert [(s.status, s.reset) for s in streams] == [(200, False)] * 10
    assert all("access_token" in orjson.loads(s.body) for s in streams)
    assert exit_code == 0
    assert stopped_in < 15


# ------------------------------------------------------------------------- curl


def curl(*arguments: str) -> str:
    if CURL is None:
        pytest.skip("no curl (.ci/run installs Debian's curl)")
    result = subprocess.run(  # noqa: S603 (curl, arguments of the test's own)
        [CURL, "--silent", "--show-error", "--dump-header", "-", *arguments],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout


@pytest.mark.parametrize(
    ("option", "statuses"),
    [
        ("--http2-prior-knowledge", ["HTTP/2 200"]),
        # Upgrade: h2c, answered 101, then the answer over HTTP/2.
        ("--http2", ["HTTP/1.1 101", "HTTP/2 200"]),
    ],
)
async def test_curl_over_h2c(
    served: ServedApp, user: User, option: str, statuses: list[str]
) -> None:
    async with served.client() as http11:
        token = await access_token(http11, user)

    output = await asyncio.to_thread(
        curl,
        option,
        "--header",
        f"Authorization: Bearer {token}",
        "--header",
        "X-Request-ID: curl-h2c",
        f"{served.base_url}{ME}",
    )

    status_lines = [
        line.strip() for line in output.splitlines() if line.startswith("HTTP/")
    ]
    assert status_lines == statuses
    headers = output.lower()
    assert "x-request-id: curl-h2c" in headers
    assert "x-content-type-options: nosniff" in headers
    # Text mode: curl's CRLFs are read as newlines.
    body = output.rsplit("\n\n", 1)[1]
    assert orjson.loads(body)["email"] == user.email


async def test_one_connection_carries_more_requests_than_hypercorn_recycles_after(
    served: ServedApp,
) -> None:
    """Hypercorn closes an HTTP/2 connection after `keep_alive_max_requests`
    (1,000 by default) with a GOAWAY that ends its state machine, so the streams
    still open on it die unanswered; hypercorn.toml raises that count."""
    connection = await H2Connection.open(served.port)
    ids: list[int] = []
    try:
        while len(ids) < 1_100 and not (connection.goaway or connection.closed):
            batch = [connection.start("GET", "/healthz", {}) for _ in range(50)]
            await connection.flush()
            await connection.read_until(lambda: connection.all_ended(batch))  # noqa: B023
            ids += batch
    finally:
        await connection.close()

    assert not connection.goaway
    assert [connection.streams[i].status for i in ids] == [200] * 1_100
