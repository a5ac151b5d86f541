"""A served instance for the hostile-traffic tests: hypercorn with hypercorn.toml,
the run's PostgreSQL database, Redis, and otherwise default settings.

Each test is its own client address: httpx binds the socket to a loopback address
of the 127.0.0.0/8 range (Linux routes all of it to lo), so per-address limits are
real without X-Forwarded-For. Addresses are random, so that suites running at the
same time on one Redis do not share budgets.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from service.models import User
from tests import backends
from tests.factories import make_user
from tests.ports import free_port
from tests.support import ROOT, json_log_lines, migrate, migrated_database
from tests.system.standbys import ReplicatedPair

REDIS_URL = backends.redis_url()
HYPERCORN = Path(sys.executable).parent / "hypercorn"
START_TIMEOUT = 60.0


@dataclass
class Served:
    port: int
    log: Path
    env: dict[str, str]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, address: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        """A client whose connections come from `address` (a fresh one if None)."""
        transport = httpx.AsyncHTTPTransport(
            local_address=address or loopback_address()
        )
        return httpx.AsyncClient(
            base_url=self.base_url, transport=transport, timeout=60, **kwargs
        )

    def log_lines(self) -> list[dict[str, Any]]:
        return json_log_lines(self.log)


def loopback_address() -> str:
    octets = [random.randint(1, 254) for _ in range(3)]
    return "127.{}.{}.{}".format(*octets)


def serve(
    hostile_database_url: str, workdir: Path, **env: str
) -> tuple[subprocess.Popen[bytes], Served]:
    port = free_port()
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": hostile_database_url,
        "REDIS_URL": REDIS_URL,
        # Keys by user id or per run would otherwise meet another suite's.
        "REDIS_KEY_PREFIX": f"hostile-{uuid.uuid4().hex[:8]}:",
        **env,
    }
    log = workdir / f"served-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 (our venv's hypercorn, fixed args)
            [
                str(HYPERCORN),
                "-c",
                str(ROOT / "hypercorn.toml"),
                "-b",
                f"127.0.0.1:{port}",
                "service.asgi:app",
            ],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Served(port, log, environment)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            if httpx.get(f"{served.base_url}/healthz", timeout=2).status_code == 200:
                return process, served
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise RuntimeError(f"the service did not start:\n{log.read_text()}")
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
async def hostile_engine() -> AsyncIterator[AsyncEngine]:
    """A database of the run's own for the served instances' tests: they commit,
    and the rest of the suite must not see their users. Named apart from the
    suite's `engine`: overriding a session-scoped fixture here would hand the
    suite's cached `settings` this database."""
    async with migrated_database(f"service_test_{os.getpid()}_hostile") as engine:
        yield engine


@pytest.fixture(scope="session")
def hostile_database_url(hostile_engine: AsyncEngine) -> str:
    return hostile_engine.url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def served(
    hostile_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    process, instance = serve(hostile_database_url, tmp_path_factory.mktemp("served"))
    yield instance
    stop(process)


@pytest.fixture
async def http(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with served.client() as client:
        yield client


async def committed_user(hostile_engine: AsyncEngine, **overrides: Any) -> User:
    """A user the served instance sees: committed, with an address no other test
    (or run) has."""
    overrides.setdefault("email", f"hostile-{uuid.uuid4().hex[:12]}@example.com")
    async with AsyncSession(hostile_engine, expire_on_commit=False) as session:
        return await make_user(session, **overrides)


# Small budgets, so that spending them costs a few hashes, not a hundred.
SMALL_LIMITS = {"LOGIN_MAX_FAILURES": "3", "LOGIN_MAX_FAILURES_PER_IP": "5"}


@pytest.fixture(scope="session")
def served_small(
    hostile_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    process, instance = serve(
        hostile_database_url, tmp_path_factory.mktemp("served-small"), **SMALL_LIMITS
    )
    yield instance
    stop(process)


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
