"""Redis with a password (compose and k8s run it so): the throttle's store works
with the URL the image's entrypoint makes from REDIS_PASSWORD_FILE, and nothing
reaches it without the password. Against a real redis-server started here."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ResponseError

from service.throttle.redis_store import RedisStore
from tests.deploy.test_entrypoint import entrypoint
from tests.ports import free_port
from tests.system.harness import Process, listens

PASSWORD = "r3dis:p@ss/w#rd"


@pytest.fixture(scope="module")
def protected_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server (Debian: apt-get install redis-server)")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis-password")
    server = Process(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            PASSWORD,
        ],
        env={},
        cwd=folder,
        out=folder / "redis.out",
        ready=listens(port),
    )
    with server.start():
        yield f"redis://127.0.0.1:{port}/0"


def entrypoint_url(url: str, tmp_path: Path) -> str:
    secret = tmp_path / "redis_password"
    secret.write_text(PASSWORD + "\n")
    env = {"REDIS_URL": url, "REDIS_PASSWORD_FILE": str(secret)}
    entrypoint.read_secret_files(env)
    entrypoint.with_redis_password(env)
    return env["REDIS_URL"]


async def test_store_counts_with_the_entrypoints_url(
    protected_redis: str, tmp_path: Path
) -> None:
    store = RedisStore(entrypoint_url(protected_redis, tmp_path))
    try:
        await store.start()
        allowed, _ = await store.hit("limit:password-test:1", 1, 60)
        refused, _ = await store.hit("limit:password-test:1", 1, 60)
    finally:
        await store.close()

    assert store.version_checked
    assert (allowed, refused) == (True, False)


async def test_without_the_password_redis_refuses_every_command(
    protected_redis: str,
) -> None:
    client = Redis.from_url(protected_redis)
    try:
        with pytest.raises((AuthenticationError, ResponseError), match=r"NOAUTH|auth"):
            await client.delete("login:ip:203.0.113.9")
    finally:
        await client.aclose()


def test_cli_without_the_password_gets_no_pong(protected_redis: str) -> None:
    port = protected_redis.rsplit(":", 1)[1].split("/")[0]
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("no redis-cli")
    answer = subprocess.run(  # noqa: S603 (the system's redis-cli)
        [cli, "-p", port, "ping"], capture_output=True, text=True, timeout=10
    )

    assert "PONG" not in answer.stdout
