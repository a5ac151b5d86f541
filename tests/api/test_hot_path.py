"""What a request no longer does: open a cookie session, build a UUID, load Redis."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from quart import Quart, session
from quart.sessions import NullSession
from quart.typing import TestClientProtocol as Client

from tests.support import ROOT


async def test_request_gets_the_null_session_not_a_signed_cookie(app: Quart) -> None:
    async with app.test_request_context("/healthz"):
        assert isinstance(session._get_current_object(), NullSession)


async def test_response_sets_no_cookie(client: Client) -> None:
    response = await client.get("/healthz", headers={"Cookie": "session=forged"})

    assert "Set-Cookie" not in response.headers


async def test_generated_request_id_is_32_hex_digits(client: Client) -> None:
    response = await client.get("/healthz")

    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_worker_without_redis_url_does_not_load_the_redis_client() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env |= {"DATABASE_URL": "sqlite+aiosqlite:///:memory:"}
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, service.asgi; print(sorted(m for m in sys.modules"
            " if m.split('.')[0] == 'redis'))",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )

    assert loaded.stdout.strip() == "[]"
