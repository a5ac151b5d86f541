"""PASSWORD_POLICY=common and PWNED_PASSWORDS_URL (security/password_policy.py):
zxcvbn's verdict with the account's own words, on its own thread; the range
service as a small HTTP server started by the test, answering, down and slow."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from marshmallow import ValidationError

from service.config import ConfigError, Settings
from service.security.password_policy import (
    TOO_COMMON,
    PasswordPolicy,
    is_guessable,
    listed,
    own_words,
)
from tests.ports import free_port
from tests.pwned import RangeService, serve_range, sha1
from tests.support import cases

ADA: dict[str, Any] = {"email": "ada.king@example.com", "names": ("Ada", "Lovelace")}
BOB: dict[str, Any] = {"email": "bob@example.org", "names": ("Bob", "Stone")}
STRONG = "a longer passphrase"
BREACHED = "an often leaked one"


@pytest.fixture
def range_service() -> Iterator[tuple[RangeService, str]]:
    with serve_range({BREACHED}) as served:
        yield served


def policy(settings: Settings, **changes: Any) -> PasswordPolicy:
    return PasswordPolicy(replace(settings, **changes))


async def refused(checker: PasswordPolicy, password: str, who: dict[str, Any]) -> bool:
    """Whether the check refuses the password (with the contract's message)."""
    messages: Any = None
    try:
        await checker.check(password, field="password", **who)
    except ValidationError as error:
        messages = error.messages
    assert messages in (None, {"password": [TOO_COMMON]})
    return messages is not None


# --- PASSWORD_POLICY=common --------------------------------------------------


def test_own_words_are_the_address_its_parts_and_the_names() -> None:
    assert own_words("ada.king@mail.example.com", ["Ada", "Lovelace"]) == [
        "ada",
        "ada.king",
        "ada.king@mail.example.com",
        "adalovelace",
        "example",
        "king",
        "lovelace",
        "mail",
    ]


VERDICTS = {
    "common": ("password123", True, True),
    "keyboard-walk": ("qwertyuiop", True, True),
    "the-address": ("ada.king@example.com", True, False),
    "built-from-names": ("Lovelace.Ada.1815", True, False),
    "reversed-name": ("ecalevol-ada-99", True, False),
    "passphrase": (STRONG, False, False),
    "long-passphrase": ("brand-new-password-789", False, False),
    "name-inside-a-long-one": ("Lovelace wrote the first program", False, False),
}


@cases("password, for_ada, for_bob", VERDICTS)
def test_guessable_passwords(password: str, for_ada: bool, for_bob: bool) -> None:
    ada = own_words(ADA["email"], ADA["names"])
    bob = own_words(BOB["email"], BOB["names"])

    assert (is_guessable(password, ada), is_guessable(password, bob)) == (
        for_ada,
        for_bob,
    )


def test_past_72_characters_judged_by_the_first_72(
    measurements: list[str],
) -> None:
    """zxcvbn refuses longer input by default: nothing here raises, and a
    long repeat costs a bounded time."""
    started = time.perf_counter()
    weak_start = is_guessable("x" * 128, [])
    took = time.perf_counter() - started

    assert weak_start is True
    assert is_guessable("correct horse battery staple " * 4, []) is False
    assert took < 2.0
    measurements.append(f"zxcvbn on 128 repeated characters: {took * 1000:.0f} ms")


async def test_concurrent_checks_never_see_each_others_words(
    settings: Settings,
) -> None:
    """zxcvbn's user words are module state: 40 checks at once, alternating two
    accounts, each judged with its own words only."""
    checker = policy(settings, password_policy="common")
    try:
        verdicts = await asyncio.gather(
            *(
                refused(checker, "Lovelace.Ada.1815", ADA if n % 2 else BOB)
                for n in range(40)
            )
        )
    finally:
        await checker.close()

    assert verdicts == [bool(n % 2) for n in range(40)]


async def test_length_policy_refuses_nothing(settings: Settings) -> None:
    checker = policy(settings)

    assert checker.active is False
    assert await refused(checker, "password123", ADA) is False


# --- PWNED_PASSWORDS_URL -----------------------------------------------------


def test_listed_reads_suffix_lines_and_ignores_padding() -> None:
    suffix = sha1(BREACHED)[5:]
    text = f"{'A' * 35}:9\r\n{suffix.lower()}:12\r\n{'B' * 35}:0"

    assert listed(text, suffix) is True
    assert listed(f"{suffix}:0", suffix) is False
    assert listed(f"{suffix}:junk", suffix) is False
    assert listed("", suffix) is False


async def test_range_service_sends_only_the_prefix_and_asks_for_padding(
    settings: Settings, range_service: tuple[RangeService, str]
) -> None:
    service, url = range_service
    checker = policy(settings, pwned_passwords_url=url)
    try:
        seen = await refused(checker, BREACHED, ADA)
        unseen = await refused(checker, STRONG, ADA)
    finally:
        await checker.close()

    assert (seen, unseen) == (True, False)
    assert service.requests == [
        (f"/range/{sha1(BREACHED)[:5]}", "true"),
        (f"/range/{sha1(STRONG)[:5]}", "true"),
    ]


@pytest.mark.parametrize("state", ["down", "slow"])
async def test_range_service_that_does_not_answer_accepts_logs_and_counts(
    settings: Settings,
    range_service: tuple[RangeService, str],
    caplog: pytest.LogCaptureFixture,
    measurements: list[str],
    state: str,
) -> None:
    service, url = range_service
    if state == "down":
        url = f"http://127.0.0.1:{free_port()}/range"
    else:
        service.delay = 1.0
    misses: list[int] = []
    checker = PasswordPolicy(
        replace(settings, pwned_passwords_url=url, pwned_passwords_timeout=0.2),
        on_miss=lambda: misses.append(1),
    )
    started = time.perf_counter()
    try:
        accepted = not await refused(checker, BREACHED, ADA)
    finally:
        await checker.close()
    took = time.perf_counter() - started

    assert accepted
    assert misses == [1]
    [record] = [r for r in caplog.records if r.name == "service.passwords"]
    assert "did not answer" in record.getMessage()
    assert took < 0.2 + 0.5
    measurements.append(f"range service {state}: answered in {took * 1000:.0f} ms")


@cases(
    "environ, message",
    {
        "policy": ({"PASSWORD_POLICY": "strict"}, "PASSWORD_POLICY must be"),
        "url": ({"PWNED_PASSWORDS_URL": "ftp://x"}, "PWNED_PASSWORDS_URL must be"),
    },
)
def test_bad_policy_settings_refused_at_start(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(environ)
