"""A canary fleet: the Flask original and this service behind one real HAProxy.

Both serve one database migrated by this service's Alembic, and HAProxy, with
the backend docs/MIGRATING.md's canary section shows (at equal weights),
alternates between them request by request (round robin), as a load balancer
does during a canary cutover. A client's session runs across both, each
side's tokens work on the other, and the original keeps working on the
upgraded schema, which is what a rollback to it needs.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from tests.docs import commands
from tests.parity.servers import (
    Database,
    flask_server,
    service_migrate,
    service_server,
    unique_database,
    workdir,
)
from tests.ports import free_port
from tests.support import API, PASSWORD, ROOT
from tests.system.harness import Process, Server, responds
from tests.system.stack import HAPROXY, make_workdir

pytestmark = pytest.mark.skipif(
    HAPROXY is None, reason="no haproxy (.ci/run installs Debian's haproxy)"
)
GUIDE = ROOT / "docs" / "MIGRATING.md"


@dataclass(frozen=True)
class Answer:
    status: int
    upstream: str
    body: Any


def call(
    port: int,
    method: str,
    path: str,
    *,
    body: Any = None,
    token: str | None = None,
) -> Answer:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(
            method,
            API + path,
            body=None if body is None else json.dumps(body),
            headers=headers,
        )
        response = connection.getresponse()
        raw = response.read()
        upstream = response.getheader("X-Upstream", "")
    finally:
        connection.close()
    return Answer(response.status, upstream, json.loads(raw) if raw else None)


HAPROXY_CFG = """\
global
    pidfile {state}/haproxy.pid
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    # A retry on the other server would hide which one answered.
    retries 0
frontend canary
    bind 127.0.0.1:{port}
    default_backend api
"""


def canary_backend(flask: int, service: int) -> str:
    """docs/MIGRATING.md's backend, on these ports, at equal weights."""
    (backend,) = [
        text for language, text in commands.fences(GUIDE) if language == "haproxy"
    ]
    assert "server flask flask:5000" in backend
    assert "server service api:5000" in backend
    backend = backend.replace("flask:5000", f"127.0.0.1:{flask}")
    backend = backend.replace("api:5000", f"127.0.0.1:{service}")
    # Round robin, one request each; weights are the canary's dial.
    backend = re.sub(r"weight \d+", "weight 1", backend)
    return backend + "    http-response set-header X-Upstream %[srv_name]\n"


@dataclass
class Fleet:
    lb: int
    flask: Server
    service: Server
    database: Database

    def served_by(self, answer: Answer) -> str:
        assert answer.upstream in ("flask", "service"), answer
        return answer.upstream

    def register(self, email: str) -> dict[str, Any]:
        answer = call(
            self.lb,
            "POST",
            "/users",
            body={
                "email": email,
                "password": PASSWORD,
                "first_name": "Mixed",
                "last_name": "Fleet",
            },
        )
        assert answer.status == 201, answer
        created: dict[str, Any] = answer.body
        return created

    def login(self, port: int, email: str) -> dict[str, str]:
        answer = call(
            port, "POST", "/auth/login", body={"email": email, "password": PASSWORD}
        )
        assert answer.status == 200, answer
        tokens: dict[str, str] = answer.body
        return tokens


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    assert HAPROXY is not None
    with ExitStack() as stack:
        folder = stack.enter_context(workdir("mixed-fleet-"))
        database = Database(unique_database("mixed_fleet"))
        database.create()
        stack.callback(database.drop)
        migrated = service_migrate(database.url)
        assert migrated.returncode == 0, migrated.stderr
        flask = stack.enter_context(flask_server(database.url, folder))
        service = stack.enter_context(service_server(database.url, folder))
        state = make_workdir("mixed-fleet-haproxy-")
        stack.callback(shutil.rmtree, state, ignore_errors=True)
        port = free_port()
        config = state / "haproxy.cfg"
        config.write_text(
            HAPROXY_CFG.format(state=state, port=port)
            + canary_backend(flask.port, service.port)
        )
        haproxy = Process(
            [HAPROXY, "-db", "-f", str(config)],
            env=os.environ,
            cwd=state,
            out=state / "haproxy.out",
            ready=responds(f"http://127.0.0.1:{port}{API}/users", status=None),
            timeout=15,
        )
        stack.enter_context(haproxy.start())
        yield Fleet(port, flask, service, database)


def test_haproxy_alternates_request_by_request(fleet: Fleet) -> None:
    answers = [call(fleet.lb, "GET", "/users/me") for _ in range(6)]
    servers = [fleet.served_by(answer) for answer in answers]
    assert set(servers) == {"flask", "service"}
    assert all(a != b for a, b in itertools.pairwise(servers)), servers
    # And both answer a missing token alike, the `msg` Flask clients read.
    assert {a.body["msg"] for a in answers} == {"Missing Authorization Header"}


def test_a_session_runs_across_both_servers(fleet: Fleet) -> None:
    user = fleet.register("session@example.com")
    tokens = fleet.login(fleet.lb, "session@example.com")
    served: set[str] = set()
    access = tokens["access_token"]
    for _ in range(2):
        refreshed = call(
            fleet.lb, "POST", "/auth/refresh", token=tokens["refresh_token"]
        )
        assert refreshed.status == 200, refreshed
        served.add(fleet.served_by(refreshed))
        access = refreshed.body["access_token"]
        me = call(fleet.lb, "GET", "/users/me", token=access)
        assert (me.status, me.body["id"]) == (200, user["id"])
        served.add(fleet.served_by(me))
    for name in ("First", "Second"):
        patched = call(
            fleet.lb,
            "PATCH",
            f"/users/{user['id']}",
            body={"first_name": name},
            token=access,
        )
        assert (patched.status, patched.body["first_name"]) == (200, name), patched
        served.add(fleet.served_by(patched))
        listed = call(fleet.lb, "GET", "/users?per_page=100", token=access)
        assert listed.status == 200
        assert {u["id"]: u["first_name"] for u in listed.body["users"]}[
            user["id"]
        ] == name
        served.add(fleet.served_by(listed))
    assert served == {"flask", "service"}


def test_tokens_of_each_side_work_on_the_other(fleet: Fleet) -> None:
    user = fleet.register("tokens@example.com")
    for issuer, verifier in (
        (fleet.flask, fleet.service),
        (fleet.service, fleet.flask),
    ):
        tokens = fleet.login(issuer.port, "tokens@example.com")
        me = call(verifier.port, "GET", "/users/me", token=tokens["access_token"])
        assert (me.status, me.body["id"]) == (200, user["id"]), (issuer.name, me)
        refreshed = call(
            verifier.port, "POST", "/auth/refresh", token=tokens["refresh_token"]
        )
        assert refreshed.status == 200, (issuer.name, refreshed)
        again = call(
            issuer.port, "GET", "/users/me", token=refreshed.body["access_token"]
        )
        assert (again.status, again.body["id"]) == (200, user["id"])


def test_flask_keeps_working_on_the_upgraded_schema(fleet: Fleet) -> None:
    """Register, log in, patch, list and delete on the original alone."""
    created = call(
        fleet.flask.port,
        "POST",
        "/users",
        body={
            "email": "rollback@example.com",
            "password": PASSWORD,
            "first_name": "R",
            "last_name": "B",
        },
    )
    assert created.status == 201, created
    user_id = created.body["id"]
    tokens = fleet.login(fleet.flask.port, "rollback@example.com")
    patched = call(
        fleet.flask.port,
        "PATCH",
        f"/users/{user_id}",
        body={"last_name": "Back"},
        token=tokens["access_token"],
    )
    assert (patched.status, patched.body["last_name"]) == (200, "Back")
    # What this service wrote is what the original reads, and the reverse.
    seen = call(
        fleet.service.port, "GET", f"/users/{user_id}", token=tokens["access_token"]
    )
    assert seen.body == patched.body
    # The upgraded schema's case-insensitive index holds for the original too:
    # its INSERT fails, which it answers as its own 500.
    variant = call(
        fleet.flask.port,
        "POST",
        "/users",
        body={
            "email": "ROLLBACK@example.com",
            "password": PASSWORD,
            "first_name": "R",
            "last_name": "B",
        },
    )
    assert (variant.status, variant.body) == (500, {"error": "Internal server error"})
    # The account the original made logs in on this service as well.
    assert (
        fleet.login(fleet.service.port, "rollback@example.com")["token_type"]
        == "bearer"
    )


def test_logout_on_flask_revokes_nothing_and_on_the_service_everywhere(
    fleet: Fleet,
) -> None:
    """The one behaviour that differs while both serve (docs/MIGRATING.md)."""
    fleet.register("logout@example.com")
    on_flask = fleet.login(fleet.flask.port, "logout@example.com")
    out = call(fleet.flask.port, "POST", "/auth/logout", token=on_flask["access_token"])
    assert out.status == 200
    still = call(fleet.service.port, "GET", "/users/me", token=on_flask["access_token"])
    assert still.status == 200
    on_service = fleet.login(fleet.service.port, "logout@example.com")
    out = call(
        fleet.service.port, "POST", "/auth/logout", token=on_service["access_token"]
    )
    assert out.status == 200
    revoked = call(
        fleet.service.port, "GET", "/users/me", token=on_service["access_token"]
    )
    assert revoked.status == 401
    # The original checks no session: the same token still works there.
    flask_view = call(
        fleet.flask.port, "GET", "/users/me", token=on_service["access_token"]
    )
    assert flask_view.status == 200
