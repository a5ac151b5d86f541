"""/docs: Swagger UI served by the service itself, rendered by a real browser offline.

The browser tests run Debian's `chromium` headless against a served instance
(migrated and seeded as `make run` does), with every host name but the loopback
made unresolvable: a page that needed a CDN would render nothing. One of them
uses the page as a person would: "Try it out" on the login route, "Authorize"
with the access token it answers, "Try it out" on a protected route.
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
from tests.ops.servers import ServedApp, clean_environment, run_entry_point
from tests.support import ROOT
from tests.system.browser import CHROMIUM, FLAGS, SKIP_REASON, Page, launch

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
    """What `make run` serves: migrated, seeded (admin@example.com / admin123)."""
    folder = tmp_path_factory.mktemp("docs")
    env = clean_environment(DATABASE_URL=f"sqlite:///{folder / 'service.db'}")
    config = str(ROOT / "pyproject.toml")
    run_entry_point("alembic", "-c", config, "upgrade", "head", env=env, cwd=folder)
    run_entry_point("quart", "--app", "service.asgi", "seed-db", env=env, cwd=ROOT)
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


# Swagger UI is a React page: a value is typed through the input's native setter
# and an input event, as a keyboard would; elements are awaited as they render.
HELPERS = """
window.testing = {
  async find(selector, root = document) {
    const end = Date.now() + 20000;
    for (;;) {
      const found = root.querySelector(selector);
      if (found) return found;
      if (Date.now() > end) throw new Error(`nothing matches ${selector}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  },
  async click(selector, root = document) {
    (await testing.find(selector, root)).click();
    return true;
  },
  type(input, value) {
    const prototype = HTMLInputElement.prototype;
    Object.getOwnPropertyDescriptor(prototype, "value").set.call(input, value);
    input.dispatchEvent(new Event("input", { bubbles: true }));
    return true;
  },
  async execute(id) {
    const operation = await testing.find(`#operations-${id}`);
    if (!operation.querySelector(".execute")) {
      await testing.click(".opblock-summary-control", operation);
      await testing.click(".try-out__btn", operation);
    }
    const clear = operation.querySelector(".btn-clear");
    if (clear) clear.click();
    await testing.click(".execute", operation);
    const table = await testing.find(".live-responses-table", operation);
    const status = await testing.find("tr.response .response-col_status", table);
    const body = table.querySelector(".highlight-code pre");
    return { status: status.textContent.trim(), body: body ? body.textContent : "" };
  },
};
true
"""


async def try_it_out(page: Page, operation: str) -> tuple[int, Any]:
    """Click "Try it out", then "Execute": the status and JSON body shown."""
    shown = await page.evaluate(f"testing.execute({json.dumps(operation)})")
    return int(shown["status"]), json.loads(shown["body"]) if shown["body"] else None


async def authorize(page: Page, scheme: str, token: str) -> None:
    """Click "Authorize": the token into the scheme's field, applied, closed."""
    await page.evaluate(
        f"""(async () => {{
        await testing.click(".auth-wrapper .authorize");
        const forms = [...(await testing.find(".modal-ux")).querySelectorAll("form")];
        const form = forms.find(
            (f) => f.querySelector("h4 code").textContent === {json.dumps(scheme)}
        );
        testing.type(form.querySelector("input"), {json.dumps(token)});
        await testing.click("button.authorize", form);
        await testing.click(".close-modal");
        return true;
    }})()"""
    )


@pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)
async def test_docs_authorize_with_the_login_token_makes_try_it_out_work(
    served_docs: ServedApp, tmp_path: Path
) -> None:
    async with launch(tmp_path / "profile", OFFLINE) as browser:
        page = await browser.new_page(f"{served_docs.base_url}/docs")
        await page.evaluate(HELPERS)

        before = await try_it_out(page, "users-get_current_user")
        # The login body Swagger UI fills in is the documented example.
        login_status, tokens = await try_it_out(page, "authentication-login")
        await authorize(page, "bearer", tokens["access_token"])
        status, me = await try_it_out(page, "users-get_current_user")
        await authorize(page, "refresh", tokens["refresh_token"])
        refresh_status, refreshed = await try_it_out(page, "authentication-refresh")

    assert before[0] == 401
    assert login_status == 200
    assert (status, me["email"], me["is_admin"]) == (200, "admin@example.com", True)
    assert refresh_status == 200
    assert refreshed["access_token"] != tokens["access_token"]
