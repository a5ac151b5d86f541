"""The service as deployed, served by Hypercorn with hypercorn.toml on a
database of the run's own (tests/ops/servers.py's ServedApp), and the same
instance behind deploy/haproxy.cfg (tests/deploy/stack.py's load_balancer)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.deploy.stack import HAPROXY, load_balancer
from tests.ops.servers import ServedApp, clean_environment
from tests.support import ROOT, migrated_database
from tests.system.keepalive import wait_until_serving


@pytest.fixture(scope="session")
async def system_database_url() -> AsyncIterator[str]:
    async with migrated_database(f"service_test_{os.getpid()}_system") as engine:
        yield engine.url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
async def served(
    system_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServedApp]:
    env = clean_environment(DATABASE_URL=system_database_url)
    folder = tmp_path_factory.mktemp("system")
    instance = await asyncio.to_thread(ServedApp, env, ROOT, folder)
    yield instance
    await asyncio.to_thread(instance.stop)


@pytest.fixture(scope="session")
def behind_haproxy(served: ServedApp) -> Iterator[str]:
    """The base URL of deploy/haproxy.cfg in front of the served instance."""
    if HAPROXY is None:
        pytest.skip("no haproxy (.ci/run installs Debian's haproxy)")
    with load_balancer(["127.0.0.1"], served.port) as lb:
        url = f"http://127.0.0.1:{lb.port}"
        wait_until_serving(url)
        yield url
