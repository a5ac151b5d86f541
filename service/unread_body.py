"""The request body an answer left unread, on an HTTP/1.1 keep-alive connection.

Many answers go out before the body is read: a missing or bad token, an unknown
path or method, a body too large or not JSON. Hypercorn 0.18 (its h11
protocol) then closes the connection as soon as the answer ends, because the
request is not finished (`H11Protocol._maybe_recycle`), but the answer does not
say `Connection: close`; and it closes the socket with the rest of the body
unread (`TCPServer._close`), so the kernel answers the client's next bytes with
a reset. A keep-alive client sends its next request on a connection already
gone ("Server disconnected without sending a response"), or, still sending a
large body, reads the reset instead of the answer.

`UnreadBody` sees every answer that starts before the body has ended:

- a body of a size the service accepts (`drain_bytes`, MAX_CONTENT_LENGTH) is
  read to its end first, as a route reading it would, within `drain_seconds`;
  then Hypercorn starts the next request on the same connection;
- any other (larger, or slower than that) gets `Connection: close` on the
  answer, and after the answer's last byte the rest of the body is read and
  dropped, at most `linger_bytes` for at most `linger_seconds`, before the
  answer ends and Hypercorn closes (nginx's lingering close): a client still
  sending reads the answer, not a reset.

Either wait also ends when no byte came for `idle_seconds`.

HTTP/2 (h2c) needs the same waits for another reason: Hypercorn 0.18 drops the
whole connection, every stream on it, when DATA arrive for a stream whose answer
has ended (`H2Protocol._handle_events` indexes its closed streams; upstream
pgjones/hypercorn#329, unreleased). So there too a body the answer left unread
is read first (small) or after the answer's last byte and before its end
(large), but the answer never says `Connection: close`: HTTP/2 has no such
header, and the connection stays usable. A stream that declares no length is
left alone (nothing says a body comes).

The body is read through the app's own `receive`, next to Quart's reader of it
(which keeps at most MAX_CONTENT_LENGTH of it), so what is dropped is dropped
by the same code as any body Quart refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Quart's asgi_app, typed with its TypedDicts: the same calls.
ASGIApp = Callable[..., Awaitable[None]]

# nginx's defaults for its lingering close: lingering_time, lingering_timeout.
LINGER_SECONDS = 30.0
IDLE_SECONDS = 5.0
DRAIN_SECONDS = 10.0
# deploy/haproxy.cfg refuses larger bodies itself (tests/system checks the two
# agree): ten times MAX_CONTENT_LENGTH's default is read to tell a client so.
LINGER_BYTES = 16 * 1024 * 1024
HTTP1 = frozenset({"1.0", "1.1"})
HTTP2 = "2"


class RequestBody:
    """The request's `receive`, counting the body as anyone reads it."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.received = 0
        self.ended = False
        self._max_total = -1
        # Set by every message, whoever reads it.
        self._progress = asyncio.Event()

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.ended = not message.get("more_body", False)
        elif message["type"] == "http.disconnect":
            self.ended = True
        self._progress.set()
        return message

    def _finished(self) -> bool:
        return self.ended or self.received > self._max_total

    async def read_to_end(
        self, max_total: int, seconds: float, idle_seconds: float
    ) -> bool:
        """Reads the rest of the body while it is at most `max_total` bytes
        long, for at most `seconds` and while bytes come: True when it ended
        (or the client went away) within those bounds."""
        self._max_total = max_total
        if self._finished():
            return self.ended

        async def pull() -> None:
            while not self._finished():
                await self.receive()

        # Quart's own reader takes its share of the messages: whoever reads
        # the last one (or the one past the bound) ends the wait.
        puller = asyncio.ensure_future(pull())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        try:
            while not self._finished():
                self._progress.clear()
                wait = min(idle_seconds, deadline - loop.time())
                if wait <= 0:
                    break
                try:
                    await asyncio.wait_for(self._progress.wait(), wait)
                except TimeoutError:
                    break
        finally:
            puller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await puller
        return self.ended


def declares_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"transfer-encoding" or (
            lowered == b"content-length" and value.strip() != b"0"
        ):
            return True
    return False


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            with contextlib.suppress(ValueError):
                return int(value)
    return None


class UnreadBody:
    """ASGI middleware: an answer that starts before the request body has ended
    leaves the connection usable, or closes it saying so, without a reset."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        drain_bytes: int,
        drain_seconds: float = DRAIN_SECONDS,
        linger_bytes: int = LINGER_BYTES,
        linger_seconds: float = LINGER_SECONDS,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.app = app
        self.drain_bytes = drain_bytes
        self.drain_seconds = drain_seconds
        self.linger_bytes = linger_bytes
        self.linger_seconds = linger_seconds
        self.idle_seconds = idle_seconds

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("http_version") not in (*HTTP1, HTTP2)
            or not declares_body(scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        body = RequestBody(receive)
        declared = declared_length(scope["headers"])
        closes = scope["http_version"] in HTTP1
        lingering = False

        async def guarded_send(message: Message) -> None:
            nonlocal lingering
            if message["type"] == "http.response.start" and not body.ended:
                length = body.received if declared is None else declared
                if not (
                    length <= self.drain_bytes
                    and await body.read_to_end(
                        self.drain_bytes, self.drain_seconds, self.idle_seconds
                    )
                ):
                    lingering = True
                    if closes:
                        headers = [
                            *message.get("headers", ()),
                            (b"connection", b"close"),
                        ]
                        message = {**message, "headers": headers}
            elif (
                lingering
                and message["type"] == "http.response.body"
                and not message.get("more_body", False)
            ):
                await send({**message, "more_body": True})
                await body.read_to_end(
                    body.received + self.linger_bytes,
                    self.linger_seconds,
                    self.idle_seconds,
                )
                message = {
                    "type": "http.response.body",
                    "body": b"",
                    "more_body": False,
                }
            await send(message)

        await self.app(scope, body.receive, guarded_send)
