"""/healthz and /readyz: probes at the root, without authentication."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from quart.wrappers import Response

from service import create_app
from service.config import Settings
from tests.support import AppMaker

# Nothing listens on port 1: connecting fails at once with "connection refused".
UNREACHABLE_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:1/nope"


@pytest.fixture
async def unreachable_client(settings: Settings) -> AsyncIterator[Client]:
    # The app's own engine (no test connection injected) on a dead server.
    app = create_app(
        replace(settings, database_url=UNREACHABLE_DATABASE, readiness_timeout=1)
    )
    async with app.test_app():
        yield app.test_client()


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers a byte."""
    writers: list[asyncio.StreamWriter] = []

    async def accept(
        _reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writers.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    yield port
    for writer in writers:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.fixture
async def hanging_client(settings: Settings, silent_port: int) -> AsyncIterator[Client]:
    app = create_app(
        replace(
            settings,
            database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{silent_port}/nope",
            readiness_timeout=1,
            db_connect_timeout=30,
        )
    )
    async with app.test_app():
        yield app.test_client()


@pytest.mark.parametrize(
    ("path", "answer"),
    [("/healthz", {"status": "ok"}), ("/readyz", {"status": "ready"})],
    ids=["healthz-ok", "readyz-ready"],
)
async def test_probe_answers_200(client: Client, path: str, answer: Any) -> None:
    response = await client.get(path)

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert await response.get_json() == answer


async def test_healthz_database_unreachable_still_200(
    unreachable_client: Client,
) -> None:
    response = await unreachable_client.get("/healthz")

    assert response.status_code == 200
    assert await response.get_json() == {"status": "ok"}


async def timed_readyz(client: Client) -> tuple[Response, float]:
    """GET /readyz and how many seconds its answer took."""
    started = time.monotonic()
    response = await client.get("/readyz")
    return response, time.monotonic() - started


async def test_readyz_database_unreachable_returns_503_json(
    unreachable_client: Client,
) -> None:
    response, elapsed = await timed_readyz(unreachable_client)

    assert response.status_code == 503
    assert response.mimetype == "application/json"
    assert await response.get_json() == {"error": "Database unavailable"}
    assert elapsed < 5


async def test_readyz_database_hanging_answers_503_within_timeout(
    hanging_client: Client,
) -> None:
    # The connect timeout is 30 s here: only READINESS_TIMEOUT (1 s) ends it.
    response, elapsed = await timed_readyz(hanging_client)

    assert response.status_code == 503
    assert await response.get_json() == {"error": "Database unavailable"}
    assert 0.9 < elapsed < 5


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_probes_need_no_token(client: Client, path: str) -> None:
    response = await client.get(path, headers={"Authorization": "Bearer garbage"})

    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/healthz", "/api/v1/readyz"])
async def test_probes_are_not_under_api_prefix(client: Client, path: str) -> None:
    response = await client.get(path)

    assert response.status_code == 404


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_probes_reject_post_with_405(client: Client, path: str) -> None:
    response = await client.post(path)

    assert response.status_code == 405
    assert response.mimetype == "application/json"


async def test_readyz_answers_503_while_the_drain_file_exists(
    make_app: AppMaker, tmp_path: Path
) -> None:
    # The image's entrypoint makes the file on SIGTERM: the load balancer takes
    # the replica out before Hypercorn closes its keep-alive connections.
    drain_file = tmp_path / "draining"
    async with make_app(drain_file=str(drain_file)) as app:
        client = app.test_client()
        assert (await client.get("/readyz")).status_code == 200

        drain_file.touch()
        response = await client.get("/readyz")

        assert response.status_code == 503
        assert await response.get_json() == {
            "error": "Draining: the replica is stopping"
        }
        assert (await client.get("/healthz")).status_code == 200
