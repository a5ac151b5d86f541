"""The client's address: the peer, or the client a trusted proxy forwards for.

The login throttle budgets it (tests/throttle) and a login's session row records it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service import create_app
from service.api.deps import client_ip
from service.config import Settings
from service.models import AuthSession, User
from tests.factories import PASSWORD
from tests.support import LOGIN, AppStarter, cases

# Trusted proxies, the peer, its X-Forwarded-For, and the client that makes.
CLIENT_IPS = {
    "no-proxies": ((), "10.0.0.1", "203.0.113.9", "10.0.0.1"),
    "trusted": (("10.0.0.0/8",), "10.0.0.1", "203.0.113.9", "203.0.113.9"),
    "trusted-host": (("10.0.0.1",), "10.0.0.1", "203.0.113.9", "203.0.113.9"),
    "untrusted": (("10.0.0.0/8",), "192.0.2.1", "203.0.113.9", "192.0.2.1"),
    "no-header": (("10.0.0.0/8",), "10.0.0.1", None, "10.0.0.1"),
    "forged-left-hop-ignored": (
        ("10.0.0.0/8",),
        "10.0.0.1",
        "198.51.100.1, 203.0.113.9",
        "203.0.113.9",
    ),
    "inner-proxy-skipped": (
        ("10.0.0.0/8",),
        "10.0.0.1",
        "198.51.100.1, 203.0.113.9, 10.0.0.2",
        "203.0.113.9",
    ),
    "empty-hops": (("10.0.0.0/8",), "10.0.0.1", " , 203.0.113.9 ,", "203.0.113.9"),
    "ipv6-proxy": (("::1/128",), "::1", "2001:db8::5", "2001:db8::5"),
    "not-an-ip-peer": (("10.0.0.0/8",), "<local>", "203.0.113.9", "<local>"),
    # nginx's real_ip_recursive: every hop trusted, the leftmost is the client.
    "every-hop-trusted": (
        ("10.0.0.0/8",),
        "10.0.0.1",
        "10.9.8.7, 10.0.0.2",
        "10.9.8.7",
    ),
    "hop-with-port": (("10.0.0.0/8",), "10.0.0.1", "203.0.113.9:5555", "203.0.113.9"),
    "bracketed-ipv6-hop-with-port": (
        ("10.0.0.0/8",),
        "10.0.0.1",
        "[2001:db8::5]:443",
        "2001:db8::5",
    ),
    "trusted-hop-with-port": (
        ("10.0.0.0/8",),
        "10.0.0.1",
        "203.0.113.9, 10.0.0.2:8080",
        "203.0.113.9",
    ),
    # Not an address: the walk stops, the last trusted view (the peer) stands.
    "not-an-address-hop": (("10.0.0.0/8",), "10.0.0.1", "unknown", "10.0.0.1"),
    "not-an-address-behind-trusted-hop": (
        ("10.0.0.0/8",),
        "10.0.0.1",
        "203.0.113.9, _hidden, 10.0.0.2",
        "10.0.0.2",
    ),
    "ipv4-mapped-hop": (
        ("10.0.0.0/8",),
        "10.0.0.1",
        "::ffff:203.0.113.9",
        "203.0.113.9",
    ),
    "nat64-hop": (("10.0.0.0/8",), "10.0.0.1", "64:ff9b::cb00:7109", "203.0.113.9"),
    "ipv4-mapped-peer": ((), "::ffff:192.0.2.1", None, "192.0.2.1"),
    "ipv4-mapped-trusted-peer": (
        ("10.0.0.0/8",),
        "::ffff:10.0.0.1",
        "203.0.113.9",
        "203.0.113.9",
    ),
}


@cases("proxies, remote, forwarded_for, expected", CLIENT_IPS)
async def test_client_ip(
    settings: Settings,
    proxies: tuple[str, ...],
    remote: str,
    forwarded_for: str | None,
    expected: str,
) -> None:
    app = create_app(replace(settings, trusted_proxies=proxies))
    headers = {"Remote-Addr": remote}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    # Quart 0.22 takes a test request context's peer from its Remote-Addr header
    # (the ASGI path sets that header from scope["client"], first).
    async with app.test_request_context("/", headers=headers):
        assert client_ip() == expected


async def session_ip(session: AsyncSession, user: User) -> str | None:
    ip: str | None = await session.scalar(
        select(AuthSession.ip).where(AuthSession.user_id == user.id)
    )
    return ip


@pytest.mark.parametrize("case", ["no-proxies", "trusted", "untrusted"])
async def test_login_session_records_the_client_ip(
    start_app: AppStarter, session: AsyncSession, user: User, case: str
) -> None:
    proxies, peer, forwarded_for, expected = CLIENT_IPS[case]
    client = (await start_app(trusted_proxies=proxies)).test_client()

    response = await client.post(
        LOGIN,
        json={"email": user.email, "password": PASSWORD},
        headers={"X-Forwarded-For": forwarded_for},
        scope_base={"client": (peer, 51000)},
    )

    assert response.status_code == 200
    assert await session_ip(session, user) == expected


async def test_login_remote_addr_header_cannot_forge_the_ip(
    client: Client, session: AsyncSession, user: User
) -> None:
    response = await client.post(
        LOGIN,
        json={"email": user.email, "password": PASSWORD},
        headers={"Remote-Addr": "203.0.113.66"},
        scope_base={"client": ("192.0.2.60", 51000)},
    )

    assert response.status_code == 200
    assert await session_ip(session, user) == "192.0.2.60"
