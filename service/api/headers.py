"""What every response carries: security headers, the request id, and CORS for an
allow-list of origins, written by one ASGI middleware as raw byte pairs.

No werkzeug `Headers` on this path: `Headers.get` and `setdefault` raise and catch a
`BadRequestKeyError` for every header that is absent, which here is most of them.
The request's headers are read once from the ASGI scope, the response's once from
`http.response.start`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from quart import Quart

from service.config import Settings
from service.telemetry.logs import REQUEST_ID_SCOPE_KEY, new_request_id

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Quart's asgi_app, typed with its TypedDicts: the same calls.
ASGIApp = Callable[..., Awaitable[None]]
HeaderList = list[tuple[bytes, bytes]]

JSON_CSP = "default-src 'none'; frame-ancestors 'none'"
CORS_METHODS = "GET, HEAD, POST, PATCH, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type, X-Request-ID"
CORS_EXPOSED = "Retry-After, X-Request-ID"
# Echoed back into a header and the logs: keep it short and plain.
SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")

REQUEST_ID = b"x-request-id"
ORIGIN = b"origin"
CONTENT_TYPE = b"content-type"
CSP = b"content-security-policy"
JSON_CSP_PAIR = (CSP, JSON_CSP.encode())
# Set when the answer has none of its own.
DEFAULTS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
# Tokens must not linger in shared or browser caches: these replace the answer's.
NO_STORE: HeaderList = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
VARY_ORIGIN = (b"vary", b"Origin")
ALLOW_ORIGIN = b"access-control-allow-origin"
# Bearer tokens, not cookies: credentials are never allowed.
PREFLIGHT: HeaderList = [
    (b"access-control-allow-methods", CORS_METHODS.encode()),
    (b"access-control-allow-headers", CORS_HEADERS.encode()),
    (b"access-control-max-age", b"600"),
]
EXPOSE: HeaderList = [(b"access-control-expose-headers", CORS_EXPOSED.encode())]


def is_json(content_type: bytes) -> bool:
    return content_type.partition(b";")[0].strip().lower() == b"application/json"


class ResponseHeaders:
    """ASGI middleware: the request id taken (when safe) or made, put in the scope
    for the app (`REQUEST_ID_SCOPE_KEY`) and on the answer; the security headers;
    `no-store` under `no_store_under`; CORS for `cors_origins`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        no_store_under: tuple[str, ...],
        cors_origins: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.no_store_under = no_store_under
        self.cors_origins = frozenset(origin.encode() for origin in cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = origin = None
        for name, value in scope["headers"]:
            # ASGI servers give request header names in lower case; the first
            # of a repeated header counts, as werkzeug's Headers.get reads it.
            if name == REQUEST_ID:
                if request_id is None:
                    request_id = value
            elif name == ORIGIN and origin is None:
                origin = value
        if request_id is None or not SAFE_REQUEST_ID.fullmatch(request_id):
            request_id = new_request_id().encode()
        scope[REQUEST_ID_SCOPE_KEY] = request_id.decode("ascii")
        replace, extra = self._answer_headers(scope, request_id, origin)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = merged(message.get("headers", ()), replace, extra)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _answer_headers(
        self, scope: Scope, request_id: bytes, origin: bytes | None
    ) -> tuple[frozenset[bytes], HeaderList]:
        """The names this answer's own headers lose, and the pairs it gains."""
        extra: HeaderList = [(REQUEST_ID, request_id)]
        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :] or "/"
        if path.startswith(self.no_store_under):
            extra += NO_STORE
        if origin is not None and self.cors_origins:
            extra.append(VARY_ORIGIN)
            if origin in self.cors_origins:
                extra.append((ALLOW_ORIGIN, origin))
                extra += PREFLIGHT if scope["method"] == "OPTIONS" else EXPOSE
        # Vary is added to, never replaced: whatever the answer varies on stays.
        return frozenset(name for name, _ in extra if name != b"vary"), extra


def merged(
    headers: Iterable[tuple[bytes, bytes]],
    replace: frozenset[bytes],
    extra: HeaderList,
) -> HeaderList:
    """The answer's headers without the `replace`d names, then the defaults it
    lacks (the JSON CSP for a JSON answer), then `extra`."""
    kept: HeaderList = []
    names: set[bytes] = set()
    content_type = b""
    for pair in headers:
        name = pair[0].lower()
        if name in replace:
            continue
        names.add(name)
        if name == CONTENT_TYPE:
            content_type = pair[1]
        kept.append(pair)
    for pair in DEFAULTS:
        if pair[0] not in names:
            kept.append(pair)
    if CSP not in names and is_json(content_type):
        kept.append(JSON_CSP_PAIR)
    kept += extra
    return kept


def init_app(
    app: Quart, settings: Settings, *, no_store_under: tuple[str, ...]
) -> None:
    """`no_store_under`: path prefixes whose answers must not be cached, the
    unknown and refused paths among them (every answer there may carry tokens)."""
    app.asgi_app = ResponseHeaders(  # type: ignore[method-assign,assignment]
        app.asgi_app,
        no_store_under=no_store_under,
        cors_origins=settings.cors_origins,
    )
