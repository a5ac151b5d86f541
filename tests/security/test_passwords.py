"""service.security.passwords.PasswordHasher: werkzeug hashes, off the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from werkzeug.security import check_password_hash

from service.security.passwords import PasswordHasher
from tests.factories import PASSWORD, PASSWORD_HASH

TICK = 0.005


@pytest.fixture
def hasher() -> Iterator[PasswordHasher]:
    hasher = PasswordHasher(threads=2)
    yield hasher
    hasher.shutdown()


async def _timed_verify(
    hasher: PasswordHasher, password_hash: str | None, password: str
) -> tuple[bool, float]:
    started = time.perf_counter()
    result = await hasher.verify(password_hash, password)
    return result, time.perf_counter() - started


async def test_hash_produces_werkzeug_scrypt_hash(hasher: PasswordHasher) -> None:
    password_hash = await hasher.hash("correct horse battery")

    assert password_hash.startswith("scrypt:32768:8:1$")
    # method, 16-character salt and 128 hex digits, as the Flask service stores.
    assert len(password_hash) == 162
    assert check_password_hash(password_hash, "correct horse battery")
    assert not check_password_hash(password_hash, "correct horse battery!")


@pytest.mark.parametrize(
    ("password", "expected"),
    [(PASSWORD, True), ("wrong-password", False), (PASSWORD.upper(), False)],
)
async def test_verify_werkzeug_hash_matches_only_its_password(
    hasher: PasswordHasher, password: str, expected: bool
) -> None:
    assert await hasher.verify(PASSWORD_HASH, password) is expected


async def test_verify_without_hash_is_false_and_costs_a_hash(
    hasher: PasswordHasher,
) -> None:
    _, real = await _timed_verify(hasher, PASSWORD_HASH, "wrong-password")

    result, dummy = await _timed_verify(hasher, None, "wrong-password")

    assert result is False
    # Generous: only a skipped hash (orders of magnitude faster) must fail.
    assert dummy >= 0.5 * real


@pytest.mark.parametrize(
    "password_hash",
    [
        "sha256$salt$0123456789abcdef",
        "pbkdf2:nosuchdigest:1000$salt$0123456789abcdef",
        "scrypt:abc:8:1$salt$0123456789abcdef",
        "not-a-hash",
        "",
    ],
)
async def test_verify_unusable_hash_is_false(
    hasher: PasswordHasher, password_hash: str
) -> None:
    assert await hasher.verify(password_hash, PASSWORD) is False


async def test_hash_does_not_block_event_loop(hasher: PasswordHasher) -> None:
    gaps: list[float] = []
    hashing = asyncio.create_task(hasher.hash("correct horse battery"))

    last = time.perf_counter()
    while not hashing.done():
        await asyncio.sleep(TICK)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    await hashing

    # A hash takes ~100 ms; on the loop it would show as one gap that long.
    assert len(gaps) > 1
    assert max(gaps) < 0.05
