"""The compose stack without Docker: the image's venv, two replicas, the real HAProxy.

The module builds the image the Dockerfile's way into a fresh virtualenv, runs
compose's `migrate` command, starts two replicas with the image's ENTRYPOINT,
CMD, ENV and USER, each on its own 127.0.0.x address, and puts
deploy/haproxy.cfg in front of them, finding them through a DNS server on the
loopback (see tests/system/stack.py for what differs from Docker, and why).
Every request goes through the load balancer.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import time
import tomllib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from dnslib import DNSRecord

from tests import backends
from tests.ports import free_port_on_every_loopback
from tests.support import (
    ADMIN_DSN,
    LOGIN,
    ME,
    RESET_MAIL,
    UNAVAILABLE,
    USERS,
    bearer,
    drop_database,
    recreate_database,
    unique_email,
)
from tests.system.harness import run
from tests.system.stack import (
    BASE_IMAGE_ENV,
    HAPROXY,
    HEALTHZ_PROBE,
    ROOT,
    Deployment,
    HAProxy,
    HTTPConnection,
    Load,
    Reply,
    StackError,
    assert_retiring_drops_no_request,
    assert_stopping_drops_no_request,
    fetch,
    haproxy_version,
    hypercorn_settings,
    image_user,
    load_balancer,
    log_time,
    make_workdir,
    request_id,
    served_by,
    wait_exit,
    wait_until_every_replica_serves,
)

pytestmark = pytest.mark.skipif(
    HAPROXY is None, reason="no haproxy (.ci/run installs Debian's haproxy)"
)

DATABASE = f"deploytest_{os.getpid()}"
REDIS_URL = backends.redis_url()
# The login throttle counts an attempt before checking the password: more
# concurrent logins of one account than LOGIN_MAX_FAILURES (10) get 429.
IN_FLIGHT_LOGINS = 10


def timestamps_removed(user: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in user.items() if k not in ("created_at", "updated_at")}


@pytest.fixture(scope="module")
async def deployment() -> AsyncIterator[Deployment]:
    base = ADMIN_DSN.rsplit("/", 1)[0]
    await recreate_database(DATABASE)
    workdir = make_workdir("deploytest-")
    stack: Deployment | None = None
    try:
        try:
            stack = Deployment(workdir, f"{base}/{DATABASE}", REDIS_URL)
        except StackError as error:
            pytest.skip(str(error))
        await asyncio.to_thread(stack.build)
        migrated = await asyncio.to_thread(stack.migrate)
        if migrated.returncode != 0:
            raise StackError(f"migrate failed:\n{migrated.stdout}{migrated.stderr}")
        await asyncio.to_thread(stack.ensure_replicas)
        await asyncio.to_thread(stack.start_lb)
        yield stack
    finally:
        if stack is not None:
            await asyncio.to_thread(stack.stop)
        shutil.rmtree(workdir, ignore_errors=True)
        await drop_database(DATABASE)


@pytest.fixture
async def stack(deployment: Deployment) -> Deployment:
    """The deployment with its replicas up and in the load balancer's rotation."""
    await asyncio.to_thread(deployment.ensure_replicas)
    await wait_until_every_replica_serves(deployment)
    return deployment


async def login(stack: Deployment, email: str, password: str) -> dict[str, Any]:
    reply = await fetch(
        stack.lb_port,
        "POST",
        LOGIN,
        json_body={"email": email, "password": password},
    )
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.json()
    return body


async def admin_token(stack: Deployment) -> str:
    tokens = await login(
        stack, stack.secrets["ADMIN_EMAIL"], stack.secrets["ADMIN_PASSWORD"]
    )
    token: str = tokens["access_token"]
    return token


# ------------------------------------------------------------ the image


async def test_runtime_imports_the_service_from_the_installed_wheel(
    deployment: Deployment,
) -> None:
    script = (
        "import importlib.metadata, service; "
        "print(service.__file__); print(importlib.metadata.version('service'))"
    )

    result = await asyncio.to_thread(
        deployment.run_as_app, [str(deployment.venv / "bin" / "python"), "-c", script]
    )

    module, version = result.stdout.split()
    assert not (deployment.app / "service").exists()
    assert module.startswith(f"{deployment.venv}/lib/")
    assert "/site-packages/service/" in module
    assert (
        version
        == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    )


async def test_runtime_venv_has_no_development_tools(deployment: Deployment) -> None:
    script = (
        "import importlib.util; "
        "print([name for name in ('pytest', 'mypy', 'ruff', 'coverage', "
        "'schemathesis', 'flask_jwt_extended') if importlib.util.find_spec(name)])"
    )

    result = await asyncio.to_thread(
        deployment.run_as_app, [str(deployment.venv / "bin" / "python"), "-c", script]
    )

    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr


def test_replicas_run_as_the_images_user(deployment: Deployment) -> None:
    # As root here, the replicas drop to the Dockerfile's USER, as in the image.
    expected = image_user()[0] if os.geteuid() == 0 else os.geteuid()
    uids = [
        line.split()[1:3]  # real and effective
        for replica in deployment.replicas
        if replica.process is not None
        for line in (Path("/proc") / str(replica.process.pid) / "status")
        .read_text()
        .splitlines()
        if line.startswith("Uid:")
    ]

    assert uids == [[str(expected)] * 2] * len(deployment.replicas)
    assert expected != 0


async def test_migrate_service_runs_again_without_harm(deployment: Deployment) -> None:
    # compose runs the one-shot migrate on every `up`, over a migrated database.
    result = await asyncio.to_thread(deployment.migrate)

    assert result.returncode == 0, result.stderr
    # Before it, migrate's log lines (JSON, the service's logging).
    # create-admin --bootstrap: an admin existed, so it does nothing.
    assert result.stdout.strip().splitlines()[-1] == (
        "An admin exists or existed: nothing to bootstrap"
    )


# ------------------------------------------------ through the load balancer


async def test_login_write_and_read_through_the_load_balancer(
    stack: Deployment,
) -> None:
    port = stack.lb_port
    email = unique_email("deploy")
    admin = await admin_token(stack)

    registered = await fetch(
        port,
        "POST",
        USERS,
        json_body={
            "email": email,
            "password": "deploy-password-1",
            "first_name": "Before",
            "last_name": "Deploy",
        },
    )
    assert registered.status == 201, registered.body
    user_id = registered.json()["id"]
    token = (await login(stack, email, "deploy-password-1"))["access_token"]
    patched = await fetch(
        port,
        "PATCH",
        f"{USERS}/{user_id}",
        json_body={"first_name": "After"},
        headers=bearer(token),
    )
    me = await fetch(port, "GET", ME, headers=bearer(token))
    listed = await fetch(port, "GET", f"{USERS}?per_page=100", headers=bearer(admin))

    expected = {
        "id": user_id,
        "email": email,
        "first_name": "After",
        "last_name": "Deploy",
        "full_name": "After Deploy",
        "is_active": True,
        "is_admin": False,
    }
    assert (patched.status, timestamps_removed(patched.json())) == (200, expected)
    assert (me.status, timestamps_removed(me.json())) == (200, expected)
    assert listed.status == 200
    assert [
        timestamps_removed(user)
        for user in listed.json()["users"]
        if user["id"] == user_id
    ] == [expected]


async def test_load_balancer_spreads_requests_over_both_replicas(
    stack: Deployment,
) -> None:
    rids = [request_id() for _ in range(8)]

    for rid in rids:
        await fetch(stack.lb_port, "GET", "/healthz", headers={"X-Request-ID": rid})

    replicas = [[index for index, _ in served_by(stack, rid)] for rid in rids]
    assert all(len(served) == 1 for served in replicas), replicas
    assert {served[0] for served in replicas} == {0, 1}


async def test_client_request_id_is_echoed_and_logged_by_the_replica(
    stack: Deployment,
) -> None:
    token = await admin_token(stack)
    rid = request_id()

    reply = await fetch(
        stack.lb_port, "GET", ME, headers={**bearer(token), "X-Request-ID": rid}
    )

    assert reply.status == 200
    assert reply.headers["x-request-id"] == rid
    ((_, entry),) = served_by(stack, rid)
    assert isinstance(entry["duration_ms"], float | int)
    assert {
        key: entry[key] for key in ("method", "path", "status", "user_id", "request_id")
    } == {
        "method": "GET",
        "path": ME,
        "status": 200,
        "user_id": reply.json()["id"],
        "request_id": rid,
    }


async def test_request_without_an_id_gets_one_from_the_load_balancer(
    stack: Deployment,
) -> None:
    reply = await fetch(stack.lb_port, "GET", "/healthz")

    rid = reply.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert len(served_by(stack, rid)) == 1


async def test_database_refusing_connections_answers_503_json_through_the_lb(
    stack: Deployment, measurements: list[str]
) -> None:
    # What PostgreSQL answers while it starts, stops or is full: it refuses
    # new connections with an error. Replicas must say 503, not 500, and
    # the load balancer must answer that JSON too, not an HTML page of its own.
    token = await admin_token(stack)
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'ALTER DATABASE "{DATABASE}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            DATABASE,
        )
        replies, durations = [], []
        for _ in range(6):
            started = time.monotonic()
            replies.append(
                await fetch(stack.lb_port, "GET", USERS, headers=bearer(token))
            )
            durations.append(time.monotonic() - started)
    finally:
        await admin.execute(f'ALTER DATABASE "{DATABASE}" ALLOW_CONNECTIONS true')
        await admin.close()
    back = time.monotonic()
    while (
        await fetch(stack.lb_port, "GET", USERS, headers=bearer(token))
    ).status != 200:
        assert time.monotonic() - back < 15, "no 200 within 15 s of the database"
        await asyncio.sleep(0.1)
    recovered = time.monotonic() - back
    measurements.append(
        f"database refusing connections: statuses {[r.status for r in replies]}, "
        f"first 200 {recovered:.2f} s after it accepted connections again"
    )

    assert [
        (reply.status, reply.headers.get("content-type"), reply.json_or_text())
        for reply in replies
    ] == [(503, "application/json", UNAVAILABLE)] * 6
    assert max(durations) < 5


# ---------------------------------------------------------- graceful deploys


async def test_replica_sigterm_under_read_load_drops_no_request(
    stack: Deployment, measurements: list[str]
) -> None:
    load = Load(stack.lb_port, "GET", ME, bearer(await admin_token(stack)))

    await assert_stopping_drops_no_request(stack, load, stack.replicas[0], measurements)


async def test_replica_sigterm_under_write_load_drops_no_request(
    stack: Deployment, measurements: list[str]
) -> None:
    # The load balancer sends a write again only when the replica answered
    # nothing: a write lost across a stop would be a client's 502.
    token = await admin_token(stack)
    me = await fetch(stack.lb_port, "GET", ME, headers=bearer(token))
    load = Load(
        stack.lb_port,
        "PATCH",
        f"{USERS}/{me.json()['id']}",
        bearer(token),
        json_body={"last_name": "Deployed"},
    )

    await assert_stopping_drops_no_request(stack, load, stack.replicas[1], measurements)


async def test_replica_sigterm_finishes_the_logins_in_flight(
    stack: Deployment, measurements: list[str]
) -> None:
    graceful_timeout = hypercorn_settings()["graceful_timeout"]
    credentials = {
        "email": stack.secrets["ADMIN_EMAIL"],
        "password": stack.secrets["ADMIN_PASSWORD"],
    }
    victim = stack.replicas[0]
    process = victim.process
    assert process is not None
    logins = [
        asyncio.create_task(fetch(stack.lb_port, "POST", LOGIN, json_body=credentials))
        for _ in range(IN_FLIGHT_LOGINS)
    ]
    # Each login hashes for ~100 ms on a small pool: once the first is
    # answered, the rest are queued or hashing inside the replicas.
    await asyncio.wait(logins, return_when=asyncio.FIRST_COMPLETED)
    signalled_wall, signalled = time.time(), time.monotonic()
    stack.terminate(victim)
    exit_code, exit_seconds = await wait_exit(process, signalled, graceful_timeout + 5)
    replies = await asyncio.gather(*logins)
    finished_after_signal = [
        entry
        for entry in victim.access_log()
        if entry["path"] == LOGIN and log_time(entry) >= signalled_wall
    ]
    measurements.append(
        f"SIGTERM with {IN_FLIGHT_LOGINS} logins in flight: statuses "
        f"{sorted(r.status for r in replies)}, {len(finished_after_signal)} "
        f"finished by the stopping replica after the signal; it exited "
        f"{exit_code} after {exit_seconds:.2f} s"
    )

    assert [reply.status for reply in replies] == [200] * IN_FLIGHT_LOGINS
    assert finished_after_signal, "no login was in flight at the SIGTERM"
    assert [entry["status"] for entry in finished_after_signal] == [200] * len(
        finished_after_signal
    )
    assert exit_code == 0
    assert exit_seconds < graceful_timeout


# ------------------------------------------------------ the fleet changes


async def requests_until(
    stack: Deployment, done: Callable[[set[int]], bool], within: float
) -> tuple[float, set[int]]:
    """GET /healthz through the LB until `done(replicas seen)`; seconds taken."""
    started = time.monotonic()
    seen: set[int] = set()
    while not done(seen):
        assert time.monotonic() - started < within, f"only replicas {seen} served"
        rid = request_id()
        reply = await fetch(
            stack.lb_port, "GET", "/healthz", headers={"X-Request-ID": rid}
        )
        assert reply.status == 200, reply.body
        seen |= {index for index, _ in served_by(stack, rid)}
        await asyncio.sleep(0.05)
    return time.monotonic() - started, seen


async def test_a_third_replica_gets_traffic_within_seconds_of_its_dns_record(
    stack: Deployment, measurements: list[str]
) -> None:
    third = await asyncio.to_thread(stack.new_replica)
    try:
        stack.publish()
        seconds, _seen = await requests_until(
            stack, lambda seen: len(stack.replicas) - 1 in seen, within=15
        )
        measurements.append(f"2 -> 3 replicas: the third served after {seconds:.2f} s")
        assert seconds < 10
    finally:
        await asyncio.to_thread(stack.retire, third)


async def test_a_replica_back_at_a_new_address_is_found(
    stack: Deployment, measurements: list[str]
) -> None:
    # `up --build` recreates a replica; Docker usually gives it a new address.
    old = stack.replicas[0]
    await asyncio.to_thread(stack.retire, old)
    new = await asyncio.to_thread(stack.new_replica)
    stack.publish()

    seconds, _ = await requests_until(
        stack, lambda seen: stack.replicas.index(new) in seen, within=15
    )
    measurements.append(
        f"replica recreated at {new.host} (was {old.host}): served after "
        f"{seconds:.2f} s"
    )

    assert seconds < 10
    assert old.host != new.host


async def test_removing_a_replica_under_load_fails_no_request(
    stack: Deployment, measurements: list[str]
) -> None:
    third = await asyncio.to_thread(stack.new_replica)
    stack.publish()
    await requests_until(stack, lambda seen: len(stack.replicas) - 1 in seen, 15)
    load = Load(stack.lb_port, "GET", ME, bearer(await admin_token(stack)))

    await assert_retiring_drops_no_request(
        stack, load, third, measurements, "3 -> 2 replicas"
    )


# ------------------------------------------------------------- keep-alive


def lb_keep_alive() -> float:
    text = (ROOT / "deploy" / "haproxy.cfg").read_text()
    match = re.search(r"^\s*timeout http-keep-alive (\d+)s$", text, re.M)
    assert match is not None
    return float(match[1])


# The client rung of the ladder (docs/operations.md, "Keep-alive").
CLIENT_KEEP_ALIVE = 8.0


async def test_an_idle_pooled_connection_is_reused_across_the_ladder(
    stack: Deployment,
) -> None:
    # A client that keeps a connection idle as long as docs/operations.md allows
    # reuses it without an error and without the LB retrying anything; one
    # idle past the LB's rung is closed by the LB, cleanly, while idle, so
    # a replica (30 s) never closes a connection the LB still uses.
    connection = HTTPConnection(stack.lb_port)
    rids = [request_id(), request_id()]
    try:
        first = await connection.request(
            "GET", "/healthz", headers={"X-Request-ID": rids[0]}
        )
        await asyncio.sleep(CLIENT_KEEP_ALIVE)
        second = await connection.request(
            "GET", "/healthz", headers={"X-Request-ID": rids[1]}
        )
        reader = connection.reader
        async with asyncio.timeout(lb_keep_alive() + 5):
            closed = await reader.read()
    finally:
        await connection.close()

    assert (first.status, second.status) == (200, 200)
    assert closed == b"", "the LB closes an idle connection without a byte"
    assert stack.lb is not None
    entries = [entry for entry in stack.lb.log() if entry["request_id"] in rids]
    assert [(e["status"], e["retries"], e["termination"]) for e in entries] == [
        ("200", "0", "--")
    ] * 2


# ------------------------------------------- the load balancer's own answers


class StubUpstreams:
    """Replicas that answer every request with the service's 503 JSON, or
    (`junk=True`) ready on /readyz and then no HTTP at all."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []
        self.port = free_port_on_every_loopback()
        self.junk = False

    async def start(self, hosts: list[str]) -> None:
        for host in hosts:
            self.servers.append(
                await asyncio.start_server(self._handle, host, self.port)
            )

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        body = b'{"error":"Service unavailable"}\n'
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                if self.junk and b"/readyz" in head:
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                elif self.junk:
                    writer.write(b"not HTTP\r\n\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(
                        b"HTTP/1.1 503 \r\ncontent-type: application/json\r\n"
                        b"retry-after: 5\r\ncontent-length: %d\r\n\r\n%s"
                        % (len(body), body)
                    )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        for server in self.servers:
            server.close()
            await server.wait_closed()


@pytest.fixture
async def stubs() -> AsyncIterator[StubUpstreams]:
    upstreams = StubUpstreams()
    yield upstreams
    await upstreams.close()


@pytest.fixture
def start_lb() -> Iterator[Callable[[list[str], int], HAProxy]]:
    """Starts deploy/haproxy.cfg, DNS answering `api` with the given hosts."""
    with ExitStack() as started:

        def start(hosts: list[str], port: int) -> HAProxy:
            return started.enter_context(load_balancer(hosts, port))

        yield start


async def test_lb_answers_the_503_when_every_replica_answers_503(
    stubs: StubUpstreams, start_lb: Callable[[list[str], int], HAProxy]
) -> None:
    # The database is shared: when it is down every replica answers 503, and
    # clients must keep getting that JSON (and its Retry-After), not an HTML
    # page once the LB has taken every replica out of rotation.
    hosts = ["127.0.0.21", "127.0.0.22"]
    await stubs.start(hosts)
    lb = await asyncio.to_thread(start_lb, hosts, stubs.port)

    replies = [await fetch(lb.port, "GET", ME) for _ in range(6)]

    assert [
        (
            reply.status,
            reply.headers.get("content-type"),
            reply.headers.get("retry-after"),
            reply.json_or_text(),
        )
        for reply in replies
    ] == [(503, "application/json", "5", UNAVAILABLE)] * 6


LB_OWN_ANSWERS = {
    400: "The browser (or proxy) sent a request that this server could not understand.",
    413: "The data value transmitted exceeds the capacity limit.",
    502: "The proxy server received an invalid response from an upstream server.",
    503: "Service unavailable",
}


async def raw_exchange(port: int, request: bytes) -> Reply:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            raw = await reader.read()
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(status_line.split()[1]), headers, body)


# Before 3.2, HAProxy answers a request it cannot parse with its built-in HTML
# page whatever the errorfile (haproxy/haproxy#3032); compose runs 3.2.
MUX_ERRORFILES = HAPROXY is not None and haproxy_version() >= (3, 2)


@pytest.mark.parametrize(
    ("status", "request_bytes"),
    [
        pytest.param(
            400,
            b"GET /api/v1/users/\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
            marks=pytest.mark.xfail(
                not MUX_ERRORFILES,
                reason="HAProxy < 3.2 ignores errorfile 400 for parse errors",
                strict=True,
            ),
        ),
        (
            413,
            b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 17000000\r\n\r\n{",
        ),
        (503, b"GET /api/v1/users/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    ],
    ids=["nul-in-uri", "body-too-large", "no-replica"],
)
async def test_lb_answers_its_own_errors_as_json_without_a_banner(
    start_lb: Callable[[list[str], int], HAProxy],
    status: int,
    request_bytes: bytes,
) -> None:
    # No replica at all: the 400 and 413 are the LB's before any upstream.
    lb = await asyncio.to_thread(start_lb, [], free_port_on_every_loopback())

    reply = await raw_exchange(lb.port, request_bytes)

    assert (reply.status, reply.headers.get("content-type")) == (
        status,
        "application/json",
    )
    assert reply.json() == {"error": LB_OWN_ANSWERS[status]}
    assert int(reply.headers["content-length"]) == len(reply.body)
    assert "server" not in reply.headers
    assert b"haproxy" not in reply.body.lower()


async def test_lb_answers_json_502_for_a_replica_that_speaks_no_http(
    stubs: StubUpstreams, start_lb: Callable[[list[str], int], HAProxy]
) -> None:
    stubs.junk = True
    await stubs.start(["127.0.0.23"])
    lb = await asyncio.to_thread(start_lb, ["127.0.0.23"], stubs.port)
    deadline = time.monotonic() + 15
    while (reply := await fetch(lb.port, "GET", ME)).status == 503:
        # Until the first /readyz check puts the replica in rotation.
        assert time.monotonic() < deadline, reply.body
        await asyncio.sleep(0.1)

    assert (reply.status, reply.headers.get("content-type")) == (
        502,
        "application/json",
    )
    assert reply.json() == {"error": LB_OWN_ANSWERS[502]}
    assert "server" not in reply.headers


# ------------------------------------------------ the Flask container's way


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None,
    reason="needs root, unshare and ip for a network namespace of its own",
)
@pytest.mark.parametrize(("port_env", "port"), [(None, 5000), ("5123", 5123)])
def test_image_started_with_the_flask_environment_serves_on_5000_in_production(
    deployment: Deployment, port_env: str | None, port: int
) -> None:
    # As `docker run -e FLASK_ENV=production -e DATABASE_URL=... image`: the
    # Flask service's variables, plus the reset mail's that production needs
    # (docs/MIGRATING.md); the image's ENTRYPOINT and CMD unchanged.
    # A network namespace of its own stands for the container's: port 5000
    # of this shared host may be anyone's.
    env = deployment.runtime.env(BASE_IMAGE_ENV)
    env = {key: deployment._host_path(value) for key, value in env.items()}
    env.update(
        {
            "HOME": str(deployment.app),
            "FLASK_ENV": "production",
            "DATABASE_URL": deployment.database_url.replace("+asyncpg", ""),
            "SECRET_KEY": deployment.secrets["SECRET_KEY"],
            "JWT_SECRET_KEY": deployment.secrets["JWT_SECRET_KEY"],
            **RESET_MAIL,
        }
    )
    if port_env is not None:
        env["PORT"] = port_env
    probe = HEALTHZ_PROBE.format(port=port)
    # The database is on this host's loopback, outside the namespace: the
    # process must serve /healthz (the process), not /readyz (the database).
    script = (
        "ip link set lo up && "
        f"{shlex.join(deployment.image_argv())} & server=$!; "
        f"{shlex.join([str(deployment.venv / 'bin' / 'python'), '-c', probe])}; "
        "status=$?; kill -TERM $server; wait $server; exit $status"
    )
    mode = deployment.run_as_app(
        [
            "python",
            "-c",
            "from service.config import Settings; print(Settings.from_env().env)",
        ],
        env=env,
    )

    served = run(
        ["/usr/bin/unshare", "--net", "/bin/sh", "-c", script],
        cwd=deployment.app,
        env=env,
        timeout=90,
    )

    assert served.returncode == 0, served.stdout + served.stderr
    assert (mode.returncode, mode.stdout.strip()) == (0, "production"), mode.stderr


# --------------------------------------------------------- metrics per replica


def scrape_targets(stack: Deployment) -> list[str]:
    """What Prometheus's dns_sd_configs finds: one A record per replica."""
    assert stack.dns is not None
    question = DNSRecord.question(stack.service_name, "A")
    answer = DNSRecord.parse(question.send("127.0.0.1", stack.dns.port, timeout=5))
    return [str(record.rdata) for record in answer.rr]


def healthz_count(text: str) -> float:
    match = re.search(
        r'^http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)$',
        text,
        re.M,
    )
    return float(match[1]) if match else 0.0


async def scrape(stack: Deployment, host: str) -> str:
    connection = HTTPConnection(stack.fleet_port, host=host)
    try:
        reply = await connection.request(
            "GET", "/metrics", headers=bearer(stack.secrets["METRICS_TOKEN"])
        )
    finally:
        await connection.close()
    assert reply.status == 200, reply.body
    return reply.body.decode()


async def test_each_replica_is_scraped_on_its_own_address(stack: Deployment) -> None:
    # deploy/prometheus.yml's job, by hand: resolve `api`, scrape each address.
    # Each replica's counter counts exactly the requests its log shows.
    targets = scrape_targets(stack)
    before = {host: healthz_count(await scrape(stack, host)) for host in targets}
    rids = [request_id() for _ in range(8)]

    for rid in rids:
        await fetch(stack.lb_port, "GET", "/healthz", headers={"X-Request-ID": rid})
    after = {host: healthz_count(await scrape(stack, host)) for host in targets}

    by_host = {replica.host: index for index, replica in enumerate(stack.replicas)}
    served = Counter(index for rid in rids for index, _ in served_by(stack, rid))
    assert sorted(targets) == sorted(replica.host for replica in stack.replicas)
    assert {host: after[host] - before[host] for host in targets} == {
        host: float(served[by_host[host]]) for host in targets
    }
    assert all(served[index] > 0 for index in by_host.values())
