"""A real primary and a real streaming hot standby of it, on ports of their own.

The primary is a new cluster (initdb) in a temporary folder, never the shared
server on 5432; the standby is `pg_basebackup -R` of it, so it streams from the
primary exactly as a production standby does. `hold_back()` makes the standby
apply WAL only after a delay (`recovery_min_apply_delay`): it receives every
write at once but shows it late, the lag a test needs to catch a stale read.
"""

from __future__ import annotations

import asyncio

import asyncpg

from service.db.replicas import (
    PRIMARY_POSITION_SQL,
    WAL_LAYOUT_SQL,
    parse_lsn,
    settled_position,
)
from tests.system.harness import START_TIMEOUT, PostgresCluster

DATABASE = "service"


def standby_of(primary: PostgresCluster) -> PostgresCluster:
    """A hot standby made by pg_basebackup from a running primary (no initdb: its
    data folder is the primary's base backup)."""
    return PostgresCluster(
        primary.bin,
        prefix="read-replica-standby-",
        make_data=lambda data: [
            primary.bin / "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            data,
            # -R writes standby.signal and primary_conninfo.
            "-R",
            "--wal-method=stream",
            "--checkpoint=fast",
            "--no-sync",
        ],
    )


class ReplicatedPair:
    """Primary plus standby; `remove()` stops both and deletes their folders."""

    def __init__(self) -> None:
        self.primary = PostgresCluster()
        self.standby: PostgresCluster | None = None
        try:
            self.primary.start()
            self.standby = standby_of(self.primary)
            self.standby.start()
        except BaseException:
            self.remove()
            raise

    @property
    def replica(self) -> PostgresCluster:
        assert self.standby is not None
        return self.standby

    def primary_url(self) -> str:
        return self.primary.url(DATABASE)

    def replica_url(self) -> str:
        return self.replica.url(DATABASE)

    async def create_database(self) -> None:
        admin = await asyncpg.connect(self.primary.dsn())
        try:
            await admin.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            await admin.close()
        await self.wait_caught_up()

    async def hold_back(self, seconds: float) -> None:
        """Make the standby apply each WAL record only `seconds` after its commit."""
        standby = await asyncpg.connect(self.replica.dsn())
        try:
            await standby.execute(
                f"ALTER SYSTEM SET recovery_min_apply_delay = '{int(seconds * 1000)}ms'"
            )
            await standby.execute("SELECT pg_reload_conf()")
        finally:
            await standby.close()

    async def release(self) -> None:
        await self.hold_back(0)
        await self.wait_caught_up()

    async def wait_caught_up(self) -> None:
        """Until the standby has replayed everything the primary has written."""
        primary = await asyncpg.connect(self.primary.dsn())
        standby = await asyncpg.connect(self.replica.dsn())
        try:
            block, segment = await primary.fetchrow(WAL_LAYOUT_SQL)
            position = await primary.fetchval(PRIMARY_POSITION_SQL)
            target = settled_position(parse_lsn(position), block, segment)
            async with asyncio.timeout(START_TIMEOUT):
                while True:
                    replayed = await standby.fetchval(
                        "SELECT pg_last_wal_replay_lsn()::text"
                    )
                    if replayed is not None and parse_lsn(replayed) >= target:
                        return
                    await asyncio.sleep(0.02)
        finally:
            await primary.close()
            await standby.close()

    async def standby_commits(self) -> int:
        """Transactions the standby has served in the test database (its own stats)."""
        standby = await asyncpg.connect(self.replica.dsn(DATABASE))
        try:
            # Statistics are cached per transaction: read them fresh.
            await standby.execute("SELECT pg_stat_clear_snapshot()")
            value: int = await standby.fetchval(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
                DATABASE,
            )
            return value
        finally:
            await standby.close()

    async def wait_for_standby_commits(self, at_least: int) -> None:
        # Bounded: a closed backend reports its statistics as it exits.
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                if await self.standby_commits() >= at_least:
                    return
                await asyncio.sleep(0.05)

    def remove(self) -> None:
        if self.standby is not None:
            self.standby.remove()
        self.primary.remove()
