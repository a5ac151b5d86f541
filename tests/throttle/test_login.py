"""Login throttling: the stores, the budgets over HTTP, and the client's IP.

LoginThrottle runs on both stores: in process memory, and in the Redis at
REDIS_URL that replicas share (tests/backends.py picks the suite's). Every key a
test touches is named after a unique email or IP and deleted afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import ConfigError, Settings
from service.errors import TooManyRequestsError
from service.models import User
from service.throttle.keys import account_key, fold_email, ip_key
from service.throttle.login import Guess, LoginThrottle
from service.throttle.redis_store import (
    MIN_REDIS_VERSION,
    RedisStore,
    require_redis_version,
)
from service.throttle.stores import MemoryStore, Store, Verdict
from tests import backends
from tests.factories import PASSWORD, make_user
from tests.support import (
    INVALID_CREDENTIALS,
    LOGIN,
    TOO_MANY,
    UNAVAILABLE,
    AppMaker,
    AppStarter,
    Names,
)

REDIS_URL = backends.redis_url()
SMALL_LIMITS: dict[str, Any] = {"login_max_failures": 3, "login_max_failures_per_ip": 5}
ACCOUNT_LIMIT, IP_LIMIT = 3, 5


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    store: Store = MemoryStore() if request.param == "memory" else RedisStore(REDIS_URL)
    await store.start()
    yield store
    await store.close()


def throttle_with(
    store: Store, settings: Settings, *, window: int = 900, wait: float = 5.0
) -> LoginThrottle:
    return LoginThrottle(
        store,
        replace(settings, **SMALL_LIMITS, login_window_seconds=window),
        wait_seconds=wait,
    )


@pytest.fixture
def throttle(store: Store, settings: Settings) -> LoginThrottle:
    return throttle_with(store, settings)


async def fail(throttle: LoginThrottle, email: str, ip: str, times: int) -> None:
    for _ in range(times):
        async with throttle.guess(email, ip) as guess:
            guess.failed()


async def succeed(throttle: LoginThrottle, email: str, ip: str) -> None:
    async with throttle.guess(email, ip) as guess:
        guess.succeeded()


async def refused(throttle: LoginThrottle, email: str, ip: str) -> TooManyRequestsError:
    with pytest.raises(TooManyRequestsError) as caught:
        async with throttle.guess(email, ip):
            pass
    return caught.value


# --- LoginThrottle on each store ----------------------------------------------------


async def test_failures_below_the_account_limit_leave_a_guess(
    store: Store, throttle: LoginThrottle, names: Names
) -> None:
    email, ip = names.email(), names.ip()
    await fail(throttle, email, ip, ACCOUNT_LIMIT - 1)

    async with throttle.guess(email, ip) as guess:
        assert [key for key, _ in guess.held] == [ip_key(ip), account_key(email)]


async def test_failures_at_the_account_limit_raise_429_with_retry_after(
    store: Store, throttle: LoginThrottle, names: Names
) -> None:
    email, ip = names.email(), names.ip()
    await fail(throttle, email, ip, ACCOUNT_LIMIT)

    error = await refused(throttle, email, ip)

    assert error.status_code == 429
    assert 0 < int(error.headers["Retry-After"]) <= 900


async def test_attempts_that_did_not_fail_cost_nothing(
    store: Store, throttle: LoginThrottle, names: Names
) -> None:
    # Attempts are not failures: settled without a verdict (an error, a cancelled
    # request) or with a right password, they leave the budget whole.
    email, ip = names.email(), names.ip()
    for _ in range(ACCOUNT_LIMIT * 3):
        async with throttle.guess(email, ip):
            pass
        await succeed(throttle, email, ip)

    await fail(throttle, email, ip, ACCOUNT_LIMIT - 1)
    assert (await store.hold(account_key(email), ACCOUNT_LIMIT, "probe"))[0] is (
        Verdict.HELD
    )


class InFlight:
    """Guesses that hold the account's whole budget until released."""

    def __init__(self, throttle: LoginThrottle, names: Names, email: str) -> None:
        self.throttle, self.names, self.email = throttle, names, email
        self.opened: list[Guess] = []
        self.all_open, self.release = asyncio.Event(), asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, *, right: bool) -> None:
        self.tasks = [
            asyncio.create_task(self._guess(right)) for _ in range(ACCOUNT_LIMIT)
        ]
        await self.all_open.wait()

    async def _guess(self, right: bool) -> None:
        async with self.throttle.guess(self.email, self.names.ip()) as guess:
            self.opened.append(guess)
            if len(self.opened) == ACCOUNT_LIMIT:
                self.all_open.set()
            await self.release.wait()
            if right:
                guess.succeeded()
            else:
                guess.failed()

    async def settle(self) -> None:
        self.release.set()
        await asyncio.gather(*self.tasks)


@pytest.mark.parametrize(
    "right",
    [
        pytest.param(True, id="turning-out-right-lets-the-waiting-proceed"),
        pytest.param(False, id="spending-it-refuses-the-waiting"),
    ],
)
async def test_guesses_in_flight_hold_the_budget_and_later_ones_wait(
    store: Store, settings: Settings, names: Names, right: bool
) -> None:
    throttle = throttle_with(store, settings, wait=30)
    in_flight = InFlight(throttle, names, names.email())
    await in_flight.start(right=right)
    # The budget is fully held: a later attempt waits instead of being refused,
    later = succeed if right else refused
    waiting = asyncio.create_task(later(throttle, in_flight.email, names.ip()))
    await asyncio.sleep(0.1)
    assert not waiting.done()

    # and proceeds once the guesses in flight turn out right, or is refused once
    # they spent the budget.
    await in_flight.settle()
    outcome = await asyncio.wait_for(waiting, 30)
    if not right:
        assert isinstance(outcome, TooManyRequestsError)
        assert outcome.status_code == 429


async def test_a_fully_held_budget_refuses_after_the_bounded_wait(
    store: Store, settings: Settings, names: Names
) -> None:
    throttle = throttle_with(store, settings, wait=0.2)
    email = names.email()
    for number in range(ACCOUNT_LIMIT):
        verdict, _ = await store.hold(account_key(email), ACCOUNT_LIMIT, f"h{number}")
        assert verdict is Verdict.HELD

    error = await refused(throttle, email, names.ip())

    assert int(error.headers["Retry-After"]) >= 1


async def test_account_limit_applies_from_any_ip(
    store: Store, throttle: LoginThrottle, names: Names
) -> None:
    email = names.email()
    for _ in range(ACCOUNT_LIMIT):
        await fail(throttle, email, names.ip(), 1)

    await refused(throttle, email, names.ip())


async def test_account_limit_leaves_other_accounts(
    store: Store, throttle: LoginThrottle, names: Names
) -> None:
    ip = names.ip()
    await fail(throttle, names.email(), ip, ACCOUNT_LIMIT)
    other = names.email()

    async with throttle.guess(other, ip) as guess:
        assert account_key(other) in [key for key, _ in guess.held]


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(lambda e: f"  {e.upper()} ", id="upper-and-spaces"),
        # PostgreSQL's lower() folds U+0130 to "i": the lookup finds the account.
        pytest.param(lambda e: "\u0130" + e[1:], id="capital-dotted-i"),
        pytest.param(lambda e: e.replace("@", "\u03a3@"), id="final-sigma"),
    ],
)
async def test_account_budget_is_keyed_as_postgresql_folds_the_address(
    throttle: LoginThrottle,
    names: Names,
    variant: Callable[[str], str],
) -> None:
    base = names.email()
    email = names.track(fold_email(variant(base)))
    await fail(throttle, variant(base), names.ip(), ACCOUNT_LIMIT)

    await refused(throttle, email, names.ip())


async def test_success_resets_the_account_budget(
    store: Store, throttle: LoginThrottle, names: Names
) -> None:
    email, ip = names.email(), names.ip()
    await fail(throttle, email, ip, ACCOUNT_LIMIT - 1)

    await succeed(throttle, email, ip)

    await fail(throttle, email, ip, ACCOUNT_LIMIT - 1)
    verdict, _ = await store.hold(account_key(email), ACCOUNT_LIMIT, "probe")
    assert verdict is Verdict.HELD


async def test_success_keeps_the_ip_budget(
    store: Store, throttle: LoginThrottle, names: Names
) -> None:
    ip = names.ip()
    for _ in range(IP_LIMIT - 1):
        await fail(throttle, names.email(), ip, 1)

    await succeed(throttle, names.email(), ip)

    await fail(throttle, names.email(), ip, 1)
    await refused(throttle, names.email(), ip)


async def test_ip_limit_refuses_before_the_account_is_held_or_charged(
    store: Store, throttle: LoginThrottle, names: Names
) -> None:
    ip, victim = names.ip(), names.email()
    for _ in range(IP_LIMIT):
        await fail(throttle, names.email(), ip, 1)

    for _ in range(ACCOUNT_LIMIT * 5):
        error = await refused(throttle, victim, ip)
        assert 0 < int(error.headers["Retry-After"]) <= 900

    verdict, _ = await store.hold(account_key(victim), 1, "probe")
    assert verdict is Verdict.HELD


async def test_ip_limit_leaves_other_ips(
    store: Store, throttle: LoginThrottle, names: Names
) -> None:
    ip = names.ip()
    for _ in range(IP_LIMIT):
        await fail(throttle, names.email(), ip, 1)
    await refused(throttle, names.email(), ip)

    other = names.ip()
    async with throttle.guess(names.email(), other) as guess:
        assert ip_key(other) in [key for key, _ in guess.held]


async def test_budget_returns_when_the_window_ends(
    store: Store, settings: Settings, names: Names
) -> None:
    throttle = throttle_with(store, settings, window=1)
    email, ip = names.email(), names.ip()
    await fail(throttle, email, ip, ACCOUNT_LIMIT)
    await refused(throttle, email, ip)

    await asyncio.sleep(1.1)

    async with throttle.guess(email, ip) as guess:
        assert len(guess.held) == 2


async def test_route_limit_counts_requests_in_its_window(
    store: Store, names: Names
) -> None:
    key = names.track(f"limit-{uuid.uuid4().hex}")
    answers = [await store.hit(key, 2, 600) for _ in range(4)]

    assert [allowed for allowed, _ in answers] == [True, True, False, False]
    assert all(0 < seconds <= 600 for _, seconds in answers)


async def test_redis_stores_are_shared_between_instances(
    settings: Settings, names: Names
) -> None:
    first, second = RedisStore(REDIS_URL), RedisStore(REDIS_URL)
    try:
        email, ip = names.email(), names.ip()
        await fail(throttle_with(first, settings), email, ip, ACCOUNT_LIMIT)

        await refused(throttle_with(second, settings), email, ip)
    finally:
        await first.close()
        await second.close()


async def test_redis_keys_always_carry_a_ttl_and_hide_the_email(
    settings: Settings, names: Names
) -> None:
    prefix = f"ttl-{uuid.uuid4().hex[:8]}:"
    store = RedisStore(REDIS_URL, prefix)
    redis: Redis = Redis.from_url(REDIS_URL)
    try:
        throttle = throttle_with(store, settings, window=600)
        email, ip = names.email(), names.ip()
        async with throttle.guess(email, ip) as guess:
            # Held: the holds carry the TTL of the longest hold.
            keys = await redis.keys(f"{prefix}*")
            assert sorted(
                k.decode() if isinstance(k, bytes) else k for k in keys
            ) == sorted(
                f"{prefix}{key}:holds" for key in (ip_key(ip), account_key(email))
            )
            ttls = [await redis.ttl(key) for key in keys]
            assert all(0 < ttl <= 30 for ttl in ttls), ttls
            guess.failed()
        await store.hit("limit:probe", 5, 600)

        keys = await redis.keys(f"{prefix}*")
        assert keys
        for key in keys:
            assert 0 < await redis.ttl(key) <= 600, key
        assert await redis.keys(f"*{email}*") == []
    finally:
        keys = await redis.keys(f"{prefix}*")
        if keys:
            await redis.delete(*keys)
        await store.close()
        await redis.aclose()


async def test_memory_stores_are_per_instance(settings: Settings, names: Names) -> None:
    # Without Redis each process counts alone: the documented single-node mode.
    email, ip = names.email(), names.ip()
    first = throttle_with(MemoryStore(), settings)
    await fail(first, email, ip, ACCOUNT_LIMIT)
    await refused(first, email, ip)

    fresh = throttle_with(MemoryStore(), settings)
    async with fresh.guess(email, ip) as guess:
        assert len(guess.held) == 2


async def test_memory_store_is_a_capped_lru() -> None:
    store = MemoryStore(max_keys=100)
    for number in range(1000):
        await store.fail(f"login:account:{number}", "h", 900)
        assert len(store) <= 100
    # The most recent survive: the budget of an account under attack now is kept.
    verdict, _ = await store.hold("login:account:999", 1, "probe")
    assert verdict is Verdict.SPENT
    verdict, _ = await store.hold("login:account:0", 1, "probe")
    assert verdict is Verdict.HELD


async def test_memory_store_account_counter_outlives_a_flood_of_fresh_keys() -> None:
    # A victim's failures, then what an attacker can make without limit: reset
    # mail and registrations for fresh emails, fresh addresses, and even fresh
    # accounts' single failures. None of it may push the victim's counter out.
    store = MemoryStore(max_keys=100)
    for _ in range(3):
        await store.fail(account_key("victim@example.com"), "h", 900)
    for number in range(5_000):
        await store.hit(f"limit:reset-mail:{number}", 3, 3600)
        await store.hit(f"limit:registration:{number}", 10, 3600)
        await store.fail(ip_key(f"10.{number // 256 % 256}.{number % 256}.1"), "h", 900)
        await store.fail(account_key(f"fresh{number}@example.com"), "h", 900)

    verdict, _ = await store.hold(account_key("victim@example.com"), 3, "probe")
    assert verdict is Verdict.SPENT
    assert len(store) <= 3 * 100


async def test_memory_store_keeps_the_budgets_guesses_hold_past_the_cap() -> None:
    store = MemoryStore(max_keys=10)
    assert (await store.hold("held", 1, "guess"))[0] is Verdict.HELD
    for number in range(100):
        await store.fail(f"other:{number}", "h", 900)

    assert (await store.hold("held", 1, "another"))[0] is Verdict.BUSY


async def test_memory_store_forgets_what_settled_without_failing() -> None:
    store = MemoryStore()
    for number in range(1000):
        await store.hold(f"login:account:{number}", 10, "h")
        await store.release(f"login:account:{number}", "h")

    assert len(store) == 0


@pytest.mark.parametrize("version", ["6.2.14", "5.0.0", "garbage"])
def test_redis_older_than_the_minimum_is_refused(version: str) -> None:
    with pytest.raises(ConfigError, match="older than"):
        require_redis_version(version)


@pytest.mark.parametrize("version", ["7.0.0", "7.0.15", "7.2.4", "8.0.2"])
def test_redis_at_or_past_the_minimum_is_accepted(version: str) -> None:
    require_redis_version(version)
    assert MIN_REDIS_VERSION == (7, 0)


async def test_redis_store_checks_the_server_version_at_start() -> None:
    store = RedisStore(REDIS_URL)
    try:
        await store.start()
        assert store.version_checked
    finally:
        await store.close()


# --- over HTTP ------------------------------------------------------------------


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


async def spend_account_budget(client: Client, email: str, **where: Any) -> None:
    for _ in range(ACCOUNT_LIMIT):
        await attempt(client, email, "wrong-password", **where)


async def spend_ip_budget(
    client: Client, peer: str, forwarded_for: Callable[[int], str] | None = None
) -> None:
    """IP_LIMIT failed logins of unknown accounts from `peer` (forwarded for the
    client `forwarded_for(n)` names, when given)."""
    for number in range(IP_LIMIT):
        await attempt(
            client,
            f"nobody{number}@example.com",
            "x",
            peer=peer,
            forwarded_for=forwarded_for(number) if forwarded_for else None,
        )


@pytest.fixture
async def small_client(start_app: AppStarter) -> Client:
    """An app whose budgets are ACCOUNT_LIMIT and IP_LIMIT."""
    return (await start_app(**SMALL_LIMITS)).test_client()


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
    small_client: Client, user: User
) -> None:
    await spend_account_budget(small_client, user.email)

    response = await attempt(small_client, user.email, PASSWORD)

    assert response.status_code == 429
    assert response.mimetype == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in response.headers["Cache-Control"]


async def test_login_throttled_account_leaves_other_accounts(
    small_client: Client, session: AsyncSession, user: User
) -> None:
    other = await make_user(session)
    await spend_account_budget(small_client, user.email)

    blocked = await attempt(small_client, user.email, PASSWORD)
    response = await attempt(small_client, other.email, PASSWORD)

    assert blocked.status_code == 429
    assert response.status_code == 200


async def test_login_success_resets_the_account_failures(
    small_client: Client, user: User
) -> None:
    for _ in range(ACCOUNT_LIMIT - 1):
        await attempt(small_client, user.email, "wrong-password", peer="192.0.2.20")
    await attempt(small_client, user.email, PASSWORD, peer="192.0.2.20")
    for _ in range(ACCOUNT_LIMIT - 1):
        await attempt(small_client, user.email, "wrong-password", peer="192.0.2.21")

    response = await attempt(small_client, user.email, PASSWORD, peer="192.0.2.22")

    assert response.status_code == 200


async def test_login_ip_budget_refuses_every_account_from_that_ip(
    small_client: Client, user: User
) -> None:
    await spend_ip_budget(small_client, "192.0.2.30")

    blocked = await attempt(small_client, user.email, PASSWORD, peer="192.0.2.30")
    elsewhere = await attempt(small_client, user.email, PASSWORD, peer="192.0.2.31")

    assert blocked.status_code == 429
    assert await blocked.get_json() == TOO_MANY
    assert int(blocked.headers["Retry-After"]) > 0
    assert elsewhere.status_code == 200


async def test_login_forwarded_for_from_untrusted_peer_cannot_dodge_ip_budget(
    small_client: Client, user: User
) -> None:
    await spend_ip_budget(small_client, "192.0.2.40", lambda n: f"203.0.113.{n}")

    response = await attempt(
        small_client,
        user.email,
        PASSWORD,
        peer="192.0.2.40",
        forwarded_for="203.0.113.99",
    )

    assert response.status_code == 429


async def test_login_behind_trusted_proxy_budgets_the_forwarded_client(
    start_app: AppStarter, user: User
) -> None:
    app = await start_app(**SMALL_LIMITS, trusted_proxies=("10.0.0.0/8",))
    client = app.test_client()
    await spend_ip_budget(client, "10.0.0.1", lambda _: "203.0.113.9")

    blocked, neighbour = [
        await attempt(
            client, user.email, PASSWORD, peer="10.0.0.1", forwarded_for=forwarded
        )
        for forwarded in ("203.0.113.9", "203.0.113.10")
    ]

    assert blocked.status_code == 429
    assert neighbour.status_code == 200


async def test_login_with_redis_unreachable_answers_503_not_500(
    make_app: AppMaker,
) -> None:
    # A throttle store outage is no fault of the service's code: like a database
    # outage it is a 503 the client may retry, not a logged 500.
    async with make_app(redis_url="redis://127.0.0.1:1/0") as app:
        response = await app.test_client().post(
            LOGIN, json={"email": "nobody@example.com", "password": PASSWORD}
        )

    assert response.status_code == 503
    assert await response.get_json() == UNAVAILABLE
    assert int(response.headers["Retry-After"]) > 0
