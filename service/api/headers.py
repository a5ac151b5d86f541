"""Security headers on every response, and CORS for an allow-list of origins."""

from __future__ import annotations

from quart import Quart, Response, request

from service.config import Settings

JSON_CSP = "default-src 'none'; frame-ancestors 'none'"
CORS_METHODS = "GET, HEAD, POST, PATCH, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type, X-Request-ID"


def init_app(
    app: Quart, settings: Settings, *, no_store_under: tuple[str, ...]
) -> None:
    """`no_store_under`: path prefixes whose answers must not be cached, the
    unknown and refused paths among them (every answer there may carry tokens)."""
    allowed_origins = frozenset(settings.cors_origins)

    @app.after_request
    async def add_security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("X-Frame-Options", "DENY")
        if response.mimetype == "application/json":
            headers.setdefault("Content-Security-Policy", JSON_CSP)
        if request.path.startswith(no_store_under):
            # Tokens must not linger in shared or browser caches.
            headers["Cache-Control"] = "no-store"
            headers["Pragma"] = "no-cache"
        origin = request.headers.get("Origin")
        if origin is not None and allowed_origins:
            headers.add("Vary", "Origin")
            if origin in allowed_origins:
                # Bearer tokens, not cookies: credentials are never allowed.
                headers["Access-Control-Allow-Origin"] = origin
                if request.method == "OPTIONS":
                    headers["Access-Control-Allow-Methods"] = CORS_METHODS
                    headers["Access-Control-Allow-Headers"] = CORS_HEADERS
                    headers["Access-Control-Max-Age"] = "600"
                else:
                    headers["Access-Control-Expose-Headers"] = (
                        "Retry-After, X-Request-ID"
                    )
        return response
