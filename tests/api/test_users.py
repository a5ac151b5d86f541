"""The /users endpoints against the OpenAPI document and the Flask service's
observed answers."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from quart.wrappers import Response
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.models import User
from tests.factories import (
    at,
    flask_headers_for,
    login_headers,
    make_user,
    make_users,
    utcnow,
)
from tests.support import (
    BAD_REQUEST,
    MISSING,
    NOT_JSON,
    USERS,
    AppMaker,
    page_json,
    registration,
    user_json,
)

USER_KEYS = {
    "created_at",
    "email",
    "first_name",
    "full_name",
    "id",
    "is_active",
    "is_admin",
    "last_name",
    "updated_at",
}
JSON = {"Content-Type": "application/json"}
NAIVE_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?$")
NAME_LENGTH = ["Length must be between 1 and 100."]
PASSWORD_LENGTH = ["Length must be between 8 and 128."]
NOT_NULL = ["Field may not be null."]
NOT_STRING = ["Not a valid string."]
NOT_EMAIL = ["Not a valid email address."]
UNKNOWN = ["Unknown field."]
# 64 + 1 + 190: the longest address the VARCHAR(255) column holds.
EMAIL_255 = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 58 + ".com"


def invalid(**errors: list[str]) -> dict[str, Any]:
    return {"error": "Validation failed", "errors": errors}


def not_found(user_id: int | str) -> dict[str, str]:
    return {"error": f"User with id {user_id} not found"}


async def patch_own_record(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    data: str,
    headers: Mapping[str, str] = JSON,
) -> Response:
    """A new user's PATCH of its own record with the raw body `data`."""
    me = await make_user(session)
    return await client.patch(
        f"{USERS}/{me.id}",
        data=data,
        headers={**headers, **await login_headers(session, settings, me)},
    )


def new_user(**overrides: Any) -> dict[str, Any]:
    """A registration, any field replaced by any value (invalid ones too)."""
    return {**registration("new@example.com", last_name="Person"), **overrides}


def raw_json(payload: Any) -> dict[str, Any]:
    # ensure_ascii keeps a lone surrogate as the escape "\ud800" on the wire.
    return {
        "data": json.dumps(payload),
        "headers": {"Content-Type": "application/json"},
    }


@pytest.fixture
async def stateless_client(make_app: AppMaker) -> AsyncIterator[Client]:
    """REVOCATION_CHECK off: tokens are trusted without a database look-up, as in
    Flask, so a view can meet a caller whose row is gone."""
    async with make_app(revocation_check=False) as app:
        yield app.test_client()


# --- POST /users -----------------------------------------------------------


async def test_create_user_valid_body_returns_201_user(client: Client) -> None:
    response = await client.post(USERS, json=new_user())

    assert response.status_code == 201
    body = await response.get_json()
    assert set(body) == USER_KEYS
    assert isinstance(body["id"], int)
    assert {
        k: v for k, v in body.items() if k not in ("id", "created_at", "updated_at")
    } == {
        "email": "new@example.com",
        "first_name": "New",
        "full_name": "New Person",
        "is_active": True,
        "is_admin": False,
        "last_name": "Person",
    }


async def test_create_user_timestamps_are_naive_iso_strings(client: Client) -> None:
    response = await client.post(USERS, json=new_user())

    body = await response.get_json()
    for key in ("created_at", "updated_at"):
        assert NAIVE_ISO.match(body[key]), body[key]
        stamp = datetime.fromisoformat(body[key])
        assert stamp.tzinfo is None
        assert abs(stamp - utcnow()) < timedelta(minutes=1)


async def test_create_user_never_returns_password(client: Client) -> None:
    response = await client.post(USERS, json=new_user(password="s3cret-passw0rd"))

    text = await response.get_data(as_text=True)
    assert response.status_code == 201
    assert "password" not in text
    assert "s3cret-passw0rd" not in text
    assert "deleted_at" not in text


async def test_create_user_keeps_email_case_as_registered(client: Client) -> None:
    response = await client.post(USERS, json=new_user(email="MiXed.Case@Example.COM"))

    assert response.status_code == 201
    assert (await response.get_json())["email"] == "MiXed.Case@Example.COM"


async def test_create_user_longest_allowed_values_returns_201(client: Client) -> None:
    payload = new_user(
        email=EMAIL_255,
        password="p" * 128,
        first_name="f" * 100,
        last_name="l" * 100,
    )

    response = await client.post(USERS, json=payload)

    assert response.status_code == 201
    assert (await response.get_json())["email"] == EMAIL_255


async def test_create_user_is_stored(client: Client, session: AsyncSession) -> None:
    response = await client.post(USERS, json=new_user())

    user = await session.get(User, (await response.get_json())["id"])
    assert user is not None
    assert (user.email, user.first_name, user.last_name) == (
        "new@example.com",
        "New",
        "Person",
    )
    assert user.password_hash != "password123"
    assert user.deleted_at is None


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        pytest.param(
            {},
            {
                "email": MISSING,
                "first_name": MISSING,
                "last_name": MISSING,
                "password": MISSING,
            },
            id="empty-object",
        ),
        pytest.param(
            {"email": "a@example.com", "password": "password123"},
            {"first_name": MISSING, "last_name": MISSING},
            id="names-missing",
        ),
        pytest.param(new_user(email="not-an-email"), {"email": NOT_EMAIL}, id="email"),
        pytest.param(new_user(email="a@"), {"email": NOT_EMAIL}, id="email-no-domain"),
        pytest.param(new_user(email=""), {"email": NOT_EMAIL}, id="email-empty"),
        pytest.param(
            new_user(password="x" * 7), {"password": PASSWORD_LENGTH}, id="pw-short"
        ),
        pytest.param(
            new_user(password="x" * 129), {"password": PASSWORD_LENGTH}, id="pw-long"
        ),
        pytest.param(
            new_user(first_name=""), {"first_name": NAME_LENGTH}, id="first-empty"
        ),
        pytest.param(
            new_user(first_name="f" * 101),
            {"first_name": NAME_LENGTH},
            id="first-long",
        ),
        pytest.param(
            new_user(last_name=""), {"last_name": NAME_LENGTH}, id="last-empty"
        ),
        pytest.param(
            new_user(last_name="l" * 101), {"last_name": NAME_LENGTH}, id="last-long"
        ),
        pytest.param(new_user(is_admin=True), {"is_admin": UNKNOWN}, id="is_admin"),
        pytest.param(
            new_user(is_active=False, id=7),
            {"is_active": UNKNOWN, "id": UNKNOWN},
            id="unknown-keys",
        ),
        pytest.param(new_user(email=None), {"email": NOT_NULL}, id="email-null"),
        pytest.param(new_user(password=None), {"password": NOT_NULL}, id="pw-null"),
        pytest.param(
            new_user(first_name=None), {"first_name": NOT_NULL}, id="first-null"
        ),
        pytest.param(new_user(last_name=None), {"last_name": NOT_NULL}, id="last-null"),
        pytest.param(new_user(email=123), {"email": NOT_EMAIL}, id="email-int"),
        pytest.param(
            new_user(password=12345678), {"password": NOT_STRING}, id="pw-int"
        ),
        pytest.param(
            new_user(first_name=["A"]), {"first_name": NOT_STRING}, id="first-list"
        ),
        pytest.param(
            new_user(last_name={"a": 1}), {"last_name": NOT_STRING}, id="last-dict"
        ),
        pytest.param(
            new_user(first_name=True), {"first_name": NOT_STRING}, id="first-bool"
        ),
    ],
)
async def test_create_user_invalid_body_returns_400_field_messages(
    client: Client, payload: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    response = await client.post(USERS, json=payload)

    assert response.status_code == 400
    assert await response.get_json() == invalid(**errors)


@pytest.mark.parametrize("document", [None, [], [new_user()], "a string", 42, True])
async def test_create_user_body_not_object_returns_400_schema_error(
    client: Client, document: Any
) -> None:
    response = await client.post(USERS, **raw_json(document))

    assert response.status_code == 400
    assert await response.get_json() == invalid(_schema=["Invalid input type."])


async def test_create_user_duplicate_email_returns_400(
    client: Client, user: User
) -> None:
    response = await client.post(USERS, json=new_user(email="test@example.com"))

    assert response.status_code == 400
    assert await response.get_json() == invalid(email=["Email already registered."])


@pytest.mark.parametrize("email", ["TEST@example.com", "Test@Example.Com"])
async def test_create_user_duplicate_email_other_case_returns_400(
    client: Client, user: User, email: str
) -> None:
    response = await client.post(USERS, json=new_user(email=email))

    assert response.status_code == 400
    assert await response.get_json() == invalid(email=["Email already registered."])


async def test_create_user_duplicate_non_ascii_email_other_case_returns_400(
    client: Client, session: AsyncSession
) -> None:
    await make_user(session, email="äda@exämple.com")

    response = await client.post(USERS, json=new_user(email="ÄDA@EXÄMPLE.com"))

    assert response.status_code == 400
    assert await response.get_json() == invalid(email=["Email already registered."])


async def test_create_user_duplicate_email_leaves_one_account(
    client: Client, user_headers: dict[str, str]
) -> None:
    await client.post(USERS, json=new_user(email="TEST@example.com"))

    response = await client.get(
        USERS, headers=user_headers, query_string={"active_only": "false"}
    )
    assert [u["email"] for u in (await response.get_json())["users"]] == [
        "test@example.com"
    ]


async def test_create_user_soft_deleted_email_returns_201_new_account(
    client: Client, session: AsyncSession
) -> None:
    gone = await make_user(session, email="gone@example.com", deleted_at=utcnow())

    response = await client.post(USERS, json=new_user(email="gone@example.com"))

    assert response.status_code == 201
    body = await response.get_json()
    assert body["email"] == "gone@example.com"
    assert body["id"] != gone.id


async def test_create_user_soft_deleted_email_other_case_returns_201(
    client: Client, session: AsyncSession
) -> None:
    await make_user(session, email="gone@example.com", deleted_at=utcnow())

    response = await client.post(USERS, json=new_user(email="GONE@example.com"))

    assert response.status_code == 201


@pytest.mark.parametrize(
    "email",
    [
        pytest.param(EMAIL_255[:-4] + "x.com", id="256-chars"),
        pytest.param("a" * 64 + "@" + ("b" * 60 + ".") * 3 + "example.com", id="262"),
    ],
)
async def test_create_user_email_over_255_chars_returns_400(
    client: Client, email: str
) -> None:
    assert len(email) > 255

    response = await client.post(USERS, json=new_user(email=email))

    assert response.status_code == 400
    body = await response.get_json()
    assert body["error"] == "Validation failed"
    assert set(body["errors"]) == {"email"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "nul\x00@example.com"),
        ("password", "password\x00123"),
        ("first_name", "Nu\x00l"),
        ("last_name", "\x00"),
    ],
)
async def test_create_user_nul_character_returns_400(
    client: Client, field: str, value: str
) -> None:
    response = await client.post(USERS, **raw_json(new_user(**{field: value})))

    assert response.status_code == 400
    body = await response.get_json()
    assert body["error"] == "Validation failed"
    assert set(body["errors"]) == {field}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "lone\ud800@example.com"),
        ("password", "password\ud800123"),
        ("first_name", "Lone\ud800"),
        ("last_name", "\udfff"),
    ],
)
async def test_create_user_lone_surrogate_returns_400(
    client: Client, field: str, value: str
) -> None:
    request = raw_json(new_user(**{field: value}))
    assert "\\ud" in request["data"]

    response = await client.post(USERS, **request)

    assert response.status_code == 400
    body = await response.get_json()
    assert body["error"] == "Validation failed"
    assert set(body["errors"]) == {field}


# --- GET /users ------------------------------------------------------------


async def test_list_users_without_token_returns_401(
    client: Client, session: AsyncSession
) -> None:
    await make_user(session)

    response = await client.get(USERS)

    assert response.status_code == 401


async def test_list_users_returns_page_envelope(
    client: Client, user: User, user_headers: dict[str, str]
) -> None:
    response = await client.get(USERS, headers=user_headers)

    assert response.status_code == 200
    assert await response.get_json() == page_json(
        "users", [user_json(user)], total=1, pages=1
    )


async def test_list_users_newest_first_ties_by_id_desc(
    client: Client, session: AsyncSession, settings: Settings
) -> None:
    caller = await make_user(session, created_at=at("2020-01-01T00:00:00"))
    tie = at("2024-06-01T12:00:00")
    first, second, third = [await make_user(session, created_at=tie) for _ in range(3)]
    newest = await make_user(session, created_at=tie + timedelta(microseconds=1))
    older = await make_user(session, created_at=tie - timedelta(days=1))

    response = await client.get(
        USERS, headers=await login_headers(session, settings, caller)
    )

    ids = [u["id"] for u in (await response.get_json())["users"]]
    assert ids == [newest.id, third.id, second.id, first.id, older.id, caller.id]


async def test_list_users_ties_stable_across_pages(
    client: Client, session: AsyncSession, settings: Settings
) -> None:
    tie = at("2024-06-01T12:00:00")
    made = [await make_user(session, created_at=tie) for _ in range(5)]
    headers = await login_headers(session, settings, made[0])

    seen = []
    for page in (1, 2, 3):
        response = await client.get(
            USERS, headers=headers, query_string={"page": page, "per_page": 2}
        )
        seen += [u["id"] for u in (await response.get_json())["users"]]

    assert seen == sorted((u.id for u in made), reverse=True)


async def test_list_users_never_lists_soft_deleted(
    client: Client, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    await make_user(session, deleted_at=utcnow())
    await make_user(session, deleted_at=utcnow(), is_active=False)

    for active_only in ("true", "false"):
        response = await client.get(
            USERS, headers=user_headers, query_string={"active_only": active_only}
        )
        body = await response.get_json()
        assert [u["id"] for u in body["users"]] == [user.id]
        assert body["total"] == 1


@pytest.mark.parametrize(
    ("query", "includes_inactive"),
    [
        pytest.param({}, False, id="default"),
        pytest.param({"active_only": "true"}, False, id="true"),
        pytest.param({"active_only": "TRUE"}, False, id="TRUE"),
        pytest.param({"active_only": "True"}, False, id="True"),
        pytest.param({"active_only": "tRuE"}, False, id="tRuE"),
        pytest.param({"active_only": "false"}, True, id="false"),
        pytest.param({"active_only": "FALSE"}, True, id="FALSE"),
        pytest.param({"active_only": "no"}, True, id="no"),
        pytest.param({"active_only": "0"}, True, id="0"),
        pytest.param({"active_only": "1"}, True, id="1"),
        pytest.param({"active_only": "yes"}, True, id="yes"),
        pytest.param({"active_only": ""}, True, id="empty"),
        pytest.param({"active_only": "true "}, True, id="trailing-space"),
    ],
)
async def test_list_users_active_only_only_true_string_filters(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    query: dict[str, str],
    includes_inactive: bool,
) -> None:
    active = await make_user(session, created_at=at("2024-01-01T00:00:00"))
    inactive = await make_user(
        session, is_active=False, created_at=at("2024-01-02T00:00:00")
    )

    response = await client.get(
        USERS,
        headers=await login_headers(session, settings, active),
        query_string=query,
    )

    ids = [u["id"] for u in (await response.get_json())["users"]]
    assert ids == ([inactive.id, active.id] if includes_inactive else [active.id])


async def test_list_users_per_page_capped_at_100(
    client: Client, session: AsyncSession, settings: Settings
) -> None:
    await make_users(session, 101)
    caller = await make_user(session)

    response = await client.get(
        USERS,
        headers=await login_headers(session, settings, caller),
        query_string={"per_page": 1000},
    )

    body = await response.get_json()
    assert (body["per_page"], body["total"], body["pages"]) == (100, 102, 2)
    assert len(body["users"]) == 100


@pytest.mark.parametrize(
    ("query", "page", "per_page"),
    [
        pytest.param({"page": "abc"}, 1, 20, id="page-abc"),
        pytest.param({"per_page": "abc"}, 1, 20, id="per_page-abc"),
        pytest.param({"page": "1.5", "per_page": "2.5"}, 1, 20, id="decimals"),
        pytest.param({"page": "", "per_page": ""}, 1, 20, id="empty"),
        pytest.param({"per_page": "0"}, 1, 20, id="per_page-0"),
        pytest.param({"per_page": "-5"}, 1, 20, id="per_page-negative"),
        pytest.param({"page": "0"}, 1, 20, id="page-0"),
        pytest.param({"page": "-3"}, 1, 20, id="page-negative"),
        pytest.param({"per_page": str(10**20)}, 1, 100, id="per_page-huge"),
        # Past Python's int() digit limit: a parse failure, so the default.
        pytest.param({"page": "9" * 5000}, 1, 20, id="page-5000-digits"),
        pytest.param({"per_page": "9" * 5000}, 1, 20, id="per_page-5000-digits"),
    ],
)
async def test_list_users_odd_paging_arguments_fall_back(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    query: dict[str, str],
    page: int,
    per_page: int,
) -> None:
    made = [await make_user(session) for _ in range(3)]

    response = await client.get(
        USERS,
        headers=await login_headers(session, settings, made[0]),
        query_string=query,
    )

    assert response.status_code == 200
    body = await response.get_json()
    assert (body["page"], body["per_page"], body["total"], body["pages"]) == (
        page,
        per_page,
        3,
        1,
    )
    assert len(body["users"]) == 3


# --- GET /users/me ---------------------------------------------------------


async def test_get_me_returns_caller(
    client: Client, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    await make_user(session)

    response = await client.get(f"{USERS}/me", headers=user_headers)

    assert response.status_code == 200
    assert await response.get_json() == user_json(user)


async def test_get_me_without_token_returns_401(client: Client, user: User) -> None:
    response = await client.get(f"{USERS}/me")

    assert response.status_code == 401


async def test_get_me_caller_row_missing_returns_404(
    stateless_client: Client, session: AsyncSession, settings: Settings
) -> None:
    caller = await make_user(session)
    # Flask-era: no session row that would keep the user's row from going.
    headers = flask_headers_for(settings, caller)
    # A core DELETE: the ORM refuses to delete through the write-only `posts`.
    await session.execute(delete(User).where(User.id == caller.id))
    await session.commit()

    response = await stateless_client.get(f"{USERS}/me", headers=headers)

    assert response.status_code == 404
    assert await response.get_json() == not_found(caller.id)


# --- GET /users/<id> -------------------------------------------------------


async def test_get_user_returns_user(
    client: Client, session: AsyncSession, user_headers: dict[str, str]
) -> None:
    other = await make_user(session, first_name="Ada", last_name="Lovelace")

    response = await client.get(f"{USERS}/{other.id}", headers=user_headers)

    assert response.status_code == 200
    assert await response.get_json() == user_json(other)


async def test_get_user_timestamps_use_isoformat(
    client: Client, session: AsyncSession, user_headers: dict[str, str]
) -> None:
    # isoformat() drops the fraction when microseconds are 0, as Flask emitted.
    other = await make_user(
        session,
        created_at=datetime(2024, 5, 6, 7, 8, 9),  # noqa: DTZ001
        updated_at=datetime(2024, 5, 6, 7, 8, 9, 120),  # noqa: DTZ001
    )

    response = await client.get(f"{USERS}/{other.id}", headers=user_headers)

    body = await response.get_json()
    assert (body["created_at"], body["updated_at"]) == (
        "2024-05-06T07:08:09",
        "2024-05-06T07:08:09.000120",
    )


async def test_get_user_without_token_returns_401(client: Client, user: User) -> None:
    response = await client.get(f"{USERS}/{user.id}")

    assert response.status_code == 401


async def test_get_user_soft_deleted_returns_404(
    client: Client, session: AsyncSession, user_headers: dict[str, str]
) -> None:
    gone = await make_user(session, deleted_at=utcnow())

    response = await client.get(f"{USERS}/{gone.id}", headers=user_headers)

    assert response.status_code == 404
    assert await response.get_json() == not_found(gone.id)


# --- PATCH /users/<id> -----------------------------------------------------


async def test_update_self_names_returns_200_and_bumps_updated_at(
    client: Client, session: AsyncSession, settings: Settings
) -> None:
    me = await make_user(
        session,
        created_at=at("2020-01-01T00:00:00"),
        updated_at=at("2020-01-01T00:00:00"),
    )

    response = await client.patch(
        f"{USERS}/{me.id}",
        json={"first_name": "Grace", "last_name": "Hopper"},
        headers=await login_headers(session, settings, me),
    )

    assert response.status_code == 200
    body = await response.get_json()
    assert (body["first_name"], body["last_name"], body["full_name"]) == (
        "Grace",
        "Hopper",
        "Grace Hopper",
    )
    assert body["created_at"] == "2020-01-01T00:00:00"
    assert datetime.fromisoformat(body["updated_at"]) > at("2020-01-01T00:00:00")
    await session.refresh(me)
    assert (me.first_name, me.last_name) == ("Grace", "Hopper")
    assert body["updated_at"] == me.updated_at.isoformat()


async def test_update_self_one_field_keeps_the_other(
    client: Client, session: AsyncSession, settings: Settings
) -> None:
    me = await make_user(session, first_name="Ada", last_name="Byron")

    response = await client.patch(
        f"{USERS}/{me.id}",
        json={"last_name": "Lovelace"},
        headers=await login_headers(session, settings, me),
    )

    body = await response.get_json()
    assert (body["first_name"], body["last_name"]) == ("Ada", "Lovelace")


async def test_update_empty_object_is_noop_200(
    client: Client, session: AsyncSession, settings: Settings
) -> None:
    me = await make_user(session, updated_at=at("2020-01-01T00:00:00"))
    before = user_json(me)

    response = await client.patch(
        f"{USERS}/{me.id}", json={}, headers=await login_headers(session, settings, me)
    )

    assert response.status_code == 200
    assert await response.get_json() == before
    await session.refresh(me)
    assert me.updated_at == at("2020-01-01T00:00:00")


async def test_update_admin_may_update_other_user(
    client: Client, session: AsyncSession, admin_headers: dict[str, str]
) -> None:
    other = await make_user(session)

    response = await client.patch(
        f"{USERS}/{other.id}", json={"first_name": "Renamed"}, headers=admin_headers
    )

    assert response.status_code == 200
    assert (await response.get_json())["full_name"] == f"Renamed {other.last_name}"
    await session.refresh(other)
    assert other.first_name == "Renamed"


@pytest.mark.parametrize("value", [True, "yes", "on", "true", "1", 1])
async def test_update_admin_is_active_truthy_values_activate(
    client: Client, session: AsyncSession, admin_headers: dict[str, str], value: Any
) -> None:
    other = await make_user(session, is_active=False)

    response = await client.patch(
        f"{USERS}/{other.id}", json={"is_active": value}, headers=admin_headers
    )

    assert response.status_code == 200
    assert (await response.get_json())["is_active"] is True
    await session.refresh(other)
    assert other.is_active is True


@pytest.mark.parametrize("value", [False, "no", "off", "false", "0", 0])
async def test_update_admin_is_active_falsy_values_deactivate(
    client: Client, session: AsyncSession, admin_headers: dict[str, str], value: Any
) -> None:
    other = await make_user(session)

    response = await client.patch(
        f"{USERS}/{other.id}", json={"is_active": value}, headers=admin_headers
    )

    assert response.status_code == 200
    assert (await response.get_json())["is_active"] is False


async def test_update_other_user_as_non_admin_returns_403(
    client: Client, session: AsyncSession, user_headers: dict[str, str]
) -> None:
    other = await make_user(session, first_name="Kept")

    response = await client.patch(
        f"{USERS}/{other.id}", json={"first_name": "Hacked"}, headers=user_headers
    )

    assert response.status_code == 403
    assert await response.get_json() == {"error": "Not authorized"}
    await session.refresh(other)
    assert other.first_name == "Kept"


@pytest.mark.parametrize(
    "request_kwargs",
    [
        pytest.param(
            {"data": "first_name=X", "headers": {"Content-Type": "text/plain"}},
            id="text-plain",
        ),
        pytest.param(
            {"data": "{not json", "headers": {"Content-Type": "application/json"}},
            id="malformed",
        ),
        pytest.param({"json": {"is_admin": True}}, id="unknown-field"),
    ],
)
async def test_update_other_user_forbidden_before_body_errors(
    client: Client,
    session: AsyncSession,
    user_headers: dict[str, str],
    request_kwargs: dict[str, Any],
) -> None:
    other = await make_user(session)
    headers = {**request_kwargs.pop("headers", {}), **user_headers}

    response = await client.patch(
        f"{USERS}/{other.id}", headers=headers, **request_kwargs
    )

    assert response.status_code == 403
    assert await response.get_json() == {"error": "Not authorized"}


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        pytest.param({"email": "x@example.com"}, {"email": UNKNOWN}, id="email"),
        pytest.param({"is_admin": True}, {"is_admin": UNKNOWN}, id="is_admin"),
        pytest.param({"password": "password123"}, {"password": UNKNOWN}, id="pw"),
        pytest.param({"first_name": None}, {"first_name": NOT_NULL}, id="first-null"),
        pytest.param({"last_name": None}, {"last_name": NOT_NULL}, id="last-null"),
        pytest.param({"is_active": None}, {"is_active": NOT_NULL}, id="active-null"),
        pytest.param({"first_name": ""}, {"first_name": NAME_LENGTH}, id="first-empty"),
        pytest.param(
            {"last_name": "l" * 101}, {"last_name": NAME_LENGTH}, id="last-long"
        ),
        pytest.param({"first_name": 5}, {"first_name": NOT_STRING}, id="first-int"),
        pytest.param(
            {"is_active": "maybe"}, {"is_active": ["Not a valid boolean."]}, id="bool"
        ),
    ],
)
async def test_update_invalid_body_returns_400(
    client: Client,
    user: User,
    user_headers: dict[str, str],
    payload: dict[str, Any],
    errors: dict[str, list[str]],
) -> None:
    response = await client.patch(
        f"{USERS}/{user.id}", json=payload, headers=user_headers
    )

    assert response.status_code == 400
    assert await response.get_json() == invalid(**errors)


async def test_update_admin_cannot_set_is_admin(
    client: Client, session: AsyncSession, admin_headers: dict[str, str]
) -> None:
    other = await make_user(session)

    response = await client.patch(
        f"{USERS}/{other.id}", json={"is_admin": True}, headers=admin_headers
    )

    assert response.status_code == 400
    assert await response.get_json() == invalid(is_admin=UNKNOWN)
    await session.refresh(other)
    assert other.is_admin is False


@pytest.mark.parametrize("value", ["Nu\x00l", "Lone\ud800"])
async def test_update_unstorable_name_returns_400(
    client: Client, session: AsyncSession, settings: Settings, value: str
) -> None:
    response = await patch_own_record(
        client, session, settings, json.dumps({"first_name": value})
    )

    assert response.status_code == 400
    assert set((await response.get_json())["errors"]) == {"first_name"}


@pytest.mark.parametrize("document", [None, [], "a string"])
async def test_update_body_not_object_returns_400_schema_error(
    client: Client, session: AsyncSession, settings: Settings, document: Any
) -> None:
    response = await patch_own_record(client, session, settings, json.dumps(document))

    assert response.status_code == 400
    assert await response.get_json() == invalid(_schema=["Invalid input type."])


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
    ],
)
async def test_update_non_json_body_returns_415(
    client: Client, session: AsyncSession, settings: Settings, headers: dict[str, str]
) -> None:
    response = await patch_own_record(
        client, session, settings, "first_name=X", headers
    )

    assert response.status_code == 415
    assert await response.get_json() == NOT_JSON


@pytest.mark.parametrize("data", ["{not json", ""])
async def test_update_malformed_json_returns_400(
    client: Client, session: AsyncSession, settings: Settings, data: str
) -> None:
    response = await patch_own_record(client, session, settings, data)

    assert response.status_code == 400
    assert await response.get_json() == BAD_REQUEST


async def test_update_soft_deleted_user_as_admin_returns_404(
    client: Client, session: AsyncSession, admin_headers: dict[str, str]
) -> None:
    gone = await make_user(session, deleted_at=utcnow())

    response = await client.patch(
        f"{USERS}/{gone.id}", json={"first_name": "X"}, headers=admin_headers
    )

    assert response.status_code == 404
    assert await response.get_json() == not_found(gone.id)


async def test_update_without_token_returns_401(client: Client, user: User) -> None:
    response = await client.patch(f"{USERS}/{user.id}", json={"first_name": "X"})

    assert response.status_code == 401


# --- DELETE /users/<id> ----------------------------------------------------


async def test_delete_user_as_admin_returns_204_empty(
    client: Client, session: AsyncSession, admin_headers: dict[str, str]
) -> None:
    other = await make_user(session)

    response = await client.delete(f"{USERS}/{other.id}", headers=admin_headers)

    assert response.status_code == 204
    assert await response.get_data() == b""


async def test_delete_user_soft_deletes_row(
    client: Client, session: AsyncSession, admin_headers: dict[str, str]
) -> None:
    other = await make_user(session)

    await client.delete(f"{USERS}/{other.id}", headers=admin_headers)

    await session.refresh(other)
    assert other.deleted_at is not None
    assert abs(other.deleted_at - utcnow()) < timedelta(minutes=1)


async def test_delete_user_then_get_returns_404(
    client: Client, session: AsyncSession, admin_headers: dict[str, str]
) -> None:
    other = await make_user(session)
    await client.delete(f"{USERS}/{other.id}", headers=admin_headers)

    response = await client.get(f"{USERS}/{other.id}", headers=admin_headers)

    assert response.status_code == 404
    assert await response.get_json() == not_found(other.id)


async def test_delete_user_as_non_admin_returns_403(
    client: Client, session: AsyncSession, user_headers: dict[str, str]
) -> None:
    other = await make_user(session)

    response = await client.delete(f"{USERS}/{other.id}", headers=user_headers)

    assert response.status_code == 403
    assert await response.get_json() == {"error": "Admin access required"}
    await session.refresh(other)
    assert other.deleted_at is None


async def test_delete_self_as_non_admin_returns_403(
    client: Client, user: User, user_headers: dict[str, str]
) -> None:
    response = await client.delete(f"{USERS}/{user.id}", headers=user_headers)

    assert response.status_code == 403
    assert await response.get_json() == {"error": "Admin access required"}


async def test_delete_already_deleted_user_returns_404(
    client: Client, session: AsyncSession, admin_headers: dict[str, str]
) -> None:
    gone = await make_user(session, deleted_at=at("2024-01-01T00:00:00"))

    response = await client.delete(f"{USERS}/{gone.id}", headers=admin_headers)

    assert response.status_code == 404
    assert await response.get_json() == not_found(gone.id)
    await session.refresh(gone)
    assert gone.deleted_at == at("2024-01-01T00:00:00")


async def test_delete_without_token_returns_401(client: Client, user: User) -> None:
    response = await client.delete(f"{USERS}/{user.id}")

    assert response.status_code == 401
