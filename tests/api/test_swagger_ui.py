"""/docs: Swagger UI served by the service itself, its assets and its CSP
(tests/system/test_swagger_ui_browser.py renders it in a real browser)."""

from __future__ import annotations

import re

import pytest
from quart.typing import TestClientProtocol as Client

from service.api.swagger_ui import SERVED, VERSION
from tests.support import AppMaker

_REFERENCE = re.compile(r'(?:src|href)="([^"]*)"')


async def page(client: Client) -> str:
    response = await client.get("/docs")
    assert response.status_code == 200
    text: str = await response.get_data(as_text=True)
    return text


async def test_docs_page_is_html5_and_names_only_its_own_assets(client: Client) -> None:
    text = await page(client)

    assert text.startswith("<!doctype html>\n")
    references = _REFERENCE.findall(text)
    assert references
    assert all(ref.startswith(f"/docs/{VERSION}/") for ref in references)
    assert "<script>" not in text  # no inline script: the CSP allows none


async def test_docs_page_csp_allows_only_its_own_origin(client: Client) -> None:
    response = await client.get("/docs")

    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self';" in policy
    assert "http" not in policy


@pytest.mark.parametrize(
    ("name", "mimetype"),
    [
        ("swagger-ui-bundle.js", "text/javascript"),
        ("swagger-ui.css", "text/css"),
        ("start.js", "text/javascript"),
        ("favicon-32x32.png", "image/png"),
    ],
)
async def test_docs_assets_are_served_and_cacheable(
    client: Client, name: str, mimetype: str
) -> None:
    response = await client.get(f"/docs/{VERSION}/{name}")

    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert len(await response.get_data()) > 0
    assert response.cache_control.max_age == 7 * 24 * 60 * 60


@pytest.mark.parametrize(
    "name", ["index.html", "swagger-ui.js.map", "..%2F__init__.py", "missing.js"]
)
async def test_docs_files_outside_the_list_answer_json_404(
    client: Client, name: str
) -> None:
    assert name not in SERVED

    response = await client.get(f"/docs/{VERSION}/{name}")

    assert response.status_code == 404
    assert "error" in await response.get_json()


async def test_docs_enabled_false_leaves_the_page_out(make_app: AppMaker) -> None:
    async with make_app(docs_enabled=False) as app:
        client = app.test_client()
        for path in ("/docs", f"/docs/{VERSION}/swagger-ui-bundle.js"):
            response = await client.get(path)
            assert response.status_code == 404
            assert "error" in await response.get_json()
        assert (await client.get("/openapi.json")).status_code == 200
