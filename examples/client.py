"""A client session against the API, step by step, on the standard library alone.

    make run 2>&1 | tee service.log     # in another terminal: the service
    python3 examples/client.py --base-url http://127.0.0.1:8000 --log service.log

It registers an account of its own, logs in, reads /users/me, follows a paginated
list, publishes a post, refreshes the access token, looks at and revokes sessions,
shows how each kind of error looks, changes the password, resets it with the
token from the development log (--log: the file holding the service's output;
without it that step is skipped), and logs out. It exits 1 at the first answer
that is not what the API promises, 2 when nothing answers. docs/client.md
explains each step.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# A reset link's token (a JWT) in the service's log line for the mail.
RESET_TOKEN = re.compile(r"token=([A-Za-z0-9._-]+)")


class ApiError(Exception):
    """A 4xx/5xx answer: every error body is JSON with an "error" message."""

    def __init__(self, status: int, body: bytes, headers: Any) -> None:
        self.status = status
        try:
            self.body: dict[str, Any] = json.loads(body)
        except ValueError:
            self.body = {"error": body.decode(errors="replace")}
        # Validation errors name the field: {"errors": {"email": ["..."]}}.
        self.fields: dict[str, list[str]] = self.body.get("errors", {})
        # 429 and 503 say when to try again.
        self.retry_after = headers.get("Retry-After")
        super().__init__(f"{self.status}: {self.body.get('error')}")


class UnreachableError(Exception):
    """Nothing answered (refused, timed out): not an API error, no body."""


class Client:
    """One login: an access token for requests and a refresh token to renew it."""

    def __init__(self, base_url: str, user_agent: str = "examples/client.py") -> None:
        self.api = f"{base_url.rstrip('/')}/api/v1"
        self.user_agent = user_agent
        self.access_token: str | None = None
        self.refresh_token: str | None = None

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        url = self.api + path
        if params:
            url += "?" + "&".join(f"{key}={value}" for key, value in params.items())
        headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(  # noqa: S310 (the URL the user gave)
            url, data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                content = response.read()
        except urllib.error.HTTPError as error:
            raise ApiError(error.code, error.read(), error.headers) from None
        except OSError as error:
            raise UnreachableError(str(error)) from None
        return json.loads(content) if content else None

    def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        """A request with this login's access token."""
        return self.call(method, path, body, token=self.access_token, **kwargs)

    def login(self, email: str, password: str) -> None:
        tokens = self.call(
            "POST", "/auth/login", {"email": email, "password": password}
        )
        self.access_token = tokens["access_token"]
        self.refresh_token = tokens["refresh_token"]

    def refresh(self) -> None:
        """A new access token; the refresh token stays (unless rotation is on)."""
        tokens = self.call("POST", "/auth/refresh", token=self.refresh_token)
        self.access_token = tokens["access_token"]
        # With REFRESH_TOKEN_ROTATION=true each refresh also returns a new one.
        self.refresh_token = tokens.get("refresh_token", self.refresh_token)

    def logout(self) -> None:
        self.request("POST", "/auth/logout")

    def pages(self, path: str, items: str, per_page: int = 2) -> Iterator[Any]:
        """Every item of a list, one page after another (newest first)."""
        page = 1
        while True:
            body = self.request(
                "GET", path, params={"page": page, "per_page": per_page}
            )
            yield from body[items]
            # The answer says which page it gave: follow it, not the request.
            if body["page"] >= body["pages"]:
                return
            page = body["page"] + 1


def expect_error(status: int, call: Any, *args: Any, **kwargs: Any) -> ApiError:
    try:
        call(*args, **kwargs)
    except ApiError as error:
        if error.status != status:
            raise
        return error
    raise ApiError(0, f'{{"error": "expected {status}, it succeeded"}}'.encode(), {})


def reset_token_from_log(log: Path, email: str, after: int) -> str:
    """The token of the newest reset mail to `email` logged past byte `after`.

    The mail is sent after the answer (a background task): wait up to 10 s.
    """
    deadline = time.monotonic() + 10
    while True:
        with log.open("rb") as file:
            file.seek(after)
            lines = file.read().decode(errors="replace").splitlines()
        # Notices (of the password change, say) go to the same address, linkless.
        links = [
            found[-1]
            for line in lines
            if f"mail to {email}" in line and (found := RESET_TOKEN.findall(line))
        ]
        if links:
            return str(links[-1])
        if time.monotonic() > deadline:
            raise SystemExit(
                f"no reset mail to {email} in {log}: is the service's output going "
                "there, with LOG_LEVEL=INFO and no SMTP_URL?"
            )
        time.sleep(0.2)


def tour(base_url: str, log: Path | None) -> None:
    # An account of its own: the tour can run any number of times.
    email = f"tour-{secrets.token_hex(4)}@example.com"
    password = f"first {secrets.token_urlsafe(12)}"
    laptop = Client(base_url, user_agent="example laptop")
    phone = Client(base_url, user_agent="example phone")

    # Register (open to anyone), log in and read who we are.
    new = laptop.call(
        "POST",
        "/users",
        {
            "email": email,
            "password": password,
            "first_name": "Ada",
            "last_name": "Tour",
        },
    )
    print(f"registered {new['email']} (id {new['id']})")
    laptop.login(email, password)
    me = laptop.request("GET", "/users/me")
    print(f"logged in as {me['email']} (id {me['id']}, admin: {me['is_admin']})")

    # Pagination: follow page/pages until the last page.
    emails = [user["email"] for user in laptop.pages("/users", "users")]
    print(f"{len(emails)} active users, 2 per page, newest first: {emails[0]}, ...")

    # Posts: publish one, find it on the author's own list.
    post = laptop.request(
        "POST", "/posts", {"title": "Notes", "content": "On the Analytical Engine"}
    )
    mine = list(laptop.pages(f"/users/{me['id']}/posts", "posts"))
    print(f"published post {post['id']}; {len(mine)} on {me['full_name']}'s list")

    # Refresh: a new access token from the refresh token.
    old = laptop.access_token
    laptop.refresh()
    if laptop.access_token == old:
        raise SystemExit("refresh returned the same access token")
    print("refreshed the access token")

    # Sessions: a second login is a second session; revoke it from the first.
    phone.login(email, password)
    sessions = laptop.request("GET", "/auth/sessions")["sessions"]
    current = next(s for s in sessions if s["current"])
    print(f"{len(sessions)} live sessions; this one: {current['user_agent']}")
    for other in sessions:
        if other["user_agent"] == "example phone":
            laptop.request("DELETE", f"/auth/sessions/{other['id']}")
    revoked = expect_error(401, phone.request, "GET", "/users/me")
    print(f"the phone's session is revoked: {revoked.body['error']!r}")

    # Errors are JSON with "error"; validation errors name the field.
    stranger = Client(base_url)
    wrong = expect_error(401, stranger.login, email, "wrong password")
    print(f"wrong password: {wrong.status} {wrong.body['error']!r}")
    invalid = expect_error(400, laptop.request, "POST", "/users", {"email": "x"})
    print(f"invalid registration: {invalid.status}, fields {sorted(invalid.fields)}")
    missing = expect_error(404, laptop.request, "GET", "/users/999999999")
    print(f"unknown user: {missing.status} {missing.body['error']!r}")

    # A password change ends every session, this one included: log in again.
    changed = f"second {secrets.token_urlsafe(12)}"
    laptop.request(
        "POST",
        "/auth/password",
        {"current_password": password, "new_password": changed},
    )
    ended = expect_error(401, laptop.request, "GET", "/users/me")
    laptop.login(email, changed)
    print(f"password changed; the old tokens answer {ended.status}, logged in again")

    # The reset flow: in development the mail, link and token, is in the log.
    if log is None:
        print("reset skipped: --log names the file with the service's output")
    else:
        start = log.stat().st_size
        stranger.call("POST", "/auth/password/forgot", {"email": email})
        token = reset_token_from_log(log, email, start)
        reset = f"third {secrets.token_urlsafe(12)}"
        stranger.call(
            "POST", "/auth/password/reset", {"token": token, "new_password": reset}
        )
        expect_error(401, laptop.request, "GET", "/users/me")
        laptop.login(email, reset)
        print(f"reset the password with the token from {log.name}; logged in again")

    # Logout revokes the access token and the refresh token of this login.
    laptop.logout()
    after = expect_error(401, laptop.request, "GET", "/users/me")
    expect_error(401, laptop.refresh)
    print(f"logged out; the old tokens answer {after.status} {after.body['msg']!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--base-url",
        default="http://127.0.0.1:8000",
        help="where the service answers (make run PORT=...: that port)",
    )
    parser.add_argument(
        "--log",
        type=Path,
        help="the file with the service's output, for the reset step's token",
    )
    args = parser.parse_args(argv)
    try:
        tour(args.base_url, args.log)
    except ApiError as error:
        print(f"unexpected answer: {error}", file=sys.stderr)
        return 1
    except UnreachableError as error:
        print(f"cannot reach {args.base_url}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
