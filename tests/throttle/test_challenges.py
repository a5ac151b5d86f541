"""The WebAuthn challenge stores: each challenge taken once, within its time, by
whichever replica gets the answer (Redis), or by this process (memory)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from service.errors import UnavailableError
from service.models import User
from service.throttle.challenges import (
    ChallengeStore,
    MemoryChallenges,
    RedisChallenges,
    create_challenges,
)
from tests import backends
from tests.authenticator import Authenticator
from tests.ports import free_port
from tests.support import API, PASSKEYS, InstancesMaker, bearer


@pytest.fixture
async def redis_challenges() -> AsyncIterator[RedisChallenges]:
    store = RedisChallenges(backends.redis_url(), prefix=f"test-{uuid.uuid4().hex}:")
    yield store
    await store.close()


@pytest.fixture(params=["memory", "redis"])
async def store(
    request: pytest.FixtureRequest, redis_challenges: RedisChallenges
) -> ChallengeStore:
    if request.param == "memory":
        return MemoryChallenges()
    return redis_challenges


async def test_a_challenge_is_taken_once(store: ChallengeStore) -> None:
    await store.put("c1", "value", 300)

    assert await store.take("c1") == "value"
    assert await store.take("c1") is None
    assert await store.take("never-put") is None


async def test_a_challenge_taken_at_once_by_many_goes_to_one(
    store: ChallengeStore,
) -> None:
    await store.put("c2", "value", 300)

    taken = await asyncio.gather(*(store.take("c2") for _ in range(20)))

    assert taken.count("value") == 1
    assert taken.count(None) == 19


async def test_a_challenge_past_its_time_is_gone(store: ChallengeStore) -> None:
    await store.put("c3", "value", 1)
    await asyncio.sleep(1.1)

    assert await store.take("c3") is None


async def test_redis_keeps_a_challenge_no_longer_than_its_time(
    redis_challenges: RedisChallenges,
) -> None:
    await redis_challenges.put("c4", "value", 300)
    redis = Redis.from_url(backends.redis_url())
    try:
        ttl_ms = await redis.pttl(f"{redis_challenges.prefix}c4")
    finally:
        await redis.aclose()

    assert 299_000 < ttl_ms <= 300_000


async def test_an_unreachable_redis_is_503_not_500() -> None:
    store = RedisChallenges(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(UnavailableError) as raised:
            await store.put("c5", "value", 300)
    finally:
        await store.close()

    assert raised.value.status_code == 503


def test_memory_keeps_at_most_its_cap_dropping_the_oldest() -> None:
    store = MemoryChallenges(max_keys=3)

    async def fill() -> list[str | None]:
        for key in ("a", "b", "c", "d"):
            await store.put(key, key, 300)
        return [await store.take(key) for key in ("a", "b", "c", "d")]

    assert asyncio.run(fill()) == [None, "b", "c", "d"]


def test_redis_url_picks_the_shared_store() -> None:
    assert isinstance(create_challenges(None), MemoryChallenges)
    assert isinstance(create_challenges("redis://127.0.0.1:1/0"), RedisChallenges)


async def test_a_passkey_registered_and_used_across_two_replicas(
    make_instances: InstancesMaker, user_headers: dict[str, str], user: User
) -> None:
    """Options from one replica, the answer to the other: the challenge is found."""
    a, b = await make_instances()
    authenticator = Authenticator()

    options = await (
        await a.post(f"{PASSKEYS}/options", headers=user_headers)
    ).get_json()
    created = await b.post(
        PASSKEYS,
        headers=user_headers,
        json={"credential": authenticator.create(options)},
    )
    request = await (await b.post(f"{PASSKEYS}/login/options", json={})).get_json()
    signed = authenticator.get(request)
    answers = await asyncio.gather(
        a.post(f"{PASSKEYS}/login", json={"credential": signed}),
        b.post(f"{PASSKEYS}/login", json={"credential": signed}),
    )

    assert created.status_code == 201
    assert sorted(answer.status_code for answer in answers) == [200, 401]
    [won] = [answer for answer in answers if answer.status_code == 200]
    me = await a.get(
        f"{API}/users/me", headers=bearer((await won.get_json())["access_token"])
    )
    assert (await me.get_json())["id"] == user.id
