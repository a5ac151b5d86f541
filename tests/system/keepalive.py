"""Keep-alive clients against a served instance: early answers to requests with
a body, each followed by an ordinary request on the same connection.

An early answer is one the service sends before it has read the request body:
a missing or malformed token, an unknown path or method, a body too large or not
JSON. The tests in tests/system and bench/keepalive.py drive the same kinds
with this code; every transport error (a reset, a connection closed without a
response) is counted per kind, as a client's connection pool would meet it.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

MiB = 1024 * 1024
# The service's MAX_CONTENT_LENGTH default: one byte more is a 413.
MAX_CONTENT_LENGTH = MiB
LARGEST_BODY = 10 * MiB
# Bodies of the kinds the service answers before reading them: from a few bytes
# to near MAX_CONTENT_LENGTH, so that some arrive in one segment and some in many.
SMALL_BODY_SIZES = (64, 1024, 16 * 1024, 256 * 1024)
FOLLOW_UP = ("GET", "/healthz", 200)
_FILLER = b"x" * LARGEST_BODY


def json_body(size: int) -> bytes:
    """A JSON object of about `size` bytes (a post the caller may not write)."""
    head = b'{"title": "keep-alive", "content": "'
    tail = b'"}'
    return head + _FILLER[: max(0, size - len(head) - len(tail))] + tail


@dataclass(frozen=True)
class Kind:
    """A request the service answers before reading its body."""

    name: str
    status: int
    method: str
    path: str
    headers: Mapping[str, str]
    # The body of the n-th request of this kind.
    body: Callable[[random.Random, int], bytes]

    def request(
        self, rng: random.Random, n: int
    ) -> tuple[str, str, dict[str, str], bytes]:
        return self.method, self.path, dict(self.headers), self.body(rng, n)


def _small_json(_rng: random.Random, n: int) -> bytes:
    return json_body(SMALL_BODY_SIZES[n % len(SMALL_BODY_SIZES)])


def _small_text(rng: random.Random, n: int) -> bytes:
    return _FILLER[: SMALL_BODY_SIZES[n % len(SMALL_BODY_SIZES)]]


def _bad_json(_rng: random.Random, n: int) -> bytes:
    return json_body(SMALL_BODY_SIZES[n % len(SMALL_BODY_SIZES)])[:-1]


def _oversized(rng: random.Random, _n: int) -> bytes:
    return json_body(rng.randint(MAX_CONTENT_LENGTH + 1, LARGEST_BODY))


JSON = {"Content-Type": "application/json"}
KINDS: tuple[Kind, ...] = (
    Kind("401 no token", 401, "POST", "/api/v1/posts", JSON, _small_json),
    Kind(
        "422 malformed token",
        422,
        "POST",
        "/api/v1/posts",
        {**JSON, "Authorization": "Bearer abc"},
        _small_json,
    ),
    Kind("404 unknown path", 404, "PATCH", "/api/v1/users/%00", JSON, _small_json),
    Kind("405 wrong method", 405, "PUT", "/api/v1/users", JSON, _small_json),
    Kind("413 body 1-10 MiB", 413, "POST", "/api/v1/users", JSON, _oversized),
    Kind(
        "415 text/plain",
        415,
        "POST",
        "/api/v1/users",
        {"Content-Type": "text/plain"},
        _small_text,
    ),
    Kind("400 bad JSON", 400, "POST", "/api/v1/users", JSON, _bad_json),
)
KINDS_BY_NAME = {kind.name: kind for kind in KINDS}


@dataclass
class Tally:
    """What one kind of request met: transport errors by exception, on the
    early answer and on the request after it; statuses that were not expected."""

    requests: int = 0
    answer_errors: Counter[str] = field(default_factory=Counter)
    next_errors: Counter[str] = field(default_factory=Counter)
    wrong_status: Counter[int] = field(default_factory=Counter)
    connections: int = 0

    @property
    def errors(self) -> int:
        return sum(self.answer_errors.values()) + sum(self.next_errors.values())

    def merge(self, other: Tally) -> None:
        self.requests += other.requests
        self.answer_errors.update(other.answer_errors)
        self.next_errors.update(other.next_errors)
        self.wrong_status.update(other.wrong_status)
        self.connections += other.connections


def keep_alive_client(base_url: str, **kwargs: Any) -> httpx.AsyncClient:
    """One keep-alive connection, as one slot of a connection pool: reopened
    only when the server closes it (Connection: close) or it breaks."""
    return httpx.AsyncClient(
        base_url=base_url,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        timeout=httpx.Timeout(30.0),
        **kwargs,
    )


class Exchange:
    """Requests on one keep-alive client, each outcome counted in a Tally."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self._tally: Tally | None = None

    async def _trace(self, event: str, _info: Mapping[str, Any]) -> None:
        if event == "connection.connect_tcp.complete" and self._tally is not None:
            self._tally.connections += 1

    async def send(
        self,
        tally: Tally,
        method: str,
        path: str,
        expected: int,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        follow_up: bool = False,
    ) -> bool:
        """One request; False when it met a transport error."""
        self._tally = tally
        tally.requests += 1
        try:
            response = await self.client.request(
                method,
                path,
                headers=headers,
                content=content,
                extensions={"trace": self._trace},
            )
        except httpx.TransportError as error:
            errors = tally.next_errors if follow_up else tally.answer_errors
            errors[f"{type(error).__name__}: {error}"[:120]] += 1
            return False
        if response.status_code != expected:
            tally.wrong_status[response.status_code] += 1
        return True

    async def pair(self, kind: Kind, tally: Tally, rng: random.Random, n: int) -> None:
        """The early answer, then the ordinary request after it."""
        method, path, headers, body = kind.request(rng, n)
        await self.send(tally, method, path, kind.status, headers=headers, content=body)
        follow_method, follow_path, follow_status = FOLLOW_UP
        await self.send(
            tally, follow_method, follow_path, follow_status, follow_up=True
        )


async def pairs_on_one_connection(
    base_url: str, kind: Kind, count: int, seed: int = 0
) -> Tally:
    """`count` pairs of `kind` + the ordinary request, on one keep-alive client."""
    rng = random.Random(seed)
    tally = Tally()
    async with keep_alive_client(base_url) as client:
        exchange = Exchange(client)
        for n in range(count):
            await exchange.pair(kind, tally, rng, n)
    return tally


@dataclass(frozen=True)
class Ordinary:
    """A request a keep-alive client sends between early answers."""

    name: str
    method: str
    path: str
    status: int
    content: bytes | None = None


ORDINARY = (
    Ordinary("GET /healthz", "GET", "/healthz", 200),
    Ordinary("GET /users/me", "GET", "/api/v1/users/me", 200),
    Ordinary("GET /users", "GET", "/api/v1/users?per_page=20", 200),
    Ordinary("GET /posts", "GET", "/api/v1/posts?per_page=20", 200),
    Ordinary(
        "POST /posts",
        "POST",
        "/api/v1/posts",
        201,
        json.dumps({"title": "keep-alive", "content": "an ordinary write"}).encode(),
    ),
)


async def mixed_clients(
    base_url: str,
    token: str,
    *,
    clients: int,
    seconds: float,
    seed: int = 0,
    kinds: tuple[Kind, ...] = KINDS,
) -> dict[str, Tally]:
    """`clients` keep-alive clients for `seconds`, each alternating at random
    between early answers and ordinary requests (half and half)."""
    tallies: dict[str, Tally] = {}
    stop_at = time.monotonic() + seconds
    auth = {"Authorization": f"Bearer {token}", **JSON}

    async def one_client(number: int) -> None:
        rng = random.Random(seed * 100_003 + number)
        async with keep_alive_client(base_url) as client:
            exchange = Exchange(client)
            n = 0
            while time.monotonic() < stop_at:
                n += 1
                if rng.random() < 0.5:
                    kind = rng.choice(kinds)
                    method, path, headers, body = kind.request(rng, n)
                    tally = tallies.setdefault(kind.name, Tally())
                    await exchange.send(
                        tally, method, path, kind.status, headers=headers, content=body
                    )
                else:
                    ordinary = rng.choice(ORDINARY)
                    tally = tallies.setdefault(ordinary.name, Tally())
                    await exchange.send(
                        tally,
                        ordinary.method,
                        ordinary.path,
                        ordinary.status,
                        headers=auth,
                        content=ordinary.content,
                        follow_up=True,
                    )

    await asyncio.gather(*(one_client(number) for number in range(clients)))
    return tallies


async def account_token(base_url: str, email: str, password: str) -> str:
    """Registers `email` (once) and logs in: a token for the ordinary requests."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        registered = await client.post(
            "/api/v1/users",
            json={
                "email": email,
                "password": password,
                "first_name": "Keep",
                "last_name": "Alive",
            },
        )
        if registered.status_code not in (201, 400):
            raise RuntimeError(
                f"registration: {registered.status_code} {registered.text}"
            )
        login = await client.post(
            "/api/v1/auth/login", json={"email": email, "password": password}
        )
        if login.status_code != 200:
            raise RuntimeError(f"login: {login.status_code} {login.text}")
        token: str = login.json()["access_token"]
        return token


def wait_until_serving(base_url: str, timeout: float = 30) -> None:
    """Until GET /healthz answers 200 (through a load balancer: once it has
    found the instance)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{base_url} never answered /healthz")
        time.sleep(0.1)


def table(title: str, tallies: Mapping[str, Tally]) -> str:
    """A Markdown table: per kind, requests, transport errors and wrong statuses."""
    lines = [
        f"| {title} | requests | transport errors (answer / next) | wrong status "
        "| connections opened |",
        "|---|---|---|---|---|",
    ]
    for name, tally in tallies.items():
        answer = sum(tally.answer_errors.values())
        following = sum(tally.next_errors.values())
        wrong = ", ".join(f"{s}x{c}" for s, c in sorted(tally.wrong_status.items()))
        lines.append(
            f"| {name} | {tally.requests} "
            f"| {answer + following} ({answer} / {following}) "
            f"| {wrong or 0} | {tally.connections} |"
        )
    return "\n".join(lines)


def error_samples(tallies: Mapping[str, Tally]) -> list[str]:
    samples = []
    for name, tally in tallies.items():
        for where, errors in (
            ("answer", tally.answer_errors),
            ("next", tally.next_errors),
        ):
            for error, count in errors.most_common(3):
                samples.append(f"{name} [{where}] {count}x {error}")
    return samples
