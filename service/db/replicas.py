"""Reads on PostgreSQL hot standbys, never staler than the primary alone.

The rule: a read may run on a standby only if the standby has replayed the
primary's WAL up to the primary's insert position read *after the read began*.
Every transaction visible on the primary at that moment inserted its commit
record before it became visible, so it lies below that position; a standby
past it has applied every write any earlier response can have shown. No
client can tell that the standbys exist (docs/read-replicas.md).

The primary's position is read by the token check's own query, when the request
has one (services/callers.py); otherwise it is one tiny query (no table
touched), and concurrent reads share one lookup that started after all of them
began. Each standby's replay
position is read from the standby itself and cached for a few milliseconds: a
cached position can only be older than the truth, which makes the rule
stricter, never looser. A standby's lag is measured on this process's own
clock against the primary positions it has seen: how long ago the primary
was where the standby is now.

Framework-free: the app passes engines in and reads the counters out.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.db.statements import HotQuery

T = TypeVar("T")
# The name operators filter the log on, from before the move to this module.
logger = logging.getLogger("service.replicas")

# The first usable byte of a WAL page follows its header (amd64: MAXALIGN 8).
SHORT_PAGE_HEADER = 24
LONG_PAGE_HEADER = 40
# How long a standby that failed is left alone before it is asked again.
DOWN_FOR = 1.0

PRIMARY_POSITION_SQL = "SELECT pg_current_wal_insert_lsn()::text AS position"
WAL_LAYOUT_SQL = (
    "SELECT current_setting('wal_block_size')::bigint, setting::bigint "
    "FROM pg_settings WHERE name = 'wal_segment_size'"
)
STANDBY_STATUS_SQL = (
    "SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn()::text AS replayed"
)
# On the driver itself: one of each runs for most reads under load.
PRIMARY_POSITION = HotQuery(PRIMARY_POSITION_SQL)
STANDBY_STATUS = HotQuery(STANDBY_STATUS_SQL)
# Primary positions remembered to measure lag: this many, spread over twice
# DB_REPLICA_MAX_LAG.
HISTORY = 128

# Why a read that could have gone to a standby went to the primary.
BEHIND = "behind"  # no standby had replayed up to the primary's position
LAGGING = "lagging"  # over DB_REPLICA_MAX_LAG
DOWN = "down"  # the status query failed, or the standby failed recently
NOT_STANDBY = "not_standby"  # promoted, or never was one
FAILED = "failed"  # failed during the read; the read was retried on the primary
UNKNOWN_PRIMARY = "primary_position"  # the primary's position could not be read
FALLBACKS = (BEHIND, LAGGING, DOWN, NOT_STANDBY, FAILED, UNKNOWN_PRIMARY)
PRIMARY = "primary"


def parse_lsn(text: str) -> int:
    """'16/B374D848' as PostgreSQL prints a pg_lsn, as one integer."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def settled_position(position: int, block_size: int, segment_size: int) -> int:
    """The insert position with a page header that holds no record stepped back.

    At a page boundary PostgreSQL reports the insert position past the next
    page's header, while a standby that replayed the last record reports the
    boundary itself: equal in content, unequal as numbers. Without this a
    quiet primary whose last record ended on a page (every WAL switch does)
    would keep every standby idle.
    """
    if position % segment_size == LONG_PAGE_HEADER:
        return position - LONG_PAGE_HEADER
    if position % block_size == SHORT_PAGE_HEADER:
        return position - SHORT_PAGE_HEADER
    return position


def is_read_failure(error: BaseException) -> bool:
    """An error of the standby or the way to it, not of the request.

    Connection loss, timeouts, a standby shutting down, and the cancellations
    a hot standby makes when replay conflicts with a query (40001): the same
    read on the primary can succeed.
    """
    # Any database error qualifies: on the primary the same read either
    # succeeds or fails with the primary's own answer, which is the truth.
    return isinstance(
        error,
        OSError
        | TimeoutError
        | ConnectionError
        | DBAPIError
        | asyncpg.PostgresError
        | asyncpg.InterfaceError,
    )


def describe(url: str) -> str:
    """A replica's name in logs, metrics and /readyz: host:port/database."""
    parsed = make_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database}"


@dataclass(frozen=True, slots=True)
class Status:
    reachable: bool
    standby: bool = False
    replayed: int = 0
    error: str | None = None


class Replica:
    """One hot standby: its engine and its cached replay position."""

    def __init__(
        self, url: str, engine: AsyncEngine, *, ttl: float, check_timeout: float
    ) -> None:
        self.name = describe(url)
        self._base_engine = engine
        # Reads on a standby are single statements: no BEGIN, no ROLLBACK.
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.ttl = ttl
        self.check_timeout = check_timeout
        # Reachable until asked: the first reads wait for the first check.
        self._status = Status(reachable=True, error="not checked yet")
        self._valid_until = 0.0
        self._refresh: asyncio.Task[Status] | None = None

    async def dispose(self) -> None:
        if self._refresh is not None and not self._refresh.done():
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh
        await self._base_engine.dispose()

    async def status(self) -> Status:
        loop = asyncio.get_running_loop()
        if loop.time() < self._valid_until:
            return self._status
        if self._refresh is None or self._refresh.done():
            self._refresh = _background(loop.create_task(self._check()))
        if not self._status.reachable:
            # Known down: asked again in the background. A frozen standby
            # would otherwise hold every read for the check's whole timeout.
            return self._status
        # Shielded: one waiter cancelled must not cancel the check for the rest.
        return await asyncio.shield(self._refresh)

    def failed(self, error: BaseException) -> None:
        self._set(Status(reachable=False, error=repr(error)), DOWN_FOR)

    async def _check(self) -> Status:
        try:
            async with asyncio.timeout(self.check_timeout):
                async with self.engine.connect() as connection:
                    row = await STANDBY_STATUS.fetch_row(connection)
        except Exception as error:
            if not is_read_failure(error):
                raise
            logger.warning("replica %s unavailable: %r", self.name, error)
            self.failed(error)
            return self._status
        assert row is not None  # noqa: S101 - a SELECT without FROM has one row
        replayed = row["replayed"]
        status = Status(
            reachable=True,
            standby=bool(row["standby"]),
            replayed=parse_lsn(replayed) if replayed else 0,
        )
        self._set(status, self.ttl)
        return status

    def _set(self, status: Status, valid_for: float) -> None:
        self._status = status
        self._valid_until = asyncio.get_running_loop().time() + valid_for


def _background(task: asyncio.Task[T]) -> asyncio.Task[T]:
    # Its waiters see its error; when they were all cancelled, nobody would,
    # and asyncio would log "exception never retrieved".
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return task


class PrimaryPosition:
    """The primary's WAL insert position, read after the caller began waiting.

    One lookup runs at a time. A caller takes the newest lookup that started
    after it arrived, or waits for the running one to end and shares the next:
    under load, one query serves every read that arrived meanwhile.
    """

    def __init__(self, engine: AsyncEngine, *, history_span: float) -> None:
        self.engine = engine
        self._started = 0
        self._number = 0
        self._lookup: asyncio.Task[int] | None = None
        self._layout: tuple[int, int] | None = None
        # (when a lookup started, what it found): the primary had committed
        # nothing beyond that position at that time.
        self._latest: tuple[float, int] | None = None
        self._history: deque[tuple[float, int]] = deque(maxlen=HISTORY)
        self._history_step = history_span / HISTORY
        # Queries this object made for the position (the token check's own
        # readings are not among them).
        self.lookups = 0

    def observed(self, started: float, text: str) -> int | None:
        """A position another query read (the token check's), begun at loop time
        `started`; None until a lookup of this object has read the WAL's layout."""
        if self._layout is None:
            return None
        position = settled_position(parse_lsn(text), *self._layout)
        self._remember(started, position)
        return position

    def lag(self, replayed: int) -> float:
        """Seconds since the primary was last known to be no further than `replayed`.

        0 when it has everything of the newest lookup; when the history does not
        reach back far enough, at least the history's span.
        """
        if self._latest is None or replayed >= self._latest[1]:
            return 0.0
        now = asyncio.get_running_loop().time()
        for started, position in reversed(self._history):
            if position <= replayed:
                return now - started
        return now - (self._history[0][0] if self._history else self._latest[0])

    async def now(self) -> int:
        wanted = self._started + 1
        while True:
            lookup = self._lookup
            if lookup is not None and self._number >= wanted:
                return await asyncio.shield(lookup)
            if lookup is not None and not lookup.done():
                await asyncio.wait({lookup})
                continue
            self._started += 1
            self._number = self._started
            self._lookup = _background(
                asyncio.get_running_loop().create_task(self._read())
            )

    async def _read(self) -> int:
        started = asyncio.get_running_loop().time()
        self.lookups += 1
        async with self.engine.connect() as connection:
            if self._layout is None:
                self._layout = await _wal_layout(connection)
            found = await PRIMARY_POSITION.fetch_row(connection)
        assert found is not None  # noqa: S101 - a SELECT without FROM has one row
        position = settled_position(parse_lsn(found["position"]), *self._layout)
        self._remember(started, position)
        return position

    def _remember(self, started: float, position: int) -> None:
        self._latest = (started, position)
        if not self._history or started - self._history[-1][0] >= self._history_step:
            self._history.append((started, position))


async def _wal_layout(connection: AsyncConnection) -> tuple[int, int]:
    block, segment = tuple((await connection.exec_driver_sql(WAL_LAYOUT_SQL)).one())
    return int(block), int(segment)


class ReplicaSet:
    """The standbys, the primary's position, and where reads went."""

    def __init__(
        self,
        primary: AsyncEngine,
        replicas: list[Replica],
        *,
        max_lag: float,
    ) -> None:
        self.position = PrimaryPosition(primary, history_span=2 * max_lag)
        self.replicas = replicas
        self.max_lag = max_lag
        self.reads: Counter[str] = Counter()
        self.fallbacks: Counter[str] = Counter()
        self._turn = itertools.count()

    async def choose(self, floor: int) -> tuple[Replica | None, str | None]:
        """A standby fit to serve a read that needs `floor`, or why none is."""
        statuses = await asyncio.gather(*(r.status() for r in self.replicas))
        fit = [
            replica
            for replica, status in zip(self.replicas, statuses, strict=True)
            if self._reason(status, floor) is None
        ]
        if fit:
            return fit[next(self._turn) % len(fit)], None
        reasons = {self._reason(status, floor) for status in statuses}
        # The reason of the standby nearest to serving.
        for reason in (BEHIND, LAGGING, NOT_STANDBY, DOWN):
            if reason in reasons:
                return None, reason
        return None, DOWN

    def _reason(self, status: Status, floor: int) -> str | None:
        if not status.reachable:
            return DOWN
        if not status.standby:
            return NOT_STANDBY
        if self.position.lag(status.replayed) > self.max_lag:
            return LAGGING
        if status.replayed < floor:
            return BEHIND
        return None

    async def report(self) -> list[dict[str, Any]]:
        """Each standby as /readyz shows it: no addresses of errors, no positions."""
        with contextlib.suppress(Exception):
            await self.position.now()  # lag against where the primary is now
        statuses = await asyncio.gather(*(r.status() for r in self.replicas))
        report = []
        for replica, status in zip(self.replicas, statuses, strict=True):
            # Behind is per read (it depends on the primary's position then).
            reason = self._reason(status, floor=0)
            entry: dict[str, Any] = {
                "name": replica.name,
                "ready": reason is None,
                "lag_ms": round(self.position.lag(status.replayed) * 1000)
                if status.reachable
                else None,
            }
            if reason is not None:
                entry["reason"] = reason
            report.append(entry)
        return report

    async def dispose(self) -> None:
        await asyncio.gather(*(replica.dispose() for replica in self.replicas))


class RequestReads:
    """One request's routable reads: the floor they need and where they went.

    The floor is read once, after the request arrived: every response sent
    before then is below it, which is all the promise asks of every read in
    the request. `seen` is the primary's position the request's token check
    read in its own query ((loop time it began, the pg_lsn text)); without
    one, the position is looked up at the request's first routable read.
    """

    def __init__(
        self,
        replicas: ReplicaSet | None,
        primary: Callable[[], AbstractAsyncContextManager[AsyncConnection]],
        seen: tuple[float, str] | None = None,
    ) -> None:
        self.replicas = replicas
        self.primary = primary
        self.seen = seen
        self.targets: Counter[str] = Counter()
        self.fallbacks: Counter[str] = Counter()
        self._floor: int | None = None

    async def run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """`work` on a fit standby, else on the primary; retried there if it fails."""
        replicas = self.replicas
        if replicas is None:
            async with self.primary() as connection:
                return await work(connection)
        replica, reason = await self._choose(replicas)
        if replica is not None:
            try:
                async with replica.engine.connect() as connection:
                    result = await work(connection)
            except Exception as error:
                if not is_read_failure(error):
                    raise
                logger.warning("read on replica %s failed: %r", replica.name, error)
                replica.failed(error)
                reason = FAILED
            else:
                self._count(replicas, replica.name)
                return result
        self.fallbacks[reason or FAILED] += 1
        replicas.fallbacks[reason or FAILED] += 1
        async with self.primary() as connection:
            result = await work(connection)
        self._count(replicas, PRIMARY)
        return result

    async def _choose(self, replicas: ReplicaSet) -> tuple[Replica | None, str | None]:
        if self._floor is None and self.seen is not None:
            self._floor = replicas.position.observed(*self.seen)
        if self._floor is None:
            try:
                self._floor = await replicas.position.now()
            except Exception as error:
                if not is_read_failure(error):
                    raise
                # The primary itself failing: the read there will say so.
                return None, UNKNOWN_PRIMARY
        return await replicas.choose(self._floor)

    def _count(self, replicas: ReplicaSet, target: str) -> None:
        self.targets[target] += 1
        replicas.reads[target] += 1


def create_replica_set(
    primary: AsyncEngine,
    engines: dict[str, AsyncEngine],
    *,
    max_lag: float,
    ttl: float,
    check_timeout: float,
) -> ReplicaSet:
    replicas = [
        Replica(url, engine, ttl=ttl, check_timeout=check_timeout)
        for url, engine in engines.items()
    ]
    return ReplicaSet(primary, replicas, max_lag=max_lag)
