"""The compose stack without Docker: the image's venv, two replicas, the real nginx.

The module builds the image the Dockerfile's way into a fresh virtualenv, runs
compose's `migrate` command, starts two replicas with the image's CMD, ENV and
USER, and puts deploy/nginx.conf in front of them (see tests/deploy/stack.py
for what differs from Docker, and why). Every request goes through nginx.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import time
import tomllib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.deploy.stack import (
    NGINX,
    ROOT,
    Deployment,
    HTTPConnection,
    Nginx,
    Replica,
    StackError,
    bearer,
    fetch,
    free_port,
    hypercorn_settings,
    image_user,
    log_time,
    make_workdir,
)
from tests.support import ADMIN_DSN, drop_database, recreate_database

pytestmark = pytest.mark.skipif(
    NGINX is None, reason="no nginx (.ci/run installs Debian's nginx-light)"
)

DATABASE = f"deploytest_{os.getpid()}"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LOGIN = "/api/v1/auth/login"
USERS = "/api/v1/users"
ME = "/api/v1/users/me"
UNAVAILABLE = {"error": "Service unavailable"}
LOAD_CONNECTIONS = 20
LOAD_SECONDS = 6.0
SIGTERM_AFTER = 2.0
# The login throttle counts an attempt before checking the password: more
# concurrent logins of one account than LOGIN_MAX_FAILURES (10) get 429.
IN_FLIGHT_LOGINS = 10


def timestamps_removed(user: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in user.items() if k not in ("created_at", "updated_at")}


def request_id() -> str:
    return f"deploytest-{uuid.uuid4().hex}"


def served_by(stack: Deployment, rid: str) -> list[tuple[int, dict[str, Any]]]:
    """(replica index, log line) for each access-log line with that request id."""
    return [
        (index, entry)
        for index, replica in enumerate(stack.replicas)
        for entry in replica.access_log(containing=rid)
        if entry.get("request_id") == rid
    ]


@pytest.fixture(scope="module")
def measurements(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Numbers worth a note, printed after the module whatever the verbosity."""
    lines: list[str] = []
    yield lines
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    if reporter is None or not lines:
        return
    with capture.global_and_fixture_disabled() if capture else nullcontext():
        reporter.write_line("")
        for line in lines:
            reporter.write_line(f"deploy: {line}")


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
        await asyncio.to_thread(stack.start_nginx)
        yield stack
    finally:
        if stack is not None:
            await asyncio.to_thread(stack.stop)
        shutil.rmtree(workdir, ignore_errors=True)
        await drop_database(DATABASE)


async def wait_until_both_serve(stack: Deployment) -> None:
    """nginx keeps a replica out of rotation for fail_timeout after it failed."""
    seen: set[int] = set()
    deadline = time.monotonic() + 15
    while seen != set(range(len(stack.replicas))):
        assert time.monotonic() < deadline, f"only replicas {seen} served"
        rid = request_id()
        await fetch(stack.nginx_port, "GET", "/healthz", headers={"X-Request-ID": rid})
        seen |= {index for index, _ in served_by(stack, rid)}
        await asyncio.sleep(0.02)


@pytest.fixture
async def stack(deployment: Deployment) -> Deployment:
    """The deployment with both replicas up and in nginx's rotation."""
    if await asyncio.to_thread(deployment.ensure_replicas):
        # A replica a test stopped is out of rotation for fail_timeout: a
        # reload starts workers that try it at once, as an operator would.
        assert deployment.nginx is not None
        deployment.nginx.reload()
    await wait_until_both_serve(deployment)
    return deployment


async def login(stack: Deployment, email: str, password: str) -> dict[str, Any]:
    reply = await fetch(
        stack.nginx_port,
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


async def wait_exit(
    process: subprocess.Popen[bytes], signalled: float, within: float
) -> tuple[int | None, float]:
    """The exit code and the seconds from the signal to the exit."""
    try:
        code = await asyncio.to_thread(process.wait, within)
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - signalled
    return code, time.monotonic() - signalled


def sigterm(replica: Replica) -> subprocess.Popen[bytes]:
    # To hypercorn's main process only, as docker stop (through compose's
    # init) delivers it: not to the process group.
    assert replica.process is not None
    os.kill(replica.process.pid, signal.SIGTERM)
    return replica.process


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
    assert result.stdout.strip() == (
        f"User {deployment.secrets['ADMIN_EMAIL']} already exists"
    )


# ------------------------------------------------------- through nginx


async def test_login_write_and_read_through_nginx(stack: Deployment) -> None:
    port = stack.nginx_port
    email = f"deploy-{uuid.uuid4().hex[:12]}@example.com"
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


async def test_nginx_spreads_requests_over_both_replicas(stack: Deployment) -> None:
    rids = [request_id() for _ in range(8)]

    for rid in rids:
        await fetch(stack.nginx_port, "GET", "/healthz", headers={"X-Request-ID": rid})

    replicas = [[index for index, _ in served_by(stack, rid)] for rid in rids]
    assert all(len(served) == 1 for served in replicas), replicas
    assert {served[0] for served in replicas} == {0, 1}


async def test_client_request_id_is_echoed_and_logged_by_the_replica(
    stack: Deployment,
) -> None:
    token = await admin_token(stack)
    rid = request_id()

    reply = await fetch(
        stack.nginx_port, "GET", ME, headers={**bearer(token), "X-Request-ID": rid}
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


async def test_request_without_an_id_gets_one_from_nginx(stack: Deployment) -> None:
    reply = await fetch(stack.nginx_port, "GET", "/healthz")

    rid = reply.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert len(served_by(stack, rid)) == 1


async def test_database_refusing_connections_answers_503_json_through_nginx(
    stack: Deployment, measurements: list[str]
) -> None:
    # What PostgreSQL answers while it starts, stops or is full: it refuses
    # new connections with an error. Replicas must say 503, not 500, and
    # nginx must pass that JSON on, not turn it into its own HTML 502.
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
                await fetch(stack.nginx_port, "GET", USERS, headers=bearer(token))
            )
            durations.append(time.monotonic() - started)
    finally:
        await admin.execute(f'ALTER DATABASE "{DATABASE}" ALLOW_CONNECTIONS true')
        await admin.close()
    back = time.monotonic()
    while (
        await fetch(stack.nginx_port, "GET", USERS, headers=bearer(token))
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


@dataclass
class Load:
    """Steady requests through nginx, each connection one after another."""

    port: int
    method: str
    path: str
    headers: dict[str, str]
    json_body: Any = None
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    signalled_at: float | None = None
    ok_after_signal: int = 0

    async def run(self, seconds: float, connections: int) -> None:
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(self._client(stop_at) for _ in range(connections)))

    async def _client(self, stop_at: float) -> None:
        connection = HTTPConnection(self.port)
        try:
            while time.monotonic() < stop_at:
                self.sent += 1
                try:
                    async with asyncio.timeout(15):
                        reply = await connection.request(
                            self.method,
                            self.path,
                            json_body=self.json_body,
                            headers=self.headers,
                        )
                except (OSError, EOFError, ValueError) as error:
                    self.errors.append(repr(error))
                    continue
                self.statuses[reply.status] += 1
                if reply.status == 200 and self.signalled_at is not None:
                    self.ok_after_signal += 1
        finally:
            await connection.close()

    @property
    def failed(self) -> int:
        return len(self.errors) + sum(
            count for status, count in self.statuses.items() if status != 200
        )

    def summary(self) -> str:
        return (
            f"{self.method} {self.path}: {self.sent} requests over "
            f"{LOAD_SECONDS:.0f} s from {LOAD_CONNECTIONS} connections, "
            f"{self.failed} failed (statuses {dict(self.statuses)}, errors "
            f"{self.errors[:3]}), {self.ok_after_signal} answered 200 after the signal"
        )


async def sigterm_a_replica_under(
    load: Load, victim: Replica
) -> tuple[int | None, float]:
    """Run the load, SIGTERM the replica SIGTERM_AFTER seconds in; its exit."""
    graceful_timeout = hypercorn_settings()["graceful_timeout"]

    async def stop_victim() -> tuple[int | None, float]:
        await asyncio.sleep(SIGTERM_AFTER)
        load.signalled_at = time.monotonic()
        return await wait_exit(sigterm(victim), load.signalled_at, graceful_timeout + 5)

    stopped, _ = await asyncio.gather(
        stop_victim(), load.run(LOAD_SECONDS, LOAD_CONNECTIONS)
    )
    return stopped


async def test_replica_sigterm_under_read_load_drops_no_request(
    stack: Deployment, measurements: list[str]
) -> None:
    load = Load(stack.nginx_port, "GET", ME, bearer(await admin_token(stack)))

    exit_code, exit_seconds = await sigterm_a_replica_under(load, stack.replicas[0])
    measurements.append(
        f"SIGTERM under {load.summary()}; the replica exited {exit_code} "
        f"after {exit_seconds:.2f} s"
    )

    assert (load.failed, load.errors) == (0, [])
    assert load.ok_after_signal > 0
    assert exit_code == 0
    assert exit_seconds < hypercorn_settings()["graceful_timeout"]


async def test_replica_sigterm_under_write_load_drops_no_request(
    stack: Deployment, measurements: list[str]
) -> None:
    # nginx retries a failed GET on the other replica, but never a PATCH or
    # POST it has already sent: a write lost across a stop is a client's 502.
    token = await admin_token(stack)
    me = await fetch(stack.nginx_port, "GET", ME, headers=bearer(token))
    load = Load(
        stack.nginx_port,
        "PATCH",
        f"{USERS}/{me.json()['id']}",
        bearer(token),
        json_body={"last_name": "Deployed"},
    )

    exit_code, exit_seconds = await sigterm_a_replica_under(load, stack.replicas[1])
    measurements.append(
        f"SIGTERM under {load.summary()}; the replica exited {exit_code} "
        f"after {exit_seconds:.2f} s"
    )

    assert (load.failed, load.errors) == (0, [])
    assert load.ok_after_signal > 0
    assert exit_code == 0
    assert exit_seconds < hypercorn_settings()["graceful_timeout"]


async def test_replica_sigterm_finishes_the_logins_in_flight(
    stack: Deployment, measurements: list[str]
) -> None:
    graceful_timeout = hypercorn_settings()["graceful_timeout"]
    credentials = {
        "email": stack.secrets["ADMIN_EMAIL"],
        "password": stack.secrets["ADMIN_PASSWORD"],
    }
    victim = stack.replicas[0]
    logins = [
        asyncio.create_task(
            fetch(stack.nginx_port, "POST", LOGIN, json_body=credentials)
        )
        for _ in range(IN_FLIGHT_LOGINS)
    ]
    # Each login hashes for ~100 ms on a small pool: once the first is
    # answered, the rest are queued or hashing inside the replicas.
    await asyncio.wait(logins, return_when=asyncio.FIRST_COMPLETED)
    signalled_wall, signalled = time.time(), time.monotonic()
    exit_code, exit_seconds = await wait_exit(
        sigterm(victim), signalled, graceful_timeout + 5
    )
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


# ------------------------------------------------- nginx in front of stubs


class StubUpstreams:
    """Replicas that answer every request with the service's 503 JSON."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []

    async def start(self, count: int) -> list[str]:
        for _ in range(count):
            self.servers.append(
                await asyncio.start_server(self._handle, "127.0.0.1", 0)
            )
        return [
            f"127.0.0.1:{server.sockets[0].getsockname()[1]}" for server in self.servers
        ]

    @staticmethod
    async def _handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        body = b'{"error":"Service unavailable"}\n'
        try:
            while await reader.readuntil(b"\r\n\r\n"):
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
def start_nginx() -> Iterator[Callable[[list[str]], Nginx]]:
    """Starts deploy/nginx.conf in front of the given upstreams."""
    workdir = make_workdir("deploytest-nginx-")
    started: list[Nginx] = []

    def start(upstreams: list[str]) -> Nginx:
        nginx = Nginx(workdir, upstreams)
        started.append(nginx)
        nginx.start(wait_for=None)
        return nginx

    yield start
    for nginx in started:
        nginx.stop()
    shutil.rmtree(workdir, ignore_errors=True)


async def test_nginx_passes_the_503_on_when_every_replica_answers_503(
    stubs: StubUpstreams, start_nginx: Callable[[list[str]], Nginx]
) -> None:
    # The database is shared: when it is down every replica answers 503, and
    # clients must keep getting that JSON (and its Retry-After), not nginx's
    # HTML "502 Bad Gateway" once it has marked every replica failed.
    nginx = await asyncio.to_thread(start_nginx, await stubs.start(2))

    replies = [await fetch(nginx.port, "GET", ME) for _ in range(6)]

    assert [
        (reply.status, reply.headers.get("content-type"), reply.json_or_text())
        for reply in replies
    ] == [(503, "application/json", UNAVAILABLE)] * 6


async def test_nginx_answers_json_when_no_replica_is_reachable(
    start_nginx: Callable[[list[str]], Nginx],
) -> None:
    # Every error is JSON (API.md), the load balancer's own included.
    nothing_listens = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    nginx = await asyncio.to_thread(start_nginx, nothing_listens)

    reply = await fetch(nginx.port, "GET", ME)

    assert reply.status in (502, 503, 504)
    assert reply.headers.get("content-type") == "application/json"
    assert set(reply.json_or_text()) == {"error"}, reply.body
