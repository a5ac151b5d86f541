"""api/headers.py's middleware on answers the service's routes never give: an
answer's own headers kept or replaced, raw ASGI in and out."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import pytest

from service.api.headers import JSON_CSP, ResponseHeaders
from service.telemetry.logs import REQUEST_ID_SCOPE_KEY

Message = MutableMapping[str, Any]
ORIGIN = "https://app.example.com"


def answering(*headers: tuple[bytes, bytes]) -> Callable[..., Awaitable[None]]:
    """An ASGI app answering 200 with these headers, keeping the scope it saw."""

    async def app(
        scope: Message,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        app.scope = scope  # type: ignore[attr-defined]
        await send(
            {"type": "http.response.start", "status": 200, "headers": list(headers)}
        )
        await send({"type": "http.response.body", "body": b"{}"})

    return app


async def answer_headers(
    app: Callable[..., Awaitable[None]],
    path: str = "/api/v1/users",
    *,
    method: str = "GET",
    headers: tuple[tuple[bytes, bytes], ...] = (),
    root_path: str = "",
) -> list[tuple[bytes, bytes]]:
    middleware = ResponseHeaders(
        app, no_store_under=("/api/v1/auth",), cors_origins=(ORIGIN,)
    )
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": root_path,
        "headers": list(headers),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    assert [message["type"] for message in sent] == [
        "http.response.start",
        "http.response.body",
    ]
    return list(sent[0]["headers"])


def values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [value for key, value in headers if key.lower() == name]


async def test_the_answers_own_security_headers_are_kept() -> None:
    headers = await answer_headers(
        answering(
            (b"x-frame-options", b"SAMEORIGIN"),
            (b"content-security-policy", b"default-src 'self'"),
            (b"content-type", b"application/json"),
        )
    )

    assert values(headers, b"x-frame-options") == [b"SAMEORIGIN"]
    assert values(headers, b"content-security-policy") == [b"default-src 'self'"]
    assert values(headers, b"x-content-type-options") == [b"nosniff"]
    assert values(headers, b"referrer-policy") == [b"no-referrer"]


@pytest.mark.parametrize(
    ("content_type", "csp"),
    [
        (b"application/json", [JSON_CSP.encode()]),
        (b"Application/JSON; charset=utf-8", [JSON_CSP.encode()]),
        (b"text/html; charset=utf-8", []),
        (None, []),
    ],
)
async def test_only_a_json_answer_gets_the_json_csp(
    content_type: bytes | None, csp: list[bytes]
) -> None:
    own = () if content_type is None else ((b"content-type", content_type),)

    headers = await answer_headers(answering(*own))

    assert values(headers, b"content-security-policy") == csp


async def test_the_request_id_replaces_one_the_answer_set() -> None:
    app = answering((b"X-Request-ID", b"from-the-app"))

    headers = await answer_headers(app, headers=((b"x-request-id", b"abc-123"),))

    assert values(headers, b"x-request-id") == [b"abc-123"]
    assert app.scope[REQUEST_ID_SCOPE_KEY] == "abc-123"  # type: ignore[attr-defined]


async def test_the_first_of_repeated_request_ids_counts() -> None:
    headers = await answer_headers(
        answering(),
        headers=((b"x-request-id", b"first"), (b"x-request-id", b"second")),
    )

    assert values(headers, b"x-request-id") == [b"first"]


async def test_an_unsafe_request_id_is_replaced_by_a_generated_one() -> None:
    app = answering()

    headers = await answer_headers(
        app, headers=((b"x-request-id", b"bad id\r\nX-Injected: 1"),)
    )

    (echoed,) = values(headers, b"x-request-id")
    assert re.fullmatch(rb"[0-9a-f]{32}", echoed)
    assert app.scope[REQUEST_ID_SCOPE_KEY] == echoed.decode()  # type: ignore[attr-defined]


async def test_no_store_replaces_the_answers_cache_headers() -> None:
    headers = await answer_headers(
        answering((b"cache-control", b"max-age=600"), (b"pragma", b"cache")),
        "/api/v1/auth/login",
    )

    assert values(headers, b"cache-control") == [b"no-store"]
    assert values(headers, b"pragma") == [b"no-cache"]


async def test_no_store_is_decided_on_the_path_under_the_root_path() -> None:
    headers = await answer_headers(
        answering(), "/prefix/api/v1/auth/login", root_path="/prefix"
    )

    assert values(headers, b"cache-control") == [b"no-store"]


async def test_other_paths_keep_their_cache_headers() -> None:
    headers = await answer_headers(answering((b"cache-control", b"max-age=600")))

    assert values(headers, b"cache-control") == [b"max-age=600"]
    assert values(headers, b"pragma") == []


async def test_vary_origin_is_added_to_the_answers_vary() -> None:
    headers = await answer_headers(
        answering((b"vary", b"Accept-Encoding")),
        headers=((b"origin", b"https://other.example.com"),),
    )

    assert values(headers, b"vary") == [b"Accept-Encoding", b"Origin"]
    assert values(headers, b"access-control-allow-origin") == []


async def test_an_allowed_origin_replaces_an_allow_origin_the_answer_set() -> None:
    headers = await answer_headers(
        answering((b"access-control-allow-origin", b"*")),
        headers=((b"origin", ORIGIN.encode()),),
    )

    assert values(headers, b"access-control-allow-origin") == [ORIGIN.encode()]
    assert values(headers, b"access-control-expose-headers") == [
        b"Retry-After, X-Request-ID"
    ]


async def test_lifespan_passes_through_untouched() -> None:
    seen: list[Message] = []

    async def app(
        scope: Message,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        seen.append(scope)
        await send({"type": "lifespan.startup.complete"})

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "lifespan"}
    await ResponseHeaders(app, no_store_under=("/",))(scope, receive, send)

    assert seen == [{"type": "lifespan"}]
    assert sent == [{"type": "lifespan.startup.complete"}]
