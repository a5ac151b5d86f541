"""Request sequences sent to the Flask original and to this service, compared.

A sequence is a list of abstract operations (register, log in, list, patch, ...
with tokens of every kind). Each runs against both servers: the same request,
with each server's own ids and tokens filled in. The answers are compared on
status, content type and body bytes, after what must differ is normalized: ids
become the harness's labels, timestamps and tokens placeholders.

A difference is either listed in docs/MIGRATING.md (tests/parity/
deviations.py reads it) or a failure. After an allowed difference the two
databases may disagree about the users involved, so those users are left out
of the rest of the sequence, and lists (which show every user) are compared
on status and content type only.
"""

from __future__ import annotations

import http.client
import json
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.security import generate_password_hash

from tests.flask_tokens import FlaskIssuer, alg_none
from tests.parity.deviations import Deviation
from tests.parity.servers import JWT_KEY, Database
from tests.support import API, PASSWORD

FLASK, SERVICE = "flask", "service"
SIDES = (FLASK, SERVICE)
UNKNOWN_ID = 987654
FLASK_500 = b'{"error":"Internal server error"}\n'
BASE_USERS = 3
OPERATIONS = frozenset(
    {"register", "login", "refresh", "logout", "me", "list", "get", "patch", "delete"}
)


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None = None


# ------------------------------------------------------------- operations
# Each is a plain tuple so Hypothesis prints a sequence readably.


@dataclass(frozen=True)
class Op:
    name: str
    actor: int = 0
    token: str = "access"
    target: int | str = 0
    args: tuple[Any, ...] = ()


# ----------------------------------------------------------------- world


@dataclass
class Account:
    label: str
    email: str
    ids: dict[str, int] = field(default_factory=dict)
    access: dict[str, str] = field(default_factory=dict)
    refresh: dict[str, str] = field(default_factory=dict)
    is_admin: bool = False


class Client:
    """One keep-alive HTTP/1.1 connection per server, reopened when closed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._connection: http.client.HTTPConnection | None = None

    def send(self, request: Request) -> Reply:
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=60
                )
            try:
                self._connection.request(
                    request.method,
                    request.path,
                    body=request.body,
                    headers=request.headers,
                )
                response = self._connection.getresponse()
                body = response.read()
            except (
                http.client.RemoteDisconnected,
                BrokenPipeError,
                ConnectionResetError,
            ):
                # gunicorn's sync workers close every connection after one answer.
                self.close()
                if attempt == 2:
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return Reply(response.status, response.getheader("Content-Type", ""), body)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


_TIMESTAMP = re.compile(rb'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?"')
_JWT = re.compile(rb'"[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"')
_ID = re.compile(rb'"id":(\d+)')
_ID_IN_TEXT = re.compile(rb"User with id (\d+) not found")


def mismatch_text(
    operation: str, flask: Reply, service: Reply, request: Request
) -> str:
    return (
        f"{operation}: {request.method} {request.path}\n"
        f"  request body: {request.body!r}\n"
        f"  flask:   {flask.status} {flask.content_type} {flask.body!r}\n"
        f"  service: {service.status} {service.content_type} {service.body!r}"
    )


class Harness:
    """The two servers, their databases, and one sequence's world."""

    def __init__(
        self,
        ports: dict[str, int],
        databases: dict[str, Database],
        deviations: list[Deviation],
    ) -> None:
        self.clients = {side: Client(port) for side, port in ports.items()}
        self.databases = databases
        self.deviations = deviations
        self.seen: Counter[str] = Counter()
        self.pool = ThreadPoolExecutor(2)
        self.issuer = FlaskIssuer(JWT_KEY)
        self.wrong_issuer = FlaskIssuer("another-key-0123456789-abcdefghijklmnop")
        self.password_hash = generate_password_hash(PASSWORD)
        self.sequence = 0
        self.accounts: list[Account] = []
        self.tainted: set[str] = set()
        self.emails: dict[str, Account] = {}
        # Exploring: gather every distinct unexplained difference, fail at the end.
        self.collect: dict[str, str] | None = None

    def close(self) -> None:
        self.pool.shutdown()
        for client in self.clients.values():
            client.close()

    # ------------------------------------------------------------ set-up

    def reset(self) -> None:
        """Empty both databases and insert the same admin and users in each."""
        self.sequence += 1
        self.accounts, self.tainted, self.emails = [], set(), {}
        now = datetime.now(UTC).replace(tzinfo=None)
        rows = [("admin@example.com", "Admin", "User", True)] + [
            (f"user{i}@example.com", "User", str(i), False)
            for i in range(1, BASE_USERS + 1)
        ]
        for index, (email, *_, is_admin) in enumerate(rows):
            account = Account(f"u{index}", email, is_admin=is_admin)
            self.accounts.append(account)
            self.emails[email] = account
        for side, database in self.databases.items():
            tables = [
                row["tablename"]
                for row in database.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'alembic_version'"
                )
            ]
            database.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
            for index, (email, first, last, is_admin) in enumerate(rows):
                # Distinct creation times: the original orders by created_at alone.
                created = now - timedelta(seconds=len(rows) - index)
                record = database.fetch(
                    "INSERT INTO users (email, password_hash, first_name, last_name, "
                    "is_active, is_admin, created_at, updated_at) "
                    "VALUES ($1, $2, $3, $4, true, $5, $6, $6) RETURNING id",
                    email,
                    self.password_hash,
                    first,
                    last,
                    is_admin,
                    created,
                )
                self.accounts[index].ids[side] = record[0]["id"]

    # ----------------------------------------------------------- running

    def run(self, operations: list[Op]) -> list[str]:
        """Run a sequence on a fresh world; return the deviations it met."""
        self.reset()
        met: list[str] = []
        for operation in operations:
            outcome = self.step(operation)
            if outcome is not None:
                met.append(outcome)
        return met

    def account(self, index: int) -> Account:
        return self.accounts[index % len(self.accounts)]

    def step(self, op: Op) -> str | None:
        involved = self.involved(op)
        if involved & self.tainted:
            return None
        requests = {side: self.request(op, side) for side in SIDES}
        futures = {
            side: self.pool.submit(self.clients[side].send, requests[side])
            for side in SIDES
        }
        replies = {side: future.result() for side, future in futures.items()}
        flask, service = (self.normalized(side, replies[side]) for side in SIDES)
        compare_body = not (op.name == "list" and self.tainted)
        same = (flask.status, flask.content_type) == (
            service.status,
            service.content_type,
        ) and (not compare_body or flask.body == service.body)
        if same:
            self.learn(op, replies)
            return None
        for deviation in self.deviations:
            if deviation.allows(
                op.name,
                (flask.status, flask.body),
                (service.status, service.body),
                op.token,
            ) and (
                flask.content_type == service.content_type
                or flask.status != service.status
            ):
                self.seen[deviation.id] += 1
                # A refused request changes nothing on either side.
                if flask.status < 400 or service.status < 400:
                    self.tainted |= involved
                return deviation.id
        text = mismatch_text(op.name, flask, service, requests[SERVICE])
        if self.collect is None:
            raise AssertionError(
                "unexplained difference (not in docs/MIGRATING.md):\n" + text
            )
        key = f"{op.name} {flask.status} {service.status} {flask.body[:60]!r}"
        self.collect.setdefault(key, text)
        self.tainted |= involved
        return "?"

    def involved(self, op: Op) -> set[str]:
        """The users (labels) and addresses ("email:...") the operation touches."""
        labels = set()
        if op.name not in ("register", "login"):
            labels.add(self.account(op.actor).label)
        if op.name in ("get", "patch", "delete") and isinstance(op.target, int):
            labels.add(self.account(op.target).label)
        if op.name in ("register", "login"):
            email = self.email_of(op)
            if email is not None:
                labels.add("email:" + email.lower())
                for known, account in self.emails.items():
                    if known.lower() == email.lower():
                        labels.add(account.label)
        return labels

    def email_of(self, op: Op) -> str | None:
        body = op.args[0] if op.args else None
        if isinstance(body, dict) and isinstance(body.get("email"), str):
            return str(body["email"])
        return None

    def learn(self, op: Op, replies: dict[str, Reply]) -> None:
        """Record what both servers agreed on: new users' ids, issued tokens."""
        if op.name == "register" and replies[FLASK].status == 201:
            email = self.email_of(op)
            assert email is not None
            account = Account(f"u{len(self.accounts)}", email)
            for side in SIDES:
                account.ids[side] = json.loads(replies[side].body)["id"]
            self.accounts.append(account)
            self.emails[email] = account
        elif op.name == "login" and replies[FLASK].status == 200:
            email = self.email_of(op)
            assert email is not None
            account = self.emails[email]
            for side in SIDES:
                tokens = json.loads(replies[side].body)
                account.access[side] = tokens["access_token"]
                account.refresh[side] = tokens["refresh_token"]
        elif op.name == "refresh" and replies[FLASK].status == 200:
            account = self.account(op.actor)
            for side in SIDES:
                account.access[side] = json.loads(replies[side].body)["access_token"]

    def normalized(self, side: str, reply: Reply) -> Reply:
        if side == FLASK and reply.status == 500 and "html" in reply.content_type:
            # gunicorn's own page, when an exception escapes Flask (debug mode):
            # the same fault as the JSON 500 the production config answers.
            reply = Reply(500, "application/json", FLASK_500)
        labels = {
            str(account.ids[side]).encode(): account.label.encode()
            for account in self.accounts
            if side in account.ids
        }
        body = _TIMESTAMP.sub(b'"<time>"', reply.body)
        body = _JWT.sub(b'"<token>"', body)
        body = _ID.sub(lambda m: b'"id":"' + labels.get(m[1], m[1]) + b'"', body)
        body = _ID_IN_TEXT.sub(
            lambda m: b"User with id " + labels.get(m[1], m[1]) + b" not found", body
        )
        return Reply(reply.status, reply.content_type, body)

    # ---------------------------------------------------------- requests

    def token(self, op: Op, side: str) -> str | None:
        """The Authorization header the operation's token kind stands for."""
        account = self.account(op.actor)
        user_id = account.ids.get(side, UNKNOWN_ID)
        issuer = self.issuer
        kind = op.token
        if kind == "missing":
            return None
        if kind == "bad-scheme":
            return "bearer " + issuer.access(str(user_id))
        if kind == "bearer-empty":
            return "Bearer"
        if kind == "malformed":
            return "Bearer abc"
        if kind == "malformed-dots":
            return "Bearer a.b.c"
        stored = {"access": account.access, "refresh": account.refresh}.get(kind)
        if stored is not None:
            if side in stored:
                return "Bearer " + stored[side]
            kind = "minted-" + kind
        if kind == "minted-access":
            token = issuer.access(str(user_id), is_admin=account.is_admin)
        elif kind == "minted-refresh":
            token = issuer.refresh(str(user_id))
        elif kind == "claims-admin":
            token = issuer.access(str(user_id), is_admin=True)
        elif kind == "expired-access":
            token = issuer.access(str(user_id), expires_delta=timedelta(seconds=-60))
        elif kind == "expired-refresh":
            token = issuer.refresh(str(user_id), expires_delta=timedelta(seconds=-60))
        elif kind == "wrong-key":
            token = self.wrong_issuer.access(str(user_id))
        elif kind == "alg-none":
            token = alg_none(issuer.access(str(user_id)))
        elif kind == "int-sub":
            token = FlaskIssuer(JWT_KEY, string_identity=False).access(user_id)
        elif kind == "text-sub":
            token = issuer.access("not-a-number")
        elif kind == "unknown-user":
            token = issuer.access(str(UNKNOWN_ID))
        else:
            raise ValueError(f"unknown token kind {kind}")
        return "Bearer " + token

    def target_id(self, op: Op, side: str) -> str:
        if isinstance(op.target, str):
            return op.target
        return str(self.account(op.target).ids.get(side, UNKNOWN_ID))

    def request(self, op: Op, side: str) -> Request:
        headers: dict[str, str] = {}
        if op.name not in ("register", "login"):
            authorization = self.token(op, side)
            if authorization is not None:
                headers["Authorization"] = authorization
        body: bytes | None = None
        if op.name in ("register", "login", "patch"):
            headers, body = encode_body(op.args[0], op.args[1], headers)
        if op.name == "register":
            return Request("POST", f"{API}/users", headers, body)
        if op.name == "login":
            return Request("POST", f"{API}/auth/login", headers, body)
        if op.name == "refresh":
            return Request("POST", f"{API}/auth/refresh", headers)
        if op.name == "logout":
            return Request("POST", f"{API}/auth/logout", headers)
        if op.name == "me":
            return Request("GET", f"{API}/users/me", headers)
        if op.name == "list":
            query = "&".join(f"{k}={v}" for k, v in op.args if v is not None)
            return Request(
                "GET", f"{API}/users" + (f"?{query}" if query else ""), headers
            )
        user = f"{API}/users/{self.target_id(op, side)}"
        if op.name == "get":
            return Request("GET", user, headers)
        if op.name == "patch":
            return Request("PATCH", user, headers, body)
        if op.name == "delete":
            return Request("DELETE", user, headers)
        raise ValueError(op.name)


def encode_body(
    value: Any, encoding: str, headers: dict[str, str]
) -> tuple[dict[str, str], bytes | None]:
    """The body as a client would send it: JSON, broken JSON, or not JSON at all."""
    headers = dict(headers)
    if encoding == "json":
        headers["Content-Type"] = "application/json"
        return headers, json.dumps(value).encode()
    if encoding == "json-charset":
        headers["Content-Type"] = "application/json; charset=utf-8"
        return headers, json.dumps(value).encode()
    if encoding == "malformed":
        headers["Content-Type"] = "application/json"
        return headers, json.dumps(value).encode()[:-1] + b",,"
    if encoding == "empty":
        headers["Content-Type"] = "application/json"
        return headers, b""
    if encoding == "text":
        headers["Content-Type"] = "text/plain"
        return headers, json.dumps(value).encode()
    if encoding == "form":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return headers, b"email=a%40b.c&password=x"
    if encoding == "none":
        return headers, json.dumps(value).encode()
    raise ValueError(encoding)
