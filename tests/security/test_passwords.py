"""service.security.passwords.PasswordHasher: werkzeug hashes, off the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from werkzeug.security import check_password_hash, generate_password_hash

from service.errors import UnavailableError
from service.security import passwords
from service.security.passwords import DUMMY_HASH, PasswordHasher
from tests.factories import PASSWORD, PASSWORD_HASH


class Recorded:
    """Wraps one of passwords.py's werkzeug functions: what it got, on which thread."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __call__(self, *args: Any) -> Any:
        self.calls.append((threading.current_thread().name, args))
        return self.function(*args)


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
    hasher: PasswordHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    check = Recorded(check_password_hash)
    monkeypatch.setattr(passwords, "check_password_hash", check)

    result = await hasher.verify(None, "wrong-password")

    assert result is False
    # A real check of a hash as costly as today's: an unknown email answers as
    # slowly as a wrong password.
    assert [args for _, args in check.calls] == [(DUMMY_HASH, "wrong-password")]
    assert DUMMY_HASH.split("$", 1)[0] == PASSWORD_HASH.split("$", 1)[0]


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


async def test_hash_runs_on_the_pool_while_the_loop_runs(
    hasher: PasswordHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hash waits for a step the loop takes while the hash is in flight: on
    # the loop it could never see that step (it would time out and fail).
    loop_ran = threading.Event()
    real_hash = generate_password_hash

    def hash_after_the_loop_ran(password: str) -> str:
        assert loop_ran.wait(timeout=10), "the event loop was blocked"
        return real_hash(password)

    generate = Recorded(hash_after_the_loop_ran)
    monkeypatch.setattr(passwords, "generate_password_hash", generate)

    hashing = asyncio.create_task(hasher.hash("correct horse battery"))
    await asyncio.sleep(0)  # the task hands the hash to the pool
    assert not hashing.done()
    loop_ran.set()
    password_hash = await hashing

    assert check_password_hash(password_hash, "correct horse battery")
    [(thread, _)] = generate.calls
    assert thread.startswith("pwhash")
    assert thread != threading.current_thread().name


async def test_hash_pool_refuses_past_its_queue_with_503() -> None:
    hasher = PasswordHasher(1, queue=2)
    try:
        results = await asyncio.gather(
            *(hasher.verify(None, PASSWORD) for _ in range(8)), return_exceptions=True
        )
    finally:
        hasher.shutdown()

    refused = [r for r in results if isinstance(r, UnavailableError)]
    assert results[:3] == [False, False, False]
    assert len(refused) == 5
    assert all(error.headers["Retry-After"] == "1" for error in refused)
