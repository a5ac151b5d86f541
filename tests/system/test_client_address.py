"""One client key for the login throttle and every route limit, over HTTP.

A served instance trusts one loopback address as its proxy (TRUSTED_PROXIES, and
10.0.0.0/8 for the tests of a chain of proxies); the test's "proxy" client binds
that address and says who it forwards for in X-Forwarded-For: IPv6 addresses of
one /64, IPv4-mapped and NAT64 forms of one IPv4 client, `ip:port` hops. Other
clients come from loopback addresses of their own, untrusted.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support import FORGOT, LOGIN, unique_email
from tests.system.conftest import ServeInstance
from tests.system.harness import ServedApp, loopback_address

RESETS_PER_CLIENT = 2
FAILURES_PER_CLIENT = 3


@pytest.fixture(scope="module")
def proxy_address() -> str:
    return loopback_address()


@pytest.fixture(scope="module")
def behind_proxy(
    serve_instance: ServeInstance, proxy_address: str
) -> Iterator[ServedApp]:
    with serve_instance(
        "behind-proxy",
        TRUSTED_PROXIES=f"{proxy_address},10.0.0.0/8",
        PASSWORD_RESET_MAX_PER_IP=str(RESETS_PER_CLIENT),
        LOGIN_MAX_FAILURES_PER_IP=str(FAILURES_PER_CLIENT),
    ) as instance:
        yield instance


async def forgot(
    client: httpx.AsyncClient, forwarded_for: str | None = None
) -> httpx.Response:
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    return await client.post(
        FORGOT, json={"email": unique_email("nobody")}, headers=headers
    )


async def forgot_statuses(
    served: ServedApp, proxy_address: str, forwarded: list[str]
) -> list[int]:
    async with served.client(proxy_address) as proxy:
        return [(await forgot(proxy, hop)).status_code for hop in forwarded]


def v6_64() -> str:
    """A fresh /64 of the documentation prefix, so runs never share one."""
    return f"2001:db8:{uuid.uuid4().int % 0xFFFF:x}:{uuid.uuid4().int % 0xFFFF:x}"


def v4() -> str:
    octets = uuid.uuid4().bytes[:2]
    return f"198.51.{octets[0]}.{octets[1] % 254 + 1}"


def addresses_of_one_ipv6_64() -> list[str]:
    prefix = v6_64()
    return [f"{prefix}::{n:x}" for n in range(1, RESETS_PER_CLIENT + 2)]


def ports_of_one_ipv4() -> list[str]:
    client = v4()
    return [f"{client}:{40000 + n}" for n in range(RESETS_PER_CLIENT + 1)]


@pytest.mark.parametrize(
    "hops_of_one_client",
    [addresses_of_one_ipv6_64, ports_of_one_ipv4],
    ids=["an-ipv6-64-is-one-client", "the-port-of-a-hop-is-dropped"],
)
async def test_route_limit_counts_the_hops_of_one_client_as_one(
    behind_proxy: ServedApp,
    proxy_address: str,
    hops_of_one_client: Callable[[], list[str]],
) -> None:
    hops = hops_of_one_client()

    statuses = await forgot_statuses(behind_proxy, proxy_address, hops)

    assert statuses == [202] * RESETS_PER_CLIENT + [429]


async def test_route_limit_counts_mapped_and_nat64_forms_as_their_ipv4(
    behind_proxy: ServedApp, proxy_address: str
) -> None:
    client = v4()
    a, b, c, d = (int(part) for part in client.split("."))
    nat64 = f"64:ff9b::{a * 256 + b:x}:{c * 256 + d:x}"

    statuses = await forgot_statuses(
        behind_proxy, proxy_address, [f"::ffff:{client}", nat64, client]
    )

    assert statuses == [202, 202, 429]


async def test_route_limit_behind_a_chain_of_trusted_proxies_is_per_client(
    behind_proxy: ServedApp, proxy_address: str
) -> None:
    # Every hop trusted (an internal ingress): the leftmost is the client, so
    # one client spending its budget leaves the others theirs.
    first, second = (f"10.{n}.{uuid.uuid4().int % 250}.1" for n in (1, 2))
    spent = [f"{first}, 10.0.0.2"] * (RESETS_PER_CLIENT + 1)

    statuses = await forgot_statuses(behind_proxy, proxy_address, spent)
    other = await forgot_statuses(behind_proxy, proxy_address, [f"{second}, 10.0.0.2"])

    assert statuses == [202] * RESETS_PER_CLIENT + [429]
    assert other == [202]


async def test_route_limit_is_per_loopback_address_without_a_proxy(
    behind_proxy: ServedApp,
) -> None:
    # Untrusted peers: each is its client, whatever it writes in the header.
    async with behind_proxy.client() as one, behind_proxy.client() as two:
        spent = [
            (await forgot(one, "203.0.113.1")).status_code
            for _ in range(RESETS_PER_CLIENT + 1)
        ]
        other = (await forgot(two, "203.0.113.1")).status_code

    assert spent == [202] * RESETS_PER_CLIENT + [429]
    assert other == 202


async def test_login_throttle_counts_a_mapped_address_as_its_ipv4(
    behind_proxy: ServedApp, proxy_address: str
) -> None:
    client = v4()
    hops = [f"::ffff:{client}"] * FAILURES_PER_CLIENT + [client]
    async with behind_proxy.client(proxy_address) as proxy:
        statuses = [
            (
                await proxy.post(
                    LOGIN,
                    json={"email": unique_email("nobody"), "password": "wrong"},
                    headers={"X-Forwarded-For": hop},
                )
            ).status_code
            for hop in hops
        ]

    assert statuses == [401] * FAILURES_PER_CLIENT + [429]
