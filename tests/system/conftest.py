"""The system tests' shared servers: the service served on a database of the run's
own (`served`, `served_small`), and a PostgreSQL primary with a streaming standby
(`pair`). tests/system/harness.py starts every process.

Each client of a served instance is its own address: httpx binds the socket to a
loopback address of the 127.0.0.0/8 range (Linux routes all of it to lo), so
per-address limits are real without X-Forwarded-For. Addresses are random, so
that suites running at the same time on one Redis do not share budgets.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.models import User
from tests import backends
from tests.factories import committed_user
from tests.support import ROOT, migrate, migrated_database
from tests.system.harness import ServedApp
from tests.system.keepalive import wait_until_serving
from tests.system.stack import HAPROXY, load_balancer
from tests.system.standbys import ReplicatedPair

REDIS_URL = backends.redis_url()


def serve(served_database_url: str, workdir: Path, **env: str) -> ServedApp:
    """The service served on the run's served-instance database and Redis."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": served_database_url,
        "REDIS_URL": REDIS_URL,
        # Keys by user id or per run would otherwise meet another suite's.
        "REDIS_KEY_PREFIX": f"hostile-{uuid.uuid4().hex[:8]}:",
        **env,
    }
    return ServedApp(environment, ROOT, workdir)


@pytest.fixture(scope="session")
async def served_engine() -> AsyncIterator[AsyncEngine]:
    """A database of the run's own for the served instances' tests: they commit,
    and the rest of the suite must not see their users. Named apart from the
    suite's `engine`: overriding a session-scoped fixture here would hand the
    suite's cached `settings` this database."""
    async with migrated_database(f"service_test_{os.getpid()}_hostile") as engine:
        yield engine


@pytest.fixture(scope="session")
def served_database_url(served_engine: AsyncEngine) -> str:
    return served_engine.url.render_as_string(hide_password=False)


ServeInstance = Callable[..., ServedApp]


@pytest.fixture(scope="session")
def serve_instance(
    served_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> ServeInstance:
    """`with serve_instance("name", **env) as instance:` serve() on the run's
    database, in a fresh folder of the run named after it."""

    def start(name: str, **env: str) -> ServedApp:
        return serve(served_database_url, tmp_path_factory.mktemp(name), **env)

    return start


@contextmanager
def haproxy_in_front_of(instance: ServedApp) -> Iterator[str]:
    """The base URL of deploy/haproxy.cfg in front of `instance`, once it serves;
    the test skips where there is no haproxy."""
    if HAPROXY is None:
        pytest.skip("no haproxy (.ci/run installs Debian's haproxy)")
    with load_balancer(["127.0.0.1"], instance.port) as lb:
        url = f"http://127.0.0.1:{lb.port}"
        wait_until_serving(url)
        yield url


@pytest.fixture(scope="session")
def served(serve_instance: ServeInstance) -> Iterator[ServedApp]:
    with serve_instance("served") as instance:
        yield instance


@pytest.fixture(scope="session")
def behind_haproxy(served: ServedApp) -> Iterator[str]:
    """The base URL of deploy/haproxy.cfg in front of the served instance."""
    with haproxy_in_front_of(served) as url:
        yield url


@pytest.fixture
async def http(served: ServedApp) -> AsyncIterator[httpx.AsyncClient]:
    async with served.client() as client:
        yield client


@pytest.fixture
async def user(served_engine: AsyncEngine) -> User:
    """Here, a user the served instances see: committed on their database, its
    address unique (the suite's `user` lives in the test session's database)."""
    return await committed_user(served_engine)


# Small budgets, so that spending them costs a few hashes, not a hundred.
SMALL_LIMITS = {"LOGIN_MAX_FAILURES": "3", "LOGIN_MAX_FAILURES_PER_IP": "5"}


@pytest.fixture(scope="session")
def served_small(serve_instance: ServeInstance) -> Iterator[ServedApp]:
    with serve_instance("served-small", **SMALL_LIMITS) as instance:
        yield instance


# The primary + standby pair, made once per run and only if a test asks for it.


@pytest.fixture(scope="session")
async def pair() -> AsyncIterator[ReplicatedPair]:
    pair = ReplicatedPair()
    try:
        await pair.create_database()
        engine = create_async_engine(pair.primary_url())
        try:
            await migrate(engine)
        finally:
            await engine.dispose()
        await pair.wait_caught_up()
        yield pair
    finally:
        pair.remove()


@pytest.fixture
async def held_back(pair: ReplicatedPair) -> AsyncIterator[ReplicatedPair]:
    """The standby applies each write 2 s late for the test, then catches up."""
    await pair.hold_back(2.0)
    try:
        yield pair
    finally:
        await pair.release()
