"""/docs: Swagger UI for /openapi.json, every byte served by the service itself.

The assets come from the swagger-ui-bundle-v2 wheel (Swagger UI's own dist
files), so the page works with no network at all: no CDN, no inline script
(the start-up script is a file too), under a Content-Security-Policy that
allows only this origin. DOCS_ENABLED=false leaves the routes out (404).
"""

from __future__ import annotations

import html
from pathlib import Path

from quart import Blueprint, Quart, Response, send_from_directory
from quart_schema import hide
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import NotFound

ASSETS = Path(str(swagger_ui_path))
# The version is in the folder's name: it makes the asset URLs change with it,
# so browsers may cache them long.
VERSION = ASSETS.name.removeprefix("swagger-ui-")
SERVED = frozenset(
    {"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png"}
)
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
    # Swagger UI sets style attributes from script.
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
)
ASSET_MAX_AGE = 7 * 24 * 60 * 60

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="/docs/{version}/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/{version}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/{version}/swagger-ui-bundle.js"></script>
<script src="/docs/{version}/start.js"></script>
</body>
</html>
"""
START_SCRIPT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
});
"""


def make_blueprint(title: str) -> Blueprint:
    blueprint = Blueprint("docs_page", __name__)
    page = PAGE.format(title=html.escape(title), version=VERSION)

    @blueprint.get("/docs")
    @hide
    async def docs() -> Response:
        response = Response(page, mimetype="text/html")
        response.headers["Content-Security-Policy"] = PAGE_CSP
        return response

    @blueprint.get(f"/docs/{VERSION}/start.js")
    @hide
    async def start_script() -> Response:
        response = Response(START_SCRIPT, mimetype="text/javascript")
        response.cache_control.public = True
        response.cache_control.max_age = ASSET_MAX_AGE
        return response

    @blueprint.get(f"/docs/{VERSION}/<name>")
    @hide
    async def asset(name: str) -> Response:
        if name not in SERVED:
            raise NotFound()
        return await send_from_directory(ASSETS, name, cache_timeout=ASSET_MAX_AGE)

    return blueprint


def init_app(app: Quart, *, title: str, enabled: bool) -> None:
    if enabled:
        app.register_blueprint(make_blueprint(title))
