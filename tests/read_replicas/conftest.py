"""The primary + standby pair, made once per run and only if a test asks for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from tests.read_replicas.pair import ReplicatedPair
from tests.support import migrate


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
