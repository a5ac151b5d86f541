"""Keep-alive clients after early answers: the connection stays usable, or is
closed saying so, never dropped under a request (issue 24; service/unread_body.py).

bench/keepalive.py runs the same kinds at scale (5,000 pairs a kind, 64 clients
for a minute, through HAProxy too).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from importlib.metadata import version
from typing import Any

import h11
import pytest
from quart import Quart

from service.unread_body import LINGER_BYTES, UnreadBody
from tests.support import ROOT
from tests.system.harness import ServedApp, clean_environment
from tests.system.keepalive import (
    KINDS,
    KINDS_BY_NAME,
    LARGEST_BODY,
    MAX_CONTENT_LENGTH,
    Kind,
    Tally,
    account_token,
    error_samples,
    json_body,
    mixed_clients,
    pairs_on_one_connection,
)
from tests.system.stack import HAPROXY_CFG

ANSWERED_UNREAD = [
    KINDS_BY_NAME[name]
    for name in (
        "401 no token",
        "422 malformed token",
        "404 unknown path",
        "405 wrong method",
        "415 text/plain",
    )
]
OVERSIZED = KINDS_BY_NAME["413 body 1-10 MiB"]
# Each pair: an early answer, then GET /healthz on the same connection.
PAIRS = 16
OVERSIZED_PAIRS = 4


def assert_clean(tallies: dict[str, Tally]) -> None:
    assert error_samples(tallies) == []
    assert {name: dict(t.wrong_status) for name, t in tallies.items()} == {
        name: {} for name in tallies
    }


# ------------------------------------------------------------------ raw HTTP/1.1


class RawConnection:
    """An HTTP/1.1 client whose request head and body go out when the test says."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, *events: Any) -> None:
        for event in events:
            self.writer.write(self.h11.send(event) or b"")
        await self.writer.drain()

    async def head(
        self, method: str, path: str, headers: dict[str, str], length: int
    ) -> None:
        await self.send(
            h11.Request(
                method=method,
                target=path,
                headers=[
                    ("Host", "localhost"),
                    *headers.items(),
                    ("Content-Length", str(length)),
                ],
            )
        )

    async def response(self) -> tuple[h11.Response, bytes]:
        head: h11.Response | None = None
        body = b""
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                data = await self.reader.read(65536)
                self.h11.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return head, body
            else:
                raise AssertionError(f"unexpected {event!r}")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
async def raw(served: ServedApp) -> AsyncIterator[RawConnection]:
    connection = await RawConnection.open(served.port)
    yield connection
    await connection.close()


def header(response: h11.Response, name: bytes) -> bytes | None:
    return dict(response.headers).get(name)


# ------------------------------------------------------- one keep-alive connection


@pytest.mark.parametrize("kind", KINDS, ids=[kind.name for kind in KINDS])
async def test_early_answers_keep_one_connection_usable(
    served: ServedApp, kind: Kind
) -> None:
    count = OVERSIZED_PAIRS if kind is OVERSIZED else PAIRS

    tally = await pairs_on_one_connection(served.base_url, kind, count, seed=24)

    assert_clean({kind.name: tally})
    assert tally.requests == 2 * count
    if kind is OVERSIZED:
        # Too large to read for the connection's sake: closed after each answer.
        assert tally.connections <= count + 1
    else:
        assert tally.connections == 1


@pytest.mark.parametrize(
    "kind", ANSWERED_UNREAD, ids=[kind.name for kind in ANSWERED_UNREAD]
)
async def test_an_answer_before_the_body_waits_for_it_and_keeps_the_connection(
    raw: RawConnection, kind: Kind
) -> None:
    body = json_body(16 * 1024)
    await raw.head(kind.method, kind.path, dict(kind.headers), len(body))

    # The service knows its answer from the head alone; it holds it until the
    # body is in, as a route reading the body would.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(raw.reader.read(1), 0.3)
    await raw.send(h11.Data(data=body), h11.EndOfMessage())
    answer, _ = await raw.response()
    raw.h11.start_next_cycle()
    await raw.send(
        h11.Request(method="GET", target="/healthz", headers=[("Host", "localhost")]),
        h11.EndOfMessage(),
    )
    after, _ = await raw.response()

    assert answer.status_code == kind.status
    assert header(answer, b"connection") is None
    assert after.status_code == 200


async def test_a_client_still_sending_a_body_too_large_reads_the_413(
    raw: RawConnection,
) -> None:
    await raw.head(
        "POST", "/api/v1/users", {"Content-Type": "application/json"}, 10 * 2**20
    )

    answer, body = await raw.response()
    # More than the socket buffers hold: the service keeps reading while it comes.
    raw.writer.write(b"x" * (10 * 2**20))
    await raw.writer.drain()
    closed = await asyncio.wait_for(raw.reader.read(), 10)

    assert answer.status_code == 413
    assert header(answer, b"connection") == b"close"
    assert b"exceeds the capacity limit" in body
    # A clean close once the body is in (EOF), not a reset.
    assert closed == b""


async def test_concurrent_keep_alive_clients_mixing_early_answers(
    served: ServedApp,
) -> None:
    token = await account_token(served.base_url, "mixed@example.com", "mixed-pass-1")

    tallies = await mixed_clients(
        served.base_url, token, clients=8, seconds=2.0, seed=24
    )

    assert_clean(tallies)
    assert sum(t.requests for t in tallies.values()) > 50
    assert {kind.name for kind in KINDS} <= set(tallies)


# ------------------------------------------------------------------- HAProxy


@pytest.mark.parametrize("kind", KINDS, ids=[kind.name for kind in KINDS])
async def test_early_answers_through_haproxy_keep_the_client_connection(
    behind_haproxy: str, kind: Kind
) -> None:
    count = OVERSIZED_PAIRS if kind is OVERSIZED else PAIRS // 2

    tally = await pairs_on_one_connection(behind_haproxy, kind, count, seed=25)

    assert_clean({kind.name: tally})
    # HAProxy reads every body to its end for the replica: one client connection.
    assert tally.connections == 1


async def test_concurrent_keep_alive_clients_through_haproxy(
    behind_haproxy: str,
) -> None:
    token = await account_token(behind_haproxy, "mixed-lb@example.com", "mixed-pass-1")

    tallies = await mixed_clients(
        behind_haproxy, token, clients=8, seconds=2.0, seed=25
    )

    assert_clean(tallies)
    assert sum(t.requests for t in tallies.values()) > 50


def test_haproxy_refuses_only_bodies_a_replica_would_not_read_to_their_end() -> None:
    # HAProxy 2.6 (Debian's) resets a client still sending when it answers a
    # request itself; below the replicas' lingering bound the replica answers
    # the 413 and reads the rest. The bench's largest body passes to a replica.
    (limit,) = re.findall(
        r"deny deny_status 413 if \{ req\.hdr_val\(content-length\) gt (\d+) \}",
        HAPROXY_CFG.read_text(),
    )

    assert int(limit) == LINGER_BYTES
    assert LARGEST_BODY < LINGER_BYTES


# -------------------------------------- what Hypercorn does without UnreadBody


async def test_hypercorn_alone_drops_the_connection_after_an_early_answer(
    served_database_url: str, tmp_path: Any
) -> None:
    """Pins the Hypercorn behaviour service/unread_body.py works around: when
    this fails, Hypercorn has changed and UnreadBody may have become needless."""
    env = clean_environment(DATABASE_URL=served_database_url)
    # The app without the middleware that service.asgi adds.
    bare = await asyncio.to_thread(
        ServedApp, env, ROOT, tmp_path, "service.app:create_app()"
    )
    try:
        connection = await RawConnection.open(bare.port)
        kind = KINDS_BY_NAME["422 malformed token"]
        body = json_body(1024)
        await connection.head(kind.method, kind.path, dict(kind.headers), len(body))
        answer, _ = await connection.response()
        # What a keep-alive client sends next: the rest of its body, its next request.
        try:
            connection.writer.write(body + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            await connection.writer.drain()
            after = await asyncio.wait_for(connection.reader.read(), 10)
        except ConnectionError:
            after = b""
        await connection.close()
    finally:
        await asyncio.to_thread(bare.stop)

    assert version("hypercorn") == "0.18.0"
    assert answer.status_code == 422
    # Keep-alive as far as the client can tell, and then no answer at all.
    assert header(answer, b"connection") is None
    assert after == b""


# ----------------------------------------------------------- the bounds, in-process


def http_scope(method: str, path: str, *headers: tuple[bytes, bytes]) -> Any:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.1"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 5000),
        "state": {},
        "extensions": {},
    }


JSON_TYPE = (b"content-type", b"application/json")
OVERSIZED_SCOPE = http_scope(
    "POST", "/api/v1/users", JSON_TYPE, (b"content-length", str(10 * 2**20).encode())
)


def body_part(data: bytes) -> dict[str, Any]:
    return {"type": "http.request", "body": data, "more_body": True}


async def call(
    middleware: UnreadBody, scope: Any, *incoming: dict[str, Any]
) -> tuple[list[dict[str, Any]], float]:
    """What the app sends, and how long the call took, for a client that sends
    `incoming` and then nothing more (but stays connected). Once the answer has
    ended the app hears `http.disconnect`, as Hypercorn tells it when it closes
    the stream (Quart 0.23 returns only then)."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for message in incoming:
        await queue.put(message)
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(dict(message))
        if message["type"] == "http.response.body" and not message.get("more_body"):
            queue.put_nowait({"type": "http.disconnect"})

    started = time.monotonic()
    await asyncio.wait_for(middleware(scope, queue.get, send), 10)
    return sent, time.monotonic() - started


def start_headers(messages: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    (start,) = [m for m in messages if m["type"] == "http.response.start"]
    return list(start["headers"])


async def test_a_stalled_small_body_is_waited_for_then_the_connection_closes(
    app: Quart,
) -> None:
    middleware = UnreadBody(
        app.asgi_app,
        drain_bytes=MAX_CONTENT_LENGTH,
        drain_seconds=0.2,
        linger_seconds=0.2,
    )
    scope = http_scope("POST", "/api/v1/posts", JSON_TYPE, (b"content-length", b"1000"))

    messages, elapsed = await call(middleware, scope, body_part(b"{"))

    assert messages[0]["status"] == 401
    assert (b"connection", b"close") in start_headers(messages)
    assert messages[-1] == {
        "type": "http.response.body",
        "body": b"",
        "more_body": False,
    }
    # The drain's wait, then the lingering one.
    assert 0.4 <= elapsed < 2


async def test_a_body_too_large_is_answered_at_once_then_read_while_bytes_come(
    app: Quart,
) -> None:
    # No byte for idle_seconds ends the lingering long before linger_seconds.
    middleware = UnreadBody(
        app.asgi_app,
        drain_bytes=MAX_CONTENT_LENGTH,
        linger_seconds=30,
        idle_seconds=0.3,
    )

    messages, elapsed = await call(middleware, OVERSIZED_SCOPE, body_part(b"{"))

    assert messages[0]["status"] == 413
    assert (b"connection", b"close") in start_headers(messages)
    # The answer's bytes went out before the wait; only its end waited.
    sent_before_the_end = b"".join(m.get("body", b"") for m in messages[:-1])
    assert b"exceeds the capacity limit" in sent_before_the_end
    assert 0.3 <= elapsed < 2


async def test_a_chunked_body_past_the_drain_bound_closes_without_waiting_longer(
    app: Quart,
) -> None:
    middleware = UnreadBody(
        app.asgi_app, drain_bytes=1024, drain_seconds=5, linger_seconds=0.2
    )
    scope = http_scope(
        "POST", "/api/v1/posts", JSON_TYPE, (b"transfer-encoding", b"chunked")
    )

    messages, elapsed = await call(middleware, scope, *[body_part(b"x" * 512)] * 4)

    assert messages[0]["status"] == 401
    assert (b"connection", b"close") in start_headers(messages)
    assert elapsed < 2


async def test_a_client_gone_while_lingering_ends_the_wait(app: Quart) -> None:
    middleware = UnreadBody(
        app.asgi_app, drain_bytes=MAX_CONTENT_LENGTH, linger_seconds=30
    )

    messages, elapsed = await call(
        middleware, OVERSIZED_SCOPE, body_part(b"{"), {"type": "http.disconnect"}
    )

    assert messages[0]["status"] == 413
    assert elapsed < 5


async def test_requests_without_a_body_pass_untouched(app: Quart) -> None:
    middleware = UnreadBody(app.asgi_app, drain_bytes=MAX_CONTENT_LENGTH)
    request = {"type": "http.request", "body": b"", "more_body": False}

    messages, _ = await call(middleware, http_scope("GET", "/healthz"), request)

    assert messages[0]["status"] == 200
    assert (b"connection", b"close") not in start_headers(messages)
