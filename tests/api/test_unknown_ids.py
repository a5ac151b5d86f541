"""Ids that name nothing and paths that are no route: 404 with the Flask service's
body on every resource (403 where the caller may not even ask)."""

from __future__ import annotations

from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from tests.support import POSTS, ROUTE_NOT_FOUND, SESSIONS, USERS, cases, send

NOT_AUTHORIZED = {"error": "Not authorized"}
SESSION_NOT_FOUND = {"error": "Session not found"}


def missing(what: str, number: object) -> dict[str, str]:
    return {"error": f"{what} with id {number} not found"}


# id -> (method, path, caller, body, status, answer)
UNKNOWN: dict[str, tuple[str, str, str, Any, int, Any]] = {}
for user_id in ["99999", "0", "2147483648", "99999999999", "9" * 25]:
    UNKNOWN[f"get-user-{user_id}"] = (
        "GET",
        f"{USERS}/{user_id}",
        "user",
        None,
        404,
        missing("User", user_id),
    )
for path in ["/abc", "/-1", "/", "/1.5", "/1/", "/" + "9" * 5000, "/me/"]:
    UNKNOWN[f"get-user-route{path[:12]}"] = (
        "GET",
        f"{USERS}{path}",
        "user",
        None,
        404,
        ROUTE_NOT_FOUND,
    )
# Only an admin learns whether the user exists.
UNKNOWN["patch-user-99999-as-user"] = (
    "PATCH",
    f"{USERS}/99999",
    "user",
    {"first_name": "X"},
    403,
    NOT_AUTHORIZED,
)
for user_id in ["99999", "99999999999"]:
    UNKNOWN[f"patch-user-{user_id}"] = (
        "PATCH",
        f"{USERS}/{user_id}",
        "admin",
        {"first_name": "X"},
        404,
        missing("User", user_id),
    )
for user_id in ["99999", "99999999999", "9" * 25]:
    UNKNOWN[f"delete-user-{user_id}"] = (
        "DELETE",
        f"{USERS}/{user_id}",
        "admin",
        None,
        404,
        missing("User", user_id),
    )
for number in [0, 999999999, 2**31]:
    UNKNOWN[f"list-posts-of-user-{number}"] = (
        "GET",
        f"{USERS}/{number}/posts",
        "user",
        None,
        404,
        missing("User", number),
    )
for number in [0, 999999999, 2**31, 10**30]:
    UNKNOWN[f"restore-user-{number}"] = (
        "POST",
        f"{USERS}/{number}/restore",
        "admin",
        None,
        404,
        missing("Deleted user", number),
    )
    UNKNOWN[f"get-post-{number}"] = (
        "GET",
        f"{POSTS}/{number}",
        "user",
        None,
        404,
        missing("Post", number),
    )
UNKNOWN["patch-post-999999999"] = (
    "PATCH",
    f"{POSTS}/999999999",
    "user",
    {"title": "x"},
    404,
    missing("Post", 999999999),
)
UNKNOWN["delete-post-999999999"] = (
    "DELETE",
    f"{POSTS}/999999999",
    "admin",
    None,
    404,
    missing("Post", 999999999),
)
for name, session_id in [
    ("uuid", "3f0e2a6c-4b1d-4c8e-9a7f-2d5b8c1e6f90"),
    ("word", "not-a-uuid"),
    ("long", "x" * 100),
]:
    UNKNOWN[f"revoke-session-{name}"] = (
        "DELETE",
        f"{SESSIONS}/{session_id}",
        "user",
        None,
        404,
        SESSION_NOT_FOUND,
    )


@pytest.fixture
def callers(
    user_headers: dict[str, str], admin_headers: dict[str, str]
) -> dict[str, dict[str, str]]:
    return {"user": user_headers, "admin": admin_headers}


@cases("method, path, caller, body, status, answer", UNKNOWN)
async def test_unknown_id_answers_404(
    client: Client,
    callers: dict[str, dict[str, str]],
    method: str,
    path: str,
    caller: str,
    body: Any,
    status: int,
    answer: Any,
) -> None:
    headers = callers[caller]
    sent: dict[str, Any] = {} if body is None else {"json": body}

    response = await send(client, method, path, headers=headers, **sent)

    assert response.status_code == status
    assert await response.get_json() == answer
