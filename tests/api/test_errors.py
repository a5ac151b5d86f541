"""Error responses and the JSON wire format, against the Flask service's
observed answers (tests/parity/flask_original; docs/MIGRATING.md, section 6)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from quart.wrappers import Response
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.models import User
from tests.api.test_users import patch_own_record
from tests.factories import at, login_headers, make_user
from tests.support import (
    API,
    BAD_REQUEST,
    NOT_JSON,
    ROUTE_NOT_FOUND,
    TOO_LARGE,
    cases,
    send,
)

METHOD_NOT_ALLOWED = {"error": "The method is not allowed for the requested URL."}
MAX_CONTENT_LENGTH = 1024 * 1024
NEW_USER = {
    "email": "new@example.com",
    "password": "password123",
    "first_name": "New",
    "last_name": "Person",
}


def allowed(header: str) -> set[str]:
    return {method.strip() for method in header.split(",")}


async def body_target(
    target: str, session: AsyncSession, settings: Settings
) -> tuple[str, dict[str, str]]:
    """A route that reads a JSON body, and the headers that get it past auth."""
    if target == "patch":
        me = await make_user(session)
        return f"{API}/users/{me.id}", await login_headers(session, settings, me)
    return {"register": f"{API}/users", "login": f"{API}/auth/login"}[target], {}


BODY_ROUTES = ["register", "patch", "login"]


async def send_body(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    target: str,
    data: str | bytes,
    content_type: str | None = "application/json",
) -> Response:
    """`data` as the body of a request to the `target` route (no Content-Type
    header when `content_type` is None)."""
    path, headers = await body_target(target, session, settings)
    if content_type is not None:
        headers["Content-Type"] = content_type
    method = "PATCH" if target == "patch" else "POST"
    return await send(client, method, path, data=data, headers=headers)


# --- Routing ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/",
        f"{API}/nope",
        f"{API}",
        f"{API}/",
        "/users",
        f"{API}/users/",
        f"{API}/users/abc",
        f"{API}/users/-1",
        f"{API}/auth",
    ],
)
async def test_unknown_route_returns_404_json(client: Client, path: str) -> None:
    response = await client.get(path)

    assert response.status_code == 404
    assert await response.get_json() == ROUTE_NOT_FOUND


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/users/1", {"GET", "HEAD", "OPTIONS", "PATCH", "DELETE"}),
        ("DELETE", "/users", {"GET", "HEAD", "OPTIONS", "POST"}),
        ("GET", "/auth/login", {"OPTIONS", "POST"}),
        ("PATCH", "/users/me", {"GET", "HEAD", "OPTIONS"}),
        ("POST", "/users/1", {"GET", "HEAD", "OPTIONS", "PATCH", "DELETE"}),
        ("GET", "/auth/logout", {"OPTIONS", "POST"}),
    ],
)
async def test_wrong_method_returns_405_with_allow(
    client: Client, method: str, path: str, allow: set[str]
) -> None:
    response = await send(client, method, f"{API}{path}")

    assert response.status_code == 405
    assert await response.get_json() == METHOD_NOT_ALLOWED
    assert allowed(response.headers["Allow"]) == allow


async def test_wrong_method_with_token_still_405(
    client: Client, user: User, user_headers: dict[str, str]
) -> None:
    response = await client.put(
        f"{API}/users/{user.id}", json={"first_name": "X"}, headers=user_headers
    )

    assert response.status_code == 405
    assert await response.get_json() == METHOD_NOT_ALLOWED


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/users", {"GET", "HEAD", "OPTIONS", "POST"}),
        ("/users/1", {"GET", "HEAD", "OPTIONS", "PATCH", "DELETE"}),
        ("/users/me", {"GET", "HEAD", "OPTIONS"}),
        ("/auth/login", {"OPTIONS", "POST"}),
        ("/auth/logout", {"OPTIONS", "POST"}),
    ],
)
async def test_options_without_token_returns_200_empty_with_allow(
    client: Client, path: str, allow: set[str]
) -> None:
    response = await client.options(f"{API}{path}")

    assert response.status_code == 200
    assert await response.get_data() == b""
    assert allowed(response.headers["Allow"]) == allow


@pytest.mark.parametrize("path", ["/users", "/users/me", "/users/1"])
async def test_head_without_token_returns_401(client: Client, path: str) -> None:
    response = await client.head(f"{API}{path}")

    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"


async def test_head_with_token_returns_200(
    client: Client, user: User, user_headers: dict[str, str]
) -> None:
    # Hypercorn drops a HEAD response's body; the app-level client still sees it.
    response = await client.head(f"{API}/users/{user.id}", headers=user_headers)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"


# --- Bodies ----------------------------------------------------------------

MALFORMED = {
    "malformed": "{not json",
    "empty": "",
    "trailing-comma": '{"email": "a@example.com",}',
    "single-quotes": "{'email': 'a@example.com'}",
    "garbage": "NaN-ish",
    "two-documents": '{"a": 1} {"b": 2}',
}
NOT_JSON_TYPES = {
    "none": None,
    "text-plain": "text/plain",
    "form": "application/x-www-form-urlencoded",
    "multipart": "multipart/form-data; boundary=x",
    "jsonp": "application/jsonp",
    "text-json": "text/json",
}


@pytest.mark.parametrize("target", BODY_ROUTES)
@cases("data", MALFORMED)
async def test_malformed_json_body_returns_400(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    target: str,
    data: str,
) -> None:
    response = await send_body(client, session, settings, target, data)

    assert response.status_code == 400
    assert await response.get_json() == BAD_REQUEST


@pytest.mark.parametrize("target", BODY_ROUTES)
@cases("content_type", NOT_JSON_TYPES)
async def test_non_json_content_type_returns_415(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    target: str,
    content_type: str | None,
) -> None:
    response = await send_body(
        client, session, settings, target, json.dumps(NEW_USER), content_type
    )

    assert response.status_code == 415
    assert await response.get_json() == NOT_JSON


async def test_form_body_returns_415(client: Client) -> None:
    response = await client.post(f"{API}/users", form=NEW_USER)

    assert response.status_code == 415
    assert await response.get_json() == NOT_JSON


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "Application/JSON",
        "application/merge-patch+json",
        "application/vnd.api+json",
    ],
)
async def test_json_content_type_variants_are_accepted_for_register(
    client: Client, content_type: str
) -> None:
    response = await client.post(
        f"{API}/users",
        data=json.dumps(NEW_USER),
        headers={"Content-Type": content_type},
    )

    assert response.status_code == 201


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/merge-patch+json"]
)
async def test_json_content_type_variants_are_accepted_for_patch(
    client: Client, session: AsyncSession, settings: Settings, content_type: str
) -> None:
    response = await patch_own_record(
        client,
        session,
        settings,
        json.dumps({"first_name": "Merged"}),
        {"Content-Type": content_type},
    )

    assert response.status_code == 200
    assert (await response.get_json())["first_name"] == "Merged"


@pytest.mark.parametrize("target", BODY_ROUTES)
@pytest.mark.parametrize(
    "data",
    [
        # Nested past what a parser's recursion allows.
        pytest.param("[" * 100_000, id="unclosed"),
        pytest.param("[" * 100_000 + "]" * 100_000, id="closed"),
        pytest.param('{"a":' * 50_000 + "1" + "}" * 50_000, id="objects"),
        # Not UTF-8.
        pytest.param(b'{"email": "\xff@example.com"}', id="0xff"),
        pytest.param(b'{"first_name": "\xc3"}', id="truncated-sequence"),
        pytest.param(b'{"first_name": "\xed\xa0\x80"}', id="encoded-surrogate"),
        pytest.param(b'{"first_name": "\xc0\xaf"}', id="overlong"),
    ],
)
async def test_unreadable_json_body_returns_400(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    target: str,
    data: str | bytes,
) -> None:
    response = await send_body(client, session, settings, target, data)

    assert response.status_code == 400
    assert response.content_type == "application/json"
    assert "error" in await response.get_json()


@pytest.mark.parametrize("target", BODY_ROUTES)
async def test_body_over_1_mib_returns_413(
    client: Client, session: AsyncSession, settings: Settings, target: str
) -> None:
    padding = "x" * MAX_CONTENT_LENGTH
    data = json.dumps({**NEW_USER, "first_name": padding})

    response = await send_body(client, session, settings, target, data)

    assert response.status_code == 413
    assert await response.get_json() == TOO_LARGE


async def test_body_just_under_limit_is_read(client: Client) -> None:
    # Parsed, then rejected by validation rather than by size.
    data = json.dumps({**NEW_USER, "first_name": ""})
    data = data[:-1] + " " * (MAX_CONTENT_LENGTH - len(data)) + "}"
    assert len(data) == MAX_CONTENT_LENGTH

    response = await client.post(
        f"{API}/users", data=data, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert await response.get_json() == {
        "error": "Validation failed",
        "errors": {"first_name": ["Length must be between 1 and 100."]},
    }


# --- Wire format -----------------------------------------------------------


async def test_user_body_is_compact_sorted_ascii_with_newline(
    client: Client, session: AsyncSession, user_headers: dict[str, str]
) -> None:
    other = await make_user(
        session,
        email="zoe@example.com",
        first_name="Zoë",
        last_name="Ångström☃",
        created_at=at("2024-05-06T07:08:09.123456"),
        updated_at=at("2024-05-06T07:08:09"),
    )

    response = await client.get(f"{API}/users/{other.id}", headers=user_headers)

    assert response.headers["Content-Type"] == "application/json"
    assert await response.get_data() == (
        b'{"created_at":"2024-05-06T07:08:09.123456","email":"zoe@example.com",'
        b'"first_name":"Zo\\u00eb","full_name":"Zo\\u00eb \\u00c5ngstr\\u00f6m\\u2603",'
        b'"id":' + str(other.id).encode() + b',"is_active":true,"is_admin":false,'
        b'"last_name":"\\u00c5ngstr\\u00f6m\\u2603","updated_at":"2024-05-06T07:08:09"}\n'
    )


async def test_page_body_is_compact_sorted_with_newline(
    client: Client, session: AsyncSession, settings: Settings
) -> None:
    me = await make_user(session)

    response = await client.get(
        f"{API}/users",
        headers=await login_headers(session, settings, me),
        query_string={"page": 3, "per_page": 1},
    )

    assert response.headers["Content-Type"] == "application/json"
    assert await response.get_data() == (
        b'{"page":3,"pages":1,"per_page":1,"total":1,"users":[]}\n'
    )


@pytest.mark.parametrize(
    ("kwargs", "raw"),
    [
        pytest.param(
            {"method": "GET", "path": f"{API}/users/99999"},
            b'{"error":"User with id 99999 not found"}\n',
            id="404",
        ),
        pytest.param(
            {"method": "POST", "path": f"{API}/users", "json": {"zeta": 1, "alpha": 2}},
            b'{"error":"Validation failed","errors":{"alpha":["Unknown field."],'
            b'"email":["Missing data for required field."],'
            b'"first_name":["Missing data for required field."],'
            b'"last_name":["Missing data for required field."],'
            b'"password":["Missing data for required field."],'
            b'"zeta":["Unknown field."]}}\n',
            id="validation",
        ),
        pytest.param(
            {"method": "GET", "path": f"{API}/nope"},
            b'{"error":"The requested URL was not found on the server. If you '
            b'entered the URL manually please check your spelling and try again."}\n',
            id="route-404",
        ),
    ],
)
async def test_error_body_wire_format(
    client: Client, user_headers: dict[str, str], kwargs: dict[str, Any], raw: bytes
) -> None:
    response = await send(client, headers=user_headers, **kwargs)

    assert response.headers["Content-Type"] == "application/json"
    assert await response.get_data() == raw


async def test_register_response_content_type_is_exactly_json(client: Client) -> None:
    response = await client.post(f"{API}/users", json=NEW_USER)

    assert response.status_code == 201
    assert response.headers["Content-Type"] == "application/json"
    assert (await response.get_data(as_text=True)).endswith("}\n")


# --- Every error is JSON ---------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        pytest.param("GET", "/", {}, 404, id="root"),
        pytest.param("GET", f"{API}/users/abc", {}, 404, id="route-404"),
        pytest.param("GET", f"{API}/users/99999", {"auth": True}, 404, id="user-404"),
        pytest.param("PUT", f"{API}/users/1", {}, 405, id="405"),
        pytest.param("GET", f"{API}/users", {}, 401, id="401"),
        pytest.param("GET", f"{API}/users/me", {"bearer": "abc"}, 422, id="422"),
        pytest.param("DELETE", f"{API}/users/1", {"auth": True}, 403, id="403-admin"),
        pytest.param(
            "PATCH", f"{API}/users/99999", {"auth": True}, 403, id="403-not-self"
        ),
        pytest.param("POST", f"{API}/users", {"json": {}}, 400, id="400-validation"),
        pytest.param(
            "POST",
            f"{API}/users",
            {"data": "{", "headers": {"Content-Type": "application/json"}},
            400,
            id="400-malformed",
        ),
        pytest.param("POST", f"{API}/users", {"data": "x"}, 415, id="415"),
        pytest.param(
            "POST",
            f"{API}/auth/login",
            {"json": {"email": "nobody@example.com", "password": "wrong"}},
            401,
            id="401-login",
        ),
        pytest.param(
            "POST",
            f"{API}/users",
            {
                "data": "x" * (MAX_CONTENT_LENGTH + 1),
                "headers": {"Content-Type": "application/json"},
            },
            413,
            id="413",
        ),
    ],
)
async def test_error_responses_are_json(
    client: Client,
    user_headers: dict[str, str],
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    headers = dict(kwargs.pop("headers", {}))
    if kwargs.pop("auth", False):
        headers.update(user_headers)
    if bearer := kwargs.pop("bearer", None):
        headers["Authorization"] = f"Bearer {bearer}"

    response = await send(client, method, path, headers=headers, **kwargs)

    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    body = await response.get_json()
    assert isinstance(body, dict)
    assert isinstance(body["error"], str)
    assert body["error"]
