"""FactorService on the database with an injected clock: TOTP codes at the edges
of their steps, a code replayed within its step, and secrets sealed under a key
being rotated out."""

from __future__ import annotations

from dataclasses import replace

import pyotp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.models import TotpFactor, User
from service.security.totp import SecretBox
from service.services.events import Client
from service.services.factors import FactorService

CLIENT = Client(ip="192.0.2.1", user_agent="pytest")
T0 = 1_800_000_000 - 1_800_000_000 % 30  # the first second of a step
OLD_KEY = "an-older-mfa-key-for-the-tests-0123456789"
NEW_KEY = "the-current-mfa-key-for-the-tests-0123456"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def totp_on(
    session: AsyncSession, settings: Settings, user: User, clock: Clock
) -> str:
    factors = FactorService(session, settings, clock=clock)
    secret = (await factors.start_totp(user)).secret
    await factors.confirm_totp(user, pyotp.TOTP(secret).at(clock.now), client=CLIENT)
    return secret


async def test_a_code_is_refused_again_within_its_own_step(
    session: AsyncSession, settings: Settings, user: User
) -> None:
    clock = Clock(T0 + 1)
    factors = FactorService(session, settings, clock=clock)
    secret = await totp_on(session, settings, user, clock)
    next_step = pyotp.TOTP(secret).at(T0 + 30)

    clock.now = T0 + 30  # the first second of the next step
    used = await factors.use_totp(user.id, next_step)
    clock.now = T0 + 59  # its last second
    replayed = await factors.use_totp(user.id, next_step)

    assert (used, replayed) == (True, False)


async def test_at_a_step_edge_the_step_before_still_counts_and_two_before_do_not(
    session: AsyncSession, settings: Settings, user: User
) -> None:
    clock = Clock(T0 - 120)
    factors = FactorService(session, settings, clock=clock)
    secret = await totp_on(session, settings, user, clock)
    totp = pyotp.TOTP(secret)

    clock.now = T0  # step k begins: k-1 is one step either side, k-2 is not
    too_old = await factors.use_totp(user.id, totp.at(T0 - 31))
    just_before = await factors.use_totp(user.id, totp.at(T0 - 1))
    ahead = await factors.use_totp(user.id, totp.at(T0 + 30))
    earlier_after_later = await factors.use_totp(user.id, totp.at(T0))

    assert (too_old, just_before, ahead, earlier_after_later) == (
        False,
        True,
        True,
        False,
    )


def sealing_under(settings: Settings, key: str, *fallbacks: str) -> Settings:
    """`settings` that seal secrets under `key` and open them with `fallbacks` too."""
    return replace(
        settings, mfa_encryption_key=key, mfa_encryption_key_fallbacks=fallbacks
    )


async def totp_under_the_old_key(
    session: AsyncSession, settings: Settings, user: User, clock: Clock
) -> str:
    """TOTP turned on while OLD_KEY sealed the secrets: the secret."""
    return await totp_on(session, sealing_under(settings, OLD_KEY), user, clock)


async def test_a_secret_sealed_under_a_fallback_key_works_and_is_sealed_anew(
    session: AsyncSession, settings: Settings, user: User
) -> None:
    clock = Clock(T0)
    secret = await totp_under_the_old_key(session, settings, user, clock)
    rotated = sealing_under(settings, NEW_KEY, OLD_KEY)

    clock.now = T0 + 30
    used = await FactorService(session, rotated, clock=clock).use_totp(
        user.id, pyotp.TOTP(secret).at(T0 + 30)
    )
    await session.commit()
    row = await session.get_one(TotpFactor, user.id, populate_existing=True)

    assert used is True
    assert SecretBox(NEW_KEY).open(row.secret, context=f"totp:{user.id}") == (
        secret,
        True,
    )


async def test_without_the_old_key_a_sealed_secret_opens_for_no_code(
    session: AsyncSession, settings: Settings, user: User
) -> None:
    clock = Clock(T0)
    secret = await totp_under_the_old_key(session, settings, user, clock)
    factors = FactorService(session, sealing_under(settings, NEW_KEY), clock=clock)

    # A fault of the deployment (the key that sealed it is gone): logged as a 500.
    with pytest.raises(ValueError, match=r"^no MFA encryption key opens this secret$"):
        await factors.use_totp(user.id, pyotp.TOTP(secret).at(T0 + 30))
