"""A client session against the API, step by step, on httpx.

    pip install httpx          # or use .venv/bin/python: httpx is in the dev group
    make run                   # in another terminal: the service, demo accounts
    python examples/client.py  # --base-url http://host:port --email E --password P

It logs in, reads a paginated list, refreshes the access token, looks at and
revokes sessions, logs out, and shows how each kind of error looks. It exits
non-zero at the first answer that is not what the API promises.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any

import httpx


class ApiError(Exception):
    """A 4xx/5xx answer: every error body is JSON with an "error" message."""

    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        try:
            self.body: dict[str, Any] = response.json()
        except ValueError:
            self.body = {"error": response.text}
        # Validation errors name the field: {"errors": {"email": ["..."]}}.
        self.fields: dict[str, list[str]] = self.body.get("errors", {})
        # 429 says when to try again.
        self.retry_after = response.headers.get("Retry-After")
        super().__init__(f"{self.status}: {self.body.get('error')}")


class Client:
    """One login: an access token for requests and a refresh token to renew it."""

    def __init__(self, base_url: str, user_agent: str = "examples/client.py") -> None:
        self.http = httpx.Client(
            base_url=f"{base_url.rstrip('/')}/api/v1",
            headers={"User-Agent": user_agent},
            timeout=10,
        )
        self.access_token: str | None = None
        self.refresh_token: str | None = None

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = kwargs.pop("headers", {})
        if self.access_token is not None:
            headers["Authorization"] = f"Bearer {self.access_token}"
        response = self.http.request(method, path, headers=headers, **kwargs)
        if response.is_error:
            raise ApiError(response)
        return response.json() if response.content else None

    def login(self, email: str, password: str) -> None:
        tokens = self.request(
            "POST", "/auth/login", json={"email": email, "password": password}
        )
        self.access_token = tokens["access_token"]
        self.refresh_token = tokens["refresh_token"]

    def refresh(self) -> None:
        """A new access token; the refresh token stays (unless rotation is on)."""
        response = self.http.post(
            "/auth/refresh",
            headers={"Authorization": f"Bearer {self.refresh_token}"},
        )
        if response.is_error:
            raise ApiError(response)
        tokens = response.json()
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
            if body["page"] >= body["pages"]:
                return
            page += 1


def expect_error(status: int, call: Any, *args: Any, **kwargs: Any) -> ApiError:
    try:
        call(*args, **kwargs)
    except ApiError as error:
        if error.status != status:
            raise
        return error
    raise SystemExit(f"expected {status}, the call succeeded")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--email", default="admin@example.com")
    parser.add_argument("--password", default="admin123")
    args = parser.parse_args(argv)

    laptop = Client(args.base_url, user_agent="example laptop")
    phone = Client(args.base_url, user_agent="example phone")
    try:
        # Log in and read who we are.
        laptop.login(args.email, args.password)
        me = laptop.request("GET", "/users/me")
        print(f"logged in as {me['email']} (id {me['id']}, admin: {me['is_admin']})")

        # Pagination: follow page/pages until the last page.
        emails = [user["email"] for user in laptop.pages("/users", "users")]
        print(f"{len(emails)} active users, 2 per page: {', '.join(emails)}")

        # Refresh: a new access token from the refresh token.
        old = laptop.access_token
        laptop.refresh()
        if laptop.access_token == old:
            raise SystemExit("refresh returned the same access token")
        print("refreshed the access token")

        # Sessions: a second login is a second session; revoke it from the first.
        phone.login(args.email, args.password)
        sessions = laptop.request("GET", "/auth/sessions")["sessions"]
        current = next(s for s in sessions if s["current"])
        print(f"{len(sessions)} live sessions; this one: {current['user_agent']}")
        for other in sessions:
            if other["user_agent"] == "example phone":
                laptop.request("DELETE", f"/auth/sessions/{other['id']}")
        revoked = expect_error(401, phone.request, "GET", "/users/me")
        print(f"the phone's session is revoked: {revoked.body['error']!r}")

        # Errors are JSON with "error"; validation errors name the field.
        stranger = Client(args.base_url)
        try:
            wrong = expect_error(401, stranger.login, args.email, "wrong password")
        finally:
            stranger.close()
        print(f"wrong password: {wrong.status} {wrong.body['error']!r}")
        invalid = expect_error(
            400, laptop.request, "POST", "/users", json={"email": "not an email"}
        )
        print(
            f"invalid registration: {invalid.status}, fields {sorted(invalid.fields)}"
        )
        missing = expect_error(404, laptop.request, "GET", "/users/999999999")
        print(f"unknown user: {missing.status} {missing.body['error']!r}")

        # Logout revokes the access token and the refresh token of this login.
        laptop.logout()
        after = expect_error(401, laptop.request, "GET", "/users/me")
        expect_error(401, laptop.refresh)
        print(f"logged out; the old tokens answer {after.status} {after.body['msg']!r}")
    except ApiError as error:
        print(f"unexpected answer: {error}", file=sys.stderr)
        return 1
    except httpx.TransportError as error:
        # Nothing answered (refused, timed out): not an API error, no body.
        print(f"cannot reach {args.base_url}: {error}", file=sys.stderr)
        return 2
    finally:
        laptop.close()
        phone.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
