"""The servers the suite talks to are the ones TEST_SERVICES names."""

from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import redis.asyncio as redis

from tests import backends


async def _postgres_data_directory() -> Path:
    connection = await asyncpg.connect(backends.postgres_dsn())
    try:
        return Path(await connection.fetchval("SHOW data_directory"))
    finally:
        await connection.close()


async def _redis_port() -> int:
    client = redis.Redis.from_url(backends.redis_url())
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return int(info["tcp_port"])


async def test_embedded_mode_talks_only_to_servers_the_suite_started() -> None:
    data_directory = await _postgres_data_directory()
    redis_port = await _redis_port()
    if backends.mode() != "embedded":
        # The machine's servers, or embedded ones where those do not answer.
        assert data_directory.is_absolute()
        assert redis_port > 0
        return
    started = backends.started_servers()
    clusters = [each.data for each in started if hasattr(each, "data")]
    assert clusters == [data_directory]
    assert urlsplit(backends.postgres_dsn()).port != 5432
    valkeys = [each.port for each in started if not hasattr(each, "data")]
    assert valkeys == [redis_port]
    assert redis_port != 6379
