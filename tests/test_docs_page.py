"""/docs: Swagger UI served by the service itself, rendered by a real browser offline.

The browser test runs Debian's `chromium` headless against a served instance,
with every host name but the loopback made unresolvable: a page that needed a
CDN would render nothing (tests/system/test_swagger_ui_client.py uses the page
as a client).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from service import create_app
from service.api.swagger_ui import SERVED, VERSION
from service.config import Settings
from service.db.engine import Database
from tests.ops.servers import ServedApp, clean_environment
from tests.support import ROOT
from tests.system.browser import CHROMIUM, FLAGS, SKIP_REASON

# Network off for the browser: no name resolves but the served instance's.
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
# Virtual time: the page's fetches and rendering run, the clock skips idle waits.
RENDER_BUDGET_MS = "30000"
_OPERATION = re.compile(r'id="operations-(?!tag-)[a-z]+-([A-Za-z0-9_]+)"')
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


async def test_docs_enabled_false_leaves_the_page_out(
    settings: Settings, database: Database
) -> None:
    app = create_app(replace(settings, docs_enabled=False), database=database)
    client = app.test_client()

    for path in ("/docs", f"/docs/{VERSION}/swagger-ui-bundle.js"):
        response = await client.get(path)
        assert response.status_code == 404
        assert "error" in await response.get_json()
    assert (await client.get("/openapi.json")).status_code == 200


# ------------------------------------------------------------ real browser


@pytest.fixture(scope="module")
def served_docs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    folder = tmp_path_factory.mktemp("docs")
    # /docs and /openapi.json read no table: an empty SQLite file will do.
    env = clean_environment(DATABASE_URL=f"sqlite:///{folder / 'service.db'}")
    with ServedApp(env, cwd=ROOT, log_folder=folder) as app:
        yield app


def render(url: str, profile: Path) -> str:
    """The DOM after the page ran: chromium --headless --dump-dom."""
    assert CHROMIUM is not None
    result = subprocess.run(  # noqa: S603 (Debian's chromium, our arguments)
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            OFFLINE,
            f"--virtual-time-budget={RENDER_BUDGET_MS}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "HOME": str(profile)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def document_operations(base_url: str) -> set[str]:
    with urllib.request.urlopen(f"{base_url}/openapi.json", timeout=10) as reply:  # noqa: S310
        document: dict[str, Any] = json.load(reply)
    return {
        operation["operationId"]
        for path in document["paths"].values()
        for operation in path.values()
    }


@pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)
def test_docs_renders_every_operation_in_headless_chromium_offline(
    served_docs: ServedApp, tmp_path: Path
) -> None:
    expected = document_operations(served_docs.base_url)

    dom = render(f"{served_docs.base_url}/docs", tmp_path / "profile")

    assert set(_OPERATION.findall(dom)) == expected
    assert len(expected) > 20
    assert "Users, auth and posts API" in dom
