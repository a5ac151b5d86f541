"""deploy/haproxy.cfg retries only what is safe to send twice, against real replicas.

Two replicas of the service (tests/system/hang_after_commit.py: the service, plus
a way to make one replica commit a request and then answer nothing) behind the
real HAProxy with deploy/haproxy.cfg. A replica killed with SIGKILL right after
it committed a POST: the client gets an error, and the post exists once (a
replay on the other replica would have made it twice). A replica that is gone
before the request reaches it: the connection fails, and the POST goes to the
other replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from service.models import Post
from tests.factories import PASSWORD, committed_user
from tests.ports import free_port_on_every_loopback
from tests.support import LOGIN, POSTS
from tests.system.conftest import REDIS_URL
from tests.system.harness import ROOT, ServedApp, loopback_address
from tests.system.keepalive import wait_until_serving
from tests.system.stack import HAPROXY, load_balancer

HANGING, OTHER = "127.0.0.21", "127.0.0.22"


@dataclass
class Pair:
    url: str
    replicas: dict[str, ServedApp]
    markers: Path

    def kill(self, host: str) -> None:
        """SIGKILL to the replica's process group: no drain, no answer."""
        process = self.replicas[host].process
        assert process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def revive(self, host: str) -> None:
        self.replicas[host].start()


@pytest.fixture(scope="module")
def pair(
    served_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    if HAPROXY is None:
        pytest.skip("no haproxy (.ci/run installs Debian's haproxy)")
    folder = tmp_path_factory.mktemp("haproxy-retries")
    port = free_port_on_every_loopback()
    prefix = f"retries-{uuid.uuid4().hex[:8]}:"
    replicas: dict[str, ServedApp] = {}
    try:
        for host in (HANGING, OTHER):
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "DATABASE_URL": served_database_url,
                "REDIS_URL": REDIS_URL,
                "REDIS_KEY_PREFIX": prefix,
                "REPLICA_HOST": host,
                "HANG_MARKER_FOLDER": str(folder),
                "TRUSTED_PROXIES": "127.0.0.1",
            }
            replicas[host] = ServedApp(
                env,
                ROOT,
                folder,
                app="tests.system.hang_after_commit:app",
                host=host,
                port=port,
            )
        with load_balancer([HANGING, OTHER], port) as lb:
            url = f"http://127.0.0.1:{lb.port}"
            wait_until_serving(url)
            yield Pair(url, replicas, folder)
    finally:
        for replica in replicas.values():
            replica.stop()


async def until(condition: Callable[[], bool]) -> None:
    """Poll `condition` (a file another process writes, a task), up to a minute."""
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


def answered_or_hung(sent: asyncio.Task[httpx.Response], marker: Path) -> bool:
    return sent.done() or marker.exists()


async def bearer_of(pair: Pair, engine: AsyncEngine) -> dict[str, str]:
    user = await committed_user(engine)
    async with httpx.AsyncClient(base_url=pair.url, timeout=60) as client:
        login = await client.post(
            LOGIN, json={"email": user.email, "password": PASSWORD}
        )
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def posts_titled(engine: AsyncEngine, title: str) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(
            select(func.count()).select_from(Post).where(Post.title == title)
        )
    return int(count or 0)


async def test_post_committed_by_a_replica_killed_before_answering_is_not_replayed(
    pair: Pair, served_engine: AsyncEngine
) -> None:
    headers = await bearer_of(pair, served_engine) | {"X-Hang-On": HANGING}
    marker = pair.markers / f"{HANGING}.done"
    marker.unlink(missing_ok=True)
    transport = httpx.AsyncHTTPTransport(local_address=loopback_address())
    async with httpx.AsyncClient(
        base_url=pair.url, timeout=60, transport=transport
    ) as client:
        # Round robin: a POST that lands on the other replica is answered at
        # once; the one that lands on the hanging replica commits, then waits.
        for _ in range(6):
            title = f"once-{uuid.uuid4().hex}"
            sent = asyncio.create_task(
                client.post(
                    POSTS, json={"title": title, "content": "body"}, headers=headers
                )
            )
            await until(partial(answered_or_hung, sent, marker))
            if marker.exists():
                break
            assert (await sent).status_code == 201
        else:
            pytest.fail("no POST reached the hanging replica")
        assert marker.read_text() == "201"  # committed, and answered nothing
        await asyncio.to_thread(pair.kill, HANGING)
        response = await sent

    try:
        assert response.status_code == 502, response.text
        assert response.json()["error"]
        assert await posts_titled(served_engine, title) == 1
    finally:
        await asyncio.to_thread(pair.revive, HANGING)


async def test_post_to_a_replica_that_is_gone_goes_to_another(
    pair: Pair, served_engine: AsyncEngine
) -> None:
    headers = await bearer_of(pair, served_engine)
    await asyncio.to_thread(pair.kill, HANGING)
    try:
        async with httpx.AsyncClient(base_url=pair.url, timeout=60) as client:
            # Before the health check notices: every other POST meets a
            # refused connection, and must be sent to the other replica.
            titles = [f"moved-{uuid.uuid4().hex}" for _ in range(4)]
            statuses = [
                (
                    await client.post(
                        POSTS,
                        json={"title": title, "content": "body"},
                        headers=headers,
                    )
                ).status_code
                for title in titles
            ]
        counts = [await posts_titled(served_engine, title) for title in titles]
    finally:
        await asyncio.to_thread(pair.revive, HANGING)

    assert statuses == [201] * 4
    assert counts == [1] * 4
