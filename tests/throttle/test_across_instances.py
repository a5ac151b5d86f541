"""The login throttle of two app instances sharing one Redis, as replicas do:
one budget per account and per address, whichever instance a guess reaches."""

from __future__ import annotations

import asyncio
from typing import Any

from quart.typing import TestClientProtocol as Client
from quart.wrappers import Response

from service.models import User
from tests.factories import PASSWORD
from tests.support import TOO_MANY, InstancesMaker, Names, post_login

SMALL_LIMITS = {"login_max_failures": 3, "login_max_failures_per_ip": 5}


async def attempt(client: Client, email: str, password: str, *, peer: str) -> Any:
    return await post_login(client, email, password, ip=peer)


async def assert_too_many(response: Response) -> None:
    assert response.status_code == 429
    assert await response.get_json() == TOO_MANY
    assert int(response.headers["Retry-After"]) > 0


async def test_account_failures_on_both_replicas_add_up_to_one_budget(
    make_instances: InstancesMaker, account: User, names: Names
) -> None:
    a, b = await make_instances(**SMALL_LIMITS)
    for replica in (a, b, a):
        response = await attempt(
            replica, account.email, "wrong-password", peer=names.ip()
        )
        assert response.status_code == 401

    on_a = await attempt(a, account.email, PASSWORD, peer=names.ip())
    on_b = await attempt(b, account.email, PASSWORD, peer=names.ip())

    for response in (on_a, on_b):
        await assert_too_many(response)


async def test_account_throttle_reached_on_one_replica_answers_429_on_the_other(
    make_instances: InstancesMaker, account: User, names: Names
) -> None:
    a, b = await make_instances(**SMALL_LIMITS)
    for _ in range(3):
        await attempt(a, account.email, "wrong-password", peer=names.ip())

    response = await attempt(b, account.email, PASSWORD, peer=names.ip())

    await assert_too_many(response)


async def test_concurrent_burst_gets_no_more_guesses_than_the_budget(
    make_instances: InstancesMaker, account: User, names: Names
) -> None:
    # A guesser does not wait for answers: 20 guesses fired at once must not all
    # be checked against the password when the budget is 3.
    a, b = await make_instances(**SMALL_LIMITS)

    responses = await asyncio.gather(
        *(
            attempt(replica, account.email, f"guess-{number}", peer=names.ip())
            for number, replica in enumerate((a, b) * 10)
        )
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(401) <= SMALL_LIMITS["login_max_failures"], statuses
    assert set(statuses) <= {401, 429}, statuses


async def test_ip_throttle_reached_on_one_replica_answers_429_on_the_other(
    make_instances: InstancesMaker, account: User, names: Names
) -> None:
    a, b = await make_instances(**SMALL_LIMITS)
    peer = names.ip()
    for _ in range(5):
        await attempt(a, names.email(), "wrong-password", peer=peer)

    blocked = await attempt(b, account.email, PASSWORD, peer=peer)
    elsewhere = await attempt(b, account.email, PASSWORD, peer=names.ip())

    assert blocked.status_code == 429
    assert elsewhere.status_code == 200
