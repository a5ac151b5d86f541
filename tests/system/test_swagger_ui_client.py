"""/docs used as a client, as a person would, in Debian's headless `chromium`,
offline (no name resolves but the served instance's): "Try it out" on the login
route, "Authorize" with the access token it answers, "Try it out" on a protected
route; the refresh token likewise on the route that takes it.

The instance is what `make run` serves: migrated, seeded (admin@example.com /
admin123, the login route's documented example).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT
from tests.system.browser import CHROMIUM, SKIP_REASON, Page, launch
from tests.system.harness import ServedApp, clean_environment, run_entry_point

OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    folder = tmp_path_factory.mktemp("docs-client")
    env = clean_environment(DATABASE_URL=f"sqlite:///{folder / 'service.db'}")
    config = str(ROOT / "pyproject.toml")
    run_entry_point("alembic", "-c", config, "upgrade", "head", env=env, cwd=folder)
    run_entry_point("quart", "--app", "service.asgi", "seed-db", env=env, cwd=ROOT)
    with ServedApp(env, cwd=ROOT, log_folder=folder) as app:
        yield app


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
    served: ServedApp, tmp_path: Path
) -> None:
    async with launch(tmp_path / "profile", OFFLINE) as browser:
        page = await browser.new_page(f"{served.base_url}/docs")
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
