"""/docs rendered by a real browser offline: Debian's `chromium` headless against
a served instance, with every host name but the loopback made unresolvable, so
that a page that needed a CDN would render nothing (test_swagger_ui_client.py uses
the page as a client)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT
from tests.system.browser import CHROMIUM, FLAGS, SKIP_REASON
from tests.system.harness import ServedApp, clean_environment

# Network off for the browser: no name resolves but the served instance's.
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
# Virtual time: the page's fetches and rendering run, the clock skips idle waits.
RENDER_BUDGET_MS = "30000"
# Swagger UI's ids are operations-<tag>-<operationId>, a space in the tag written "_"
# ("second factors": operations-second_factors-start_totp).
_OPERATION = re.compile(r'id="operations-(?!tag-)[a-z_]+-([A-Za-z0-9_]+)"')


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
