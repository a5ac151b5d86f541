"""The freshness rule itself, on the real primary and standby (no app)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from service.db.replicas import (
    BEHIND,
    DOWN,
    FAILED,
    PRIMARY,
    PrimaryPosition,
    ReplicaSet,
    RequestReads,
    create_replica_set,
)
from tests.system.standbys import DATABASE, ReplicatedPair

IS_STANDBY = text("SELECT pg_is_in_recovery()")


@pytest.fixture
async def replicas(pair: ReplicatedPair) -> AsyncIterator[ReplicaSet]:
    primary = create_async_engine(pair.primary_url())
    standby = create_async_engine(pair.replica_url())
    replicas = create_replica_set(
        primary,
        {pair.replica_url(): standby},
        max_lag=5.0,
        ttl=0.0,  # every choice asks the standby: no test waits for a cache
        check_timeout=2.0,
    )
    try:
        yield replicas
    finally:
        await replicas.dispose()
        await primary.dispose()


def request_reads(replicas: ReplicaSet) -> RequestReads:
    @asynccontextmanager
    async def primary() -> AsyncIterator[AsyncConnection]:
        async with replicas.position.engine.connect() as connection:
            yield connection

    return RequestReads(replicas, primary)


async def is_standby(connection: AsyncConnection) -> bool:
    return bool(await connection.scalar(IS_STANDBY))


async def commit_a_write(pair: ReplicatedPair) -> None:
    writer = await asyncpg.connect(pair.primary.dsn(DATABASE))
    try:
        await writer.execute(
            "UPDATE users SET first_name = $1 WHERE false", uuid.uuid4().hex
        )
        # An UPDATE of no row writes no WAL: a real committed row does.
        await writer.execute("CREATE TABLE IF NOT EXISTS routing_probe (x text)")
        await writer.execute("INSERT INTO routing_probe VALUES ($1)", uuid.uuid4().hex)
    finally:
        await writer.close()


async def test_a_standby_behind_a_commit_serves_no_read_until_it_applies_it(
    held_back: ReplicatedPair, replicas: ReplicaSet
) -> None:
    await commit_a_write(held_back)
    reads = request_reads(replicas)

    assert await reads.run(is_standby) is False
    assert reads.fallbacks == {BEHIND: 1}
    assert reads.targets == {PRIMARY: 1}

    await held_back.release()
    caught_up = request_reads(replicas)
    assert await caught_up.run(is_standby) is True
    assert caught_up.targets == {replicas.replicas[0].name: 1}


async def test_the_primary_position_is_read_after_the_caller_arrives(
    pair: ReplicatedPair, replicas: ReplicaSet
) -> None:
    before = await replicas.position.now()
    await commit_a_write(pair)
    # Concurrent callers share lookups, but none gets one that began before it.
    positions = await asyncio.gather(*(replicas.position.now() for _ in range(20)))
    assert min(positions) > before
    assert replicas.position._started < 20


async def test_a_stopped_standby_sends_reads_to_the_primary(
    pair: ReplicatedPair, replicas: ReplicaSet
) -> None:
    pair.replica.stop()
    try:
        reads = request_reads(replicas)
        assert await reads.run(is_standby) is False
        assert reads.fallbacks == {DOWN: 1}
        report = await replicas.report()
        assert report[0]["ready"] is False
    finally:
        pair.replica.start()
        await pair.wait_caught_up()


async def test_a_standby_failing_mid_read_is_retried_on_the_primary(
    pair: ReplicatedPair, replicas: ReplicaSet
) -> None:
    await pair.wait_caught_up()

    async def dies_on_the_standby(connection: AsyncConnection) -> bool:
        if await is_standby(connection):
            # The standby ends this very connection under the read.
            await connection.execute(
                text("SELECT pg_terminate_backend(pg_backend_pid())")
            )
        return await is_standby(connection)

    reads = request_reads(replicas)
    assert await reads.run(dies_on_the_standby) is False
    assert reads.fallbacks == {FAILED: 1}
    assert reads.targets == {PRIMARY: 1}
    # Left alone for a moment, not asked again by every read.
    assert (await replicas.replicas[0].status()).reachable is False


async def test_the_report_shows_a_caught_up_standby(
    pair: ReplicatedPair, replicas: ReplicaSet
) -> None:
    await pair.wait_caught_up()
    [report] = await replicas.report()
    assert report["ready"] is True
    assert report["name"] == f"127.0.0.1:{pair.replica.port}/{DATABASE}"
    assert report["lag_ms"] == 0


async def test_lag_is_how_long_ago_the_primary_was_where_the_standby_is() -> None:
    engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    position = PrimaryPosition(engine, history_span=10.0)
    assert position.lag(0) == 0  # nothing seen yet: nothing to be behind of
    now = asyncio.get_running_loop().time()
    for age, lsn in ((3.0, 100), (1.0, 200), (0.0, 300)):
        position._remember(now - age, lsn)

    assert position.lag(300) == 0
    assert position.lag(400) == 0
    assert position.lag(250) == pytest.approx(1.0, abs=0.5)
    assert position.lag(150) == pytest.approx(3.0, abs=0.5)
    # Older than anything remembered: at least as old as the oldest.
    assert position.lag(50) >= 3.0
    await engine.dispose()
