"""Login throttling: the counters, the budgets over HTTP, and the client's IP.

LoginThrottle runs on both counters: in process memory, and in the Redis at
REDIS_URL that replicas share (tests/backends.py picks the suite's). Every key a
test touches is named after a unique email or IP and deleted afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import create_app
from service.api.database import SESSIONMAKER_KEY
from service.api.deps import client_ip
from service.config import Settings
from service.errors import TooManyRequestsError
from service.models import AuthSession, User
from service.throttle import (
    Counter,
    LoginThrottle,
    MemoryCounter,
    RedisCounter,
    account_key,
    ip_key,
)
from tests import backends
from tests.factories import PASSWORD, make_user

REDIS_URL = backends.redis_url()
LOGIN = "/api/v1/auth/login"
TOO_MANY = {"error": "Too many failed login attempts; try again later"}
INVALID_CREDENTIALS = {"error": "Invalid email or password"}
SMALL_LIMITS: dict[str, Any] = {"login_max_failures": 3, "login_max_failures_per_ip": 5}


class Names:
    """Unique emails and IPs, remembered so that their Redis keys can go."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def email(self) -> str:
        email = f"throttle-{uuid.uuid4().hex[:12]}@example.com"
        self.keys.add(account_key(email))
        return email

    def ip(self) -> str:
        # A /64 of its own: the throttle budgets IPv6 clients per /64.
        hex_ = uuid.uuid4().hex
        ip = f"2001:db8:{hex_[:4]}:{hex_[4:8]}::{hex_[8:12]}"
        self.keys.add(ip_key(ip))
        return ip

    def track(self, email: str) -> str:
        self.keys.add(account_key(email))
        return email


@pytest.fixture
async def names() -> AsyncIterator[Names]:
    names = Names()
    yield names
    redis: Redis = Redis.from_url(REDIS_URL)
    try:
        if names.keys:
            await redis.delete(*names.keys)
    finally:
        await redis.aclose()


@pytest.fixture(params=["memory", "redis"])
async def counter(request: pytest.FixtureRequest) -> AsyncIterator[Counter]:
    counter: Counter = (
        MemoryCounter() if request.param == "memory" else RedisCounter(REDIS_URL)
    )
    yield counter
    await counter.close()


def throttle_with(
    counter: Counter, settings: Settings, *, window: int = 900
) -> LoginThrottle:
    return LoginThrottle(
        counter,
        replace(settings, **SMALL_LIMITS, login_window_seconds=window),
    )


async def fail(throttle: LoginThrottle, email: str, ip: str, times: int) -> None:
    # Every attempt counts before its password is checked; a failure adds nothing more.
    for _ in range(times):
        await throttle.attempt(email, ip)


async def refused(throttle: LoginThrottle, email: str, ip: str) -> TooManyRequestsError:
    with pytest.raises(TooManyRequestsError) as caught:
        await throttle.attempt(email, ip)
    return caught.value


# --- LoginThrottle on each counter ---------------------------------------------


async def test_check_below_account_limit_passes(
    counter: Counter, settings: Settings, names: Names
) -> None:
    throttle = throttle_with(counter, settings)
    email, ip = names.email(), names.ip()
    await fail(throttle, email, ip, 2)

    await throttle.attempt(email, ip)


async def test_check_at_account_limit_raises_429_with_retry_after(
    counter: Counter, settings: Settings, names: Names
) -> None:
    throttle = throttle_with(counter, settings)
    email, ip = names.email(), names.ip()
    await fail(throttle, email, ip, 3)

    error = await refused(throttle, email, ip)

    assert error.status_code == 429
    assert 0 < int(error.headers["Retry-After"]) <= 900


async def test_account_limit_applies_from_any_ip(
    counter: Counter, settings: Settings, names: Names
) -> None:
    throttle = throttle_with(counter, settings)
    email = names.email()
    for _ in range(3):
        await throttle.attempt(email, names.ip())

    await refused(throttle, email, names.ip())


async def test_account_limit_leaves_other_accounts(
    counter: Counter, settings: Settings, names: Names
) -> None:
    throttle = throttle_with(counter, settings)
    ip = names.ip()
    await fail(throttle, names.email(), ip, 3)

    await throttle.attempt(names.email(), ip)


async def test_account_budget_ignores_letter_case_and_spaces(
    counter: Counter, settings: Settings, names: Names
) -> None:
    throttle = throttle_with(counter, settings)
    email, ip = names.email(), names.ip()
    await fail(throttle, f"  {email.upper()} ", ip, 3)

    await refused(throttle, email, ip)


async def test_success_resets_the_account_budget(
    counter: Counter, settings: Settings, names: Names
) -> None:
    throttle = throttle_with(counter, settings)
    email, ip = names.email(), names.ip()
    await fail(throttle, email, ip, 3)

    await throttle.succeeded(email, ip)

    await throttle.attempt(email, ip)


async def test_success_keeps_the_ip_budget(
    counter: Counter, settings: Settings, names: Names
) -> None:
    throttle = throttle_with(counter, settings)
    email, ip = names.email(), names.ip()
    for _ in range(4):
        await throttle.attempt(names.email(), ip)
    await throttle.attempt(email, ip)

    # A right password takes back only its own attempt from the IP's budget.
    await throttle.succeeded(email, ip)

    await throttle.attempt(names.email(), ip)
    await refused(throttle, names.email(), ip)


async def test_ip_limit_refuses_every_account_from_that_ip(
    counter: Counter, settings: Settings, names: Names
) -> None:
    throttle = throttle_with(counter, settings)
    ip = names.ip()
    for _ in range(5):
        await throttle.attempt(names.email(), ip)

    error = await refused(throttle, names.email(), ip)

    assert 0 < int(error.headers["Retry-After"]) <= 900


async def test_ip_limit_leaves_other_ips(
    counter: Counter, settings: Settings, names: Names
) -> None:
    throttle = throttle_with(counter, settings)
    ip = names.ip()
    for _ in range(5):
        await throttle.attempt(names.email(), ip)

    await throttle.attempt(names.email(), names.ip())


async def test_budget_returns_when_the_window_ends(
    counter: Counter, settings: Settings, names: Names
) -> None:
    throttle = throttle_with(counter, settings, window=1)
    email, ip = names.email(), names.ip()
    await fail(throttle, email, ip, 3)
    await refused(throttle, email, ip)

    await asyncio.sleep(1.1)

    await throttle.attempt(email, ip)


async def test_redis_counters_are_shared_between_instances(
    settings: Settings, names: Names
) -> None:
    first, second = RedisCounter(REDIS_URL), RedisCounter(REDIS_URL)
    try:
        email, ip = names.email(), names.ip()
        await fail(throttle_with(first, settings), email, ip, 3)

        await refused(throttle_with(second, settings), email, ip)
    finally:
        await first.close()
        await second.close()


async def test_redis_keys_expire_with_the_window_and_hide_the_email(
    settings: Settings, names: Names
) -> None:
    counter = RedisCounter(REDIS_URL)
    redis: Redis = Redis.from_url(REDIS_URL)
    try:
        email, ip = names.email(), names.ip()
        await throttle_with(counter, settings, window=600).attempt(email, ip)

        for key in (account_key(email), ip_key(ip)):
            assert 0 < await redis.ttl(key) <= 600
        assert await redis.keys(f"*{email}*") == []
    finally:
        await counter.close()
        await redis.aclose()


async def test_memory_counters_are_per_instance(
    settings: Settings, names: Names
) -> None:
    # Without Redis each process counts alone: the documented single-node mode.
    email, ip = names.email(), names.ip()
    await fail(throttle_with(MemoryCounter(), settings), email, ip, 3)

    await throttle_with(MemoryCounter(), settings).attempt(email, ip)


# --- over HTTP ------------------------------------------------------------------

MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def make_client(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[MakeClient]:
    async with AsyncExitStack() as stack:

        async def make(**changes: Any) -> Client:
            app = create_app(replace(settings, **changes))
            app.extensions[SESSIONMAKER_KEY] = sessionmaker
            test_app = app.test_app()
            await test_app.startup()
            stack.push_async_callback(test_app.shutdown)
            return app.test_client()

        yield make


async def attempt(
    client: Client,
    email: str,
    password: str,
    *,
    peer: str = "192.0.2.10",
    forwarded_for: str | None = None,
) -> Any:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return await client.post(
        LOGIN,
        json={"email": email, "password": password},
        headers=headers,
        scope_base={"client": (peer, 51000)},
    )


async def test_login_after_10_failures_429_even_with_the_right_password(
    client: Client, user: User
) -> None:
    for _ in range(10):
        response = await attempt(client, user.email, "wrong-password")
        assert (response.status_code, await response.get_json()) == (
            401,
            INVALID_CREDENTIALS,
        )

    response = await attempt(client, user.email, PASSWORD)

    assert response.status_code == 429
    assert await response.get_json() == TOO_MANY
    assert 0 < int(response.headers["Retry-After"]) <= 15 * 60


async def test_login_throttled_429_is_hardened_like_every_auth_answer(
    make_client: MakeClient, session: AsyncSession
) -> None:
    client = await make_client(**SMALL_LIMITS)
    user = await make_user(session)
    for _ in range(3):
        await attempt(client, user.email, "wrong-password")

    response = await attempt(client, user.email, PASSWORD)

    assert response.status_code == 429
    assert response.mimetype == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in response.headers["Cache-Control"]


async def test_login_throttled_account_leaves_other_accounts(
    make_client: MakeClient, session: AsyncSession
) -> None:
    client = await make_client(**SMALL_LIMITS)
    victim, other = await make_user(session), await make_user(session)
    for _ in range(3):
        await attempt(client, victim.email, "wrong-password")

    blocked = await attempt(client, victim.email, PASSWORD)
    response = await attempt(client, other.email, PASSWORD)

    assert blocked.status_code == 429
    assert response.status_code == 200


async def test_login_success_resets_the_account_failures(
    make_client: MakeClient, session: AsyncSession
) -> None:
    client = await make_client(**SMALL_LIMITS)
    user = await make_user(session)
    for _ in range(2):
        await attempt(client, user.email, "wrong-password", peer="192.0.2.20")
    await attempt(client, user.email, PASSWORD, peer="192.0.2.20")
    for _ in range(2):
        await attempt(client, user.email, "wrong-password", peer="192.0.2.21")

    response = await attempt(client, user.email, PASSWORD, peer="192.0.2.22")

    assert response.status_code == 200


async def test_login_ip_budget_refuses_every_account_from_that_ip(
    make_client: MakeClient, session: AsyncSession
) -> None:
    client = await make_client(**SMALL_LIMITS)
    user = await make_user(session)
    for number in range(5):
        await attempt(client, f"nobody{number}@example.com", "x", peer="192.0.2.30")

    blocked = await attempt(client, user.email, PASSWORD, peer="192.0.2.30")
    elsewhere = await attempt(client, user.email, PASSWORD, peer="192.0.2.31")

    assert blocked.status_code == 429
    assert await blocked.get_json() == TOO_MANY
    assert int(blocked.headers["Retry-After"]) > 0
    assert elsewhere.status_code == 200


async def test_login_forwarded_for_from_untrusted_peer_cannot_dodge_ip_budget(
    make_client: MakeClient, session: AsyncSession
) -> None:
    client = await make_client(**SMALL_LIMITS)
    user = await make_user(session)
    for number in range(5):
        await attempt(
            client,
            f"nobody{number}@example.com",
            "x",
            peer="192.0.2.40",
            forwarded_for=f"203.0.113.{number}",
        )

    response = await attempt(
        client, user.email, PASSWORD, peer="192.0.2.40", forwarded_for="203.0.113.99"
    )

    assert response.status_code == 429


async def test_login_behind_trusted_proxy_budgets_the_forwarded_client(
    make_client: MakeClient, session: AsyncSession
) -> None:
    client = await make_client(**SMALL_LIMITS, trusted_proxies=("10.0.0.0/8",))
    user = await make_user(session)
    for number in range(5):
        await attempt(
            client,
            f"nobody{number}@example.com",
            "x",
            peer="10.0.0.1",
            forwarded_for="203.0.113.9",
        )

    blocked = await attempt(
        client, user.email, PASSWORD, peer="10.0.0.1", forwarded_for="203.0.113.9"
    )
    neighbour = await attempt(
        client, user.email, PASSWORD, peer="10.0.0.1", forwarded_for="203.0.113.10"
    )

    assert blocked.status_code == 429
    assert neighbour.status_code == 200


async def session_ip(session: AsyncSession, user: User) -> str | None:
    ip: str | None = await session.scalar(
        select(AuthSession.ip).where(AuthSession.user_id == user.id)
    )
    return ip


@pytest.mark.parametrize(
    ("proxies", "peer", "forwarded_for", "expected"),
    [
        pytest.param((), "192.0.2.50", "203.0.113.9", "192.0.2.50", id="no-proxies"),
        pytest.param(
            ("10.0.0.0/8",), "10.0.0.1", "203.0.113.9", "203.0.113.9", id="trusted"
        ),
        pytest.param(
            ("10.0.0.0/8",), "192.0.2.50", "203.0.113.9", "192.0.2.50", id="untrusted"
        ),
    ],
)
async def test_login_session_records_the_client_ip(
    make_client: MakeClient,
    session: AsyncSession,
    proxies: tuple[str, ...],
    peer: str,
    forwarded_for: str,
    expected: str,
) -> None:
    client = await make_client(trusted_proxies=proxies)
    user = await make_user(session)

    response = await attempt(
        client, user.email, PASSWORD, peer=peer, forwarded_for=forwarded_for
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


# --- client_ip ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proxies", "remote", "forwarded_for", "expected"),
    [
        pytest.param((), "10.0.0.1", "203.0.113.9", "10.0.0.1", id="no-proxies"),
        pytest.param(
            ("10.0.0.0/8",), "10.0.0.1", "203.0.113.9", "203.0.113.9", id="trusted"
        ),
        pytest.param(
            ("10.0.0.1",), "10.0.0.1", "203.0.113.9", "203.0.113.9", id="trusted-host"
        ),
        pytest.param(
            ("10.0.0.0/8",), "192.0.2.1", "203.0.113.9", "192.0.2.1", id="untrusted"
        ),
        pytest.param(("10.0.0.0/8",), "10.0.0.1", None, "10.0.0.1", id="no-header"),
        pytest.param(
            ("10.0.0.0/8",),
            "10.0.0.1",
            "198.51.100.1, 203.0.113.9",
            "203.0.113.9",
            id="forged-left-hop-ignored",
        ),
        pytest.param(
            ("10.0.0.0/8",),
            "10.0.0.1",
            "198.51.100.1, 203.0.113.9, 10.0.0.2",
            "203.0.113.9",
            id="inner-proxy-skipped",
        ),
        pytest.param(
            ("10.0.0.0/8",),
            "10.0.0.1",
            " , 203.0.113.9 ,",
            "203.0.113.9",
            id="empty-hops",
        ),
        pytest.param(
            ("::1/128",), "::1", "2001:db8::5", "2001:db8::5", id="ipv6-proxy"
        ),
        pytest.param(
            ("10.0.0.0/8",), "<local>", "203.0.113.9", "<local>", id="not-an-ip-peer"
        ),
    ],
)
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


async def test_login_with_redis_unreachable_answers_503_not_500(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # A throttle store outage is no fault of the service's code: like a database
    # outage it is a 503 the client may retry, not a logged 500.
    app = create_app(replace(settings, redis_url="redis://127.0.0.1:1/0"))
    app.extensions[SESSIONMAKER_KEY] = sessionmaker
    async with app.test_app():
        response = await app.test_client().post(
            LOGIN, json={"email": "nobody@example.com", "password": PASSWORD}
        )

    assert response.status_code == 503
    assert await response.get_json() == {"error": "Service unavailable"}
    assert int(response.headers["Retry-After"]) > 0
