"""Passkeys over HTTP, with the suite's software authenticator (tests/authenticator.py):
registration, the list, rename and delete, and sign-in with a passkey alone."""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.models import AuthSession, Passkey, User, utcnow
from service.services.passkeys import CHALLENGE_SECONDS
from tests.authenticator import Authenticator, b64url, unb64url
from tests.factories import flask_headers_for, login_headers, make_stale, make_user
from tests.mailbox import smtp_server, text_of
from tests.support import (
    API,
    FRESH_REQUIRED,
    INVALID_MFA_TOKEN,
    ME,
    MISSING,
    PASSKEYS,
    AppMaker,
    bearer,
    cases,
    change_password,
    login,
    post_login,
)

OPTIONS = f"{PASSKEYS}/options"
LOGIN_OPTIONS = f"{PASSKEYS}/login/options"
PASSKEY_LOGIN = f"{PASSKEYS}/login"
INVALID = {"error": "Invalid passkey"}


# What a registration's and a sign-in's options ask of the authenticator, each
# left undone in turn.
NOT_WHAT_THE_OPTIONS_ASKED = cases(
    "change",
    {
        "another origin": {"origin": "https://evil.example.com"},
        "no user verification": {"user_verified": False},
        "no user presence": {"user_present": False},
    },
)


async def creation_options(client: Client, headers: dict[str, str]) -> Any:
    response = await client.post(OPTIONS, headers=headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await response.get_json()


async def register(
    client: Client,
    headers: dict[str, str],
    authenticator: Authenticator,
    name: str | None = None,
    **made: Any,
) -> Any:
    """Options, then the authenticator's attestation: the 201's body."""
    credential = authenticator.create(await creation_options(client, headers), **made)
    body: dict[str, Any] = {"credential": credential}
    if name is not None:
        body["name"] = name
    response = await client.post(PASSKEYS, headers=headers, json=body)
    assert response.status_code == 201, await response.get_data(as_text=True)
    return await response.get_json()


async def request_options(client: Client, **body: Any) -> Any:
    response = await client.post(LOGIN_OPTIONS, json=body)
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await response.get_json()


async def passkey_login(client: Client, credential: dict[str, Any]) -> Any:
    return await client.post(PASSKEY_LOGIN, json={"credential": credential})


async def sign_in(client: Client, authenticator: Authenticator) -> Any:
    """A passkey sign-in as a browser makes it: options, the assertion, the login."""
    return await passkey_login(client, authenticator.get(await request_options(client)))


async def another_users_authenticator(
    client: Client, session: AsyncSession, settings: Settings
) -> Authenticator:
    """An authenticator with a passkey registered to a second user."""
    other = Authenticator()
    other_headers = await login_headers(session, settings, await make_user(session))
    await register(client, other_headers, other)
    return other


@pytest.fixture
def authenticator() -> Authenticator:
    return Authenticator()


@pytest.fixture
async def registered(
    client: Client, user_headers: dict[str, str], authenticator: Authenticator
) -> Any:
    """The user's passkey, made by `authenticator`."""
    return await register(client, user_headers, authenticator, name="Laptop")


# --- registration ------------------------------------------------------------


async def test_creation_options_ask_for_a_discoverable_verified_passkey(
    client: Client, user: User, user_headers: dict[str, str]
) -> None:
    options = await creation_options(client, user_headers)

    assert options["rp"] == {"id": "localhost", "name": "service"}
    assert options["user"]["name"] == "test@example.com"
    assert options["user"]["displayName"] == "Test User"
    assert len(unb64url(options["user"]["id"])) == 32
    assert options["authenticatorSelection"] == {
        "residentKey": "required",
        "requireResidentKey": True,
        "userVerification": "required",
    }
    assert options["attestation"] == "none"
    assert options["excludeCredentials"] == []
    assert options["timeout"] == CHALLENGE_SECONDS * 1000 == 300_000
    assert {"type": "public-key", "alg": -7} in options["pubKeyCredParams"]
    assert len(unb64url(options["challenge"])) >= 32


async def test_creation_options_follow_the_relying_party_settings(
    make_app: Any, user: User, session: AsyncSession, settings: Any
) -> None:
    async with make_app(
        webauthn_rp_id="example.com",
        webauthn_rp_name="Example",
        webauthn_origins=("https://app.example.com",),
    ) as app:
        headers = await login_headers(session, settings, user)
        options = await creation_options(app.test_client(), headers)

    assert options["rp"] == {"id": "example.com", "name": "Example"}


async def test_register_answers_the_passkey_and_lists_it(
    client: Client, user_headers: dict[str, str], registered: Any
) -> None:
    assert set(registered) == {"id", "name", "created_at", "last_used_at"}
    assert (registered["name"], registered["last_used_at"]) == ("Laptop", None)

    listed = await client.get(PASSKEYS, headers=user_headers)

    assert listed.status_code == 200
    assert await listed.get_json() == {"passkeys": [registered]}


async def test_register_without_a_name_calls_it_passkey(
    client: Client, user_headers: dict[str, str], authenticator: Authenticator
) -> None:
    passkey = await register(client, user_headers, authenticator)

    assert passkey["name"] == "Passkey"


async def test_a_second_passkey_excludes_the_first_and_shares_its_user_handle(
    client: Client,
    user_headers: dict[str, str],
    registered: Any,
    authenticator: Authenticator,
) -> None:
    options = await creation_options(client, user_headers)
    [first] = authenticator.credentials

    assert options["excludeCredentials"] == [
        {"id": b64url(first.id), "type": "public-key", "transports": ["internal"]}
    ]
    assert unb64url(options["user"]["id"]) == first.user_handle
    # The same authenticator refuses, as a browser's does: another one makes it.
    with pytest.raises(ValueError, match="InvalidStateError"):
        authenticator.create(options)
    other = Authenticator()
    response = await client.post(
        PASSKEYS, headers=user_headers, json={"credential": other.create(options)}
    )
    assert response.status_code == 201


async def test_registration_answered_twice_is_refused(
    client: Client, user_headers: dict[str, str], authenticator: Authenticator
) -> None:
    credential = authenticator.create(await creation_options(client, user_headers))
    first = await client.post(
        PASSKEYS, headers=user_headers, json={"credential": credential}
    )
    again = await client.post(
        PASSKEYS, headers=user_headers, json={"credential": credential}
    )

    assert first.status_code == 201
    assert (again.status_code, await again.get_json()) == (400, INVALID)


async def test_a_credential_registered_already_is_409(
    client: Client, user_headers: dict[str, str], authenticator: Authenticator
) -> None:
    await register(client, user_headers, authenticator)
    [made] = authenticator.credentials
    # Excluded credentials stop a real authenticator; a forged attestation not.
    credential = Authenticator().create(
        await creation_options(client, user_headers), credential_id=made.id
    )

    response = await client.post(
        PASSKEYS, headers=user_headers, json={"credential": credential}
    )

    assert (response.status_code, await response.get_json()) == (
        409,
        {"error": "Passkey already registered"},
    )


@NOT_WHAT_THE_OPTIONS_ASKED
async def test_an_attestation_the_options_did_not_ask_for_is_refused(
    client: Client,
    user_headers: dict[str, str],
    authenticator: Authenticator,
    change: dict[str, Any],
) -> None:
    options = await creation_options(client, user_headers)
    credential = authenticator.create(options, **change)

    response = await client.post(
        PASSKEYS, headers=user_headers, json={"credential": credential}
    )

    assert (response.status_code, await response.get_json()) == (400, INVALID)
    assert await (await client.get(PASSKEYS, headers=user_headers)).get_json() == {
        "passkeys": []
    }


async def test_an_attestation_of_another_users_challenge_is_refused(
    client: Client,
    session: AsyncSession,
    settings: Any,
    user_headers: dict[str, str],
    authenticator: Authenticator,
) -> None:
    other = await login_headers(session, settings, await make_user(session))
    credential = authenticator.create(await creation_options(client, other))

    response = await client.post(
        PASSKEYS, headers=user_headers, json={"credential": credential}
    )

    assert (response.status_code, await response.get_json()) == (400, INVALID)


@cases(
    "credential",
    {
        "empty": {},
        "no response": {"id": "AAAA", "rawId": "AAAA", "type": "public-key"},
        "client data not base64": {
            "id": "AAAA",
            "rawId": "AAAA",
            "type": "public-key",
            "response": {"clientDataJSON": "%%%", "attestationObject": "AAAA"},
        },
        "client data not JSON": {
            "id": "AAAA",
            "rawId": "AAAA",
            "type": "public-key",
            "response": {"clientDataJSON": "bm90IGpzb24", "attestationObject": "AAAA"},
        },
        "unknown challenge": {
            "id": "AAAA",
            "rawId": "AAAA",
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(
                    b'{"type":"webauthn.create","challenge":"AAAA",'
                    b'"origin":"http://localhost:8000"}'
                ),
                "attestationObject": "AAAA",
            },
        },
    },
)
async def test_a_malformed_attestation_is_400(
    client: Client, user_headers: dict[str, str], credential: dict[str, Any]
) -> None:
    response = await client.post(
        PASSKEYS, headers=user_headers, json={"credential": credential}
    )

    assert (response.status_code, await response.get_json()) == (400, INVALID)


@cases(
    "body, errors",
    {
        "no credential": ({}, {"credential": MISSING}),
        "credential not an object": (
            {"credential": "x"},
            {"credential": ["Not a valid mapping type."]},
        ),
        "empty name": (
            {"credential": {}, "name": ""},
            {"name": ["Length must be between 1 and 100."]},
        ),
        "unknown field": (
            {"credential": {}, "extra": 1},
            {"extra": ["Unknown field."]},
        ),
    },
)
async def test_an_invalid_registration_body_is_400_naming_the_field(
    client: Client,
    user_headers: dict[str, str],
    body: dict[str, Any],
    errors: dict[str, Any],
) -> None:
    response = await client.post(PASSKEYS, headers=user_headers, json=body)

    assert response.status_code == 400
    assert await response.get_json() == {"error": "Validation failed", "errors": errors}


async def test_passkey_routes_need_a_token(client: Client) -> None:
    for method, url in (
        ("POST", OPTIONS),
        ("POST", PASSKEYS),
        ("GET", PASSKEYS),
        ("PATCH", f"{PASSKEYS}/x"),
        ("DELETE", f"{PASSKEYS}/x"),
    ):
        response = await client.open(url, method=method, json={})
        assert response.status_code == 401, (method, url)


# --- fresh sessions ------------------------------------------------------------------


async def test_adding_a_passkey_needs_a_fresh_session(
    client: Client, session: AsyncSession, user_headers: dict[str, str]
) -> None:
    response = await client.post(
        OPTIONS, headers=await make_stale(session, user_headers)
    )

    assert (response.status_code, await response.get_json()) == (401, FRESH_REQUIRED)


async def test_deleting_a_passkey_needs_a_fresh_session(
    client: Client,
    session: AsyncSession,
    user_headers: dict[str, str],
    registered: Any,
) -> None:
    response = await client.delete(
        f"{PASSKEYS}/{registered['id']}",
        headers=await make_stale(session, user_headers),
    )

    assert (response.status_code, await response.get_json()) == (401, FRESH_REQUIRED)
    assert await session.scalar(select(Passkey.id)) == registered["id"]


async def test_a_flask_era_token_adds_no_passkey(
    client: Client, settings: Settings, user: User
) -> None:
    response = await client.post(OPTIONS, headers=flask_headers_for(settings, user))

    assert (response.status_code, await response.get_json()) == (401, FRESH_REQUIRED)


async def test_a_passkey_login_is_a_fresh_passkey_session(
    client: Client,
    session: AsyncSession,
    registered: Any,
    authenticator: Authenticator,
) -> None:
    signed = authenticator.get(await request_options(client))
    tokens = await (await passkey_login(client, signed)).get_json()
    sid = jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"]

    row = await session.get_one(AuthSession, sid)
    # Fresh: it may add the next passkey at once.
    options = await client.post(OPTIONS, headers=bearer(tokens["access_token"]))

    assert row.auth_method == "passkey"
    assert options.status_code == 200


# --- rename and delete -------------------------------------------------------------


async def test_rename_changes_the_name_only(
    client: Client, user_headers: dict[str, str], registered: Any
) -> None:
    response = await client.patch(
        f"{PASSKEYS}/{registered['id']}", headers=user_headers, json={"name": "Phone"}
    )

    assert response.status_code == 200
    assert await response.get_json() == registered | {"name": "Phone"}


async def test_delete_ends_the_passkey(
    client: Client,
    user_headers: dict[str, str],
    registered: Any,
    authenticator: Authenticator,
) -> None:
    response = await client.delete(
        f"{PASSKEYS}/{registered['id']}", headers=user_headers
    )
    signed = authenticator.get(await request_options(client))

    assert response.status_code == 204
    assert await (await client.get(PASSKEYS, headers=user_headers)).get_json() == {
        "passkeys": []
    }
    assert (await passkey_login(client, signed)).status_code == 401


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_another_users_passkey_is_404_and_untouched(
    client: Client,
    session: AsyncSession,
    settings: Any,
    registered: Any,
    method: str,
) -> None:
    other = await login_headers(session, settings, await make_user(session))

    response = await client.open(
        f"{PASSKEYS}/{registered['id']}",
        method=method,
        headers=other,
        json={"name": "Mine"},
    )

    assert (response.status_code, await response.get_json()) == (
        404,
        {"error": "Passkey not found"},
    )
    assert await session.scalar(select(Passkey.name)) == "Laptop"


@pytest.mark.parametrize("passkey_id", ["unknown", "x" * 37, "a\x00b"])
async def test_an_unknown_passkey_id_is_404(
    client: Client, user_headers: dict[str, str], passkey_id: str
) -> None:
    response = await client.delete(f"{PASSKEYS}/{passkey_id}", headers=user_headers)

    assert (response.status_code, await response.get_json()) == (
        404,
        {"error": "Passkey not found"},
    )


# --- sign-in with a passkey alone ------------------------------------------------


async def test_request_options_for_a_passkey_alone_allow_any_and_verify_the_user(
    client: Client,
) -> None:
    options = await request_options(client)

    assert options["rpId"] == "localhost"
    assert options["allowCredentials"] == []
    assert options["userVerification"] == "required"
    assert options["timeout"] == 300_000


async def test_a_passkey_alone_signs_in(
    client: Client,
    user: User,
    registered: Any,
    authenticator: Authenticator,
    user_headers: dict[str, str],
) -> None:
    signed = authenticator.get(await request_options(client))

    response = await passkey_login(client, signed)

    assert response.status_code == 200
    tokens = await response.get_json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type"}
    me = await client.get(ME, headers=bearer(tokens["access_token"]))
    assert (await me.get_json())["id"] == user.id
    [listed] = (await (await client.get(PASSKEYS, headers=user_headers)).get_json())[
        "passkeys"
    ]
    assert listed["last_used_at"] is not None


async def test_a_replayed_assertion_is_401(
    client: Client, registered: Any, authenticator: Authenticator
) -> None:
    signed = authenticator.get(await request_options(client))

    first = await passkey_login(client, signed)
    again = await passkey_login(client, signed)

    assert first.status_code == 200
    assert (again.status_code, await again.get_json()) == (401, INVALID)


async def test_one_assertion_sent_twice_at_once_signs_in_once(
    client: Client, registered: Any, authenticator: Authenticator
) -> None:
    signed = authenticator.get(await request_options(client))

    answers = await asyncio.gather(*(passkey_login(client, signed) for _ in range(4)))

    assert sorted(answer.status_code for answer in answers) == [200, 401, 401, 401]


@NOT_WHAT_THE_OPTIONS_ASKED
async def test_an_assertion_the_options_did_not_ask_for_is_401(
    client: Client,
    registered: Any,
    authenticator: Authenticator,
    change: dict[str, Any],
) -> None:
    # A passkey alone is the whole login: it must verify the user too.
    signed = authenticator.get(await request_options(client), **change)

    response = await passkey_login(client, signed)

    assert (response.status_code, await response.get_json()) == (401, INVALID)


@pytest.mark.parametrize("reported", [5, 4, 0])
async def test_a_sign_count_that_did_not_grow_is_401(
    client: Client,
    session: AsyncSession,
    registered: Any,
    authenticator: Authenticator,
    reported: int,
) -> None:
    """A cloned authenticator shows itself by a count at or below the last one."""
    await session.execute(update(Passkey).values(sign_count=5))
    await session.commit()
    signed = authenticator.get(await request_options(client), sign_count=reported)

    response = await passkey_login(client, signed)

    assert (response.status_code, await response.get_json()) == (401, INVALID)
    assert await session.scalar(select(Passkey.sign_count)) == 5


async def test_a_growing_sign_count_is_kept(
    client: Client,
    session: AsyncSession,
    registered: Any,
    authenticator: Authenticator,
) -> None:
    signed = authenticator.get(await request_options(client), sign_count=41)

    assert (await passkey_login(client, signed)).status_code == 200
    assert await session.scalar(select(Passkey.sign_count)) == 41


async def test_an_assertion_naming_another_users_handle_is_401(
    client: Client,
    session: AsyncSession,
    settings: Any,
    registered: Any,
    authenticator: Authenticator,
) -> None:
    """A passkey signs in its own user only, whatever user handle it claims."""
    other = await another_users_authenticator(client, session, settings)
    [mine] = authenticator.credentials
    mine.user_handle = other.credentials[0].user_handle

    response = await sign_in(client, authenticator)

    assert (response.status_code, await response.get_json()) == (401, INVALID)


async def test_an_unregistered_credential_is_401(
    client: Client, authenticator: Authenticator
) -> None:
    authenticator.create(
        {
            "rp": {"id": "localhost"},
            "user": {"id": b64url(b"someone")},
            "challenge": b64url(b"unused"),
            "excludeCredentials": [],
        }
    )

    response = await sign_in(client, authenticator)

    assert (response.status_code, await response.get_json()) == (401, INVALID)


async def test_a_creation_challenge_does_not_sign_in(
    client: Client,
    user_headers: dict[str, str],
    registered: Any,
    authenticator: Authenticator,
) -> None:
    options = await creation_options(client, user_headers)
    signed = authenticator.get(
        {"challenge": options["challenge"], "rpId": "localhost", "allowCredentials": []}
    )

    response = await passkey_login(client, signed)

    assert (response.status_code, await response.get_json()) == (401, INVALID)


@pytest.mark.parametrize(
    ("state", "refusal"),
    [
        ({"is_active": False}, {"error": "Account is deactivated"}),
        ({"deleted_at": utcnow()}, INVALID),
    ],
    ids=["deactivated", "deleted"],
)
async def test_a_deactivated_or_deleted_users_passkey_does_not_sign_in(
    client: Client,
    session: AsyncSession,
    registered: Any,
    authenticator: Authenticator,
    state: dict[str, Any],
    refusal: dict[str, str],
) -> None:
    await session.execute(update(User).values(**state))
    await session.commit()

    response = await sign_in(client, authenticator)

    assert (response.status_code, await response.get_json()) == (401, refusal)


async def test_a_password_change_ends_passkey_sessions_and_passkeys_still_sign_in(
    client: Client,
    user_headers: dict[str, str],
    registered: Any,
    authenticator: Authenticator,
) -> None:
    """Sessions end as every session does; the passkey is not the password."""
    first = await (await sign_in(client, authenticator)).get_json()
    changed = await change_password(client, user_headers, "a new passphrase 9")
    ended = await client.get(ME, headers=bearer(first["access_token"]))
    again = await sign_in(client, authenticator)

    assert changed.status_code == 204
    assert ended.status_code == 401
    assert again.status_code == 200


@cases(
    "body, errors",
    {
        "no credential": ({}, {"credential": MISSING}),
        "credential not an object": (
            {"credential": []},
            {"credential": ["Not a valid mapping type."]},
        ),
        "unknown field": ({"credential": {}, "x": 1}, {"x": ["Unknown field."]}),
    },
)
async def test_an_invalid_login_body_is_400_naming_the_field(
    client: Client, body: dict[str, Any], errors: dict[str, Any]
) -> None:
    response = await client.post(PASSKEY_LOGIN, json=body)

    assert response.status_code == 400
    assert await response.get_json() == {"error": "Validation failed", "errors": errors}


async def test_a_malformed_assertion_is_401(client: Client) -> None:
    response = await passkey_login(
        client, {"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {}}
    )

    assert (response.status_code, await response.get_json()) == (401, INVALID)


# --- events and notices ------------------------------------------------------------


async def test_adding_using_and_removing_a_passkey_are_security_events(
    client: Client,
    user_headers: dict[str, str],
    registered: Any,
    authenticator: Authenticator,
) -> None:
    await sign_in(client, authenticator)
    await client.delete(f"{PASSKEYS}/{registered['id']}", headers=user_headers)

    response = await client.get(f"{API}/auth/events", headers=user_headers)

    assert [
        (each["type"], each["detail"]) for each in (await response.get_json())["events"]
    ] == [
        ("factor_removed", "passkey"),
        ("login", "passkey"),
        ("factor_added", "passkey"),
    ]


async def test_the_owner_is_mailed_when_a_passkey_is_added_and_removed(
    make_app: AppMaker, session: AsyncSession, settings: Settings, user: User
) -> None:
    with smtp_server() as smtp:
        async with make_app(smtp_url=smtp.url) as app:
            client = app.test_client()
            headers = await login_headers(session, settings, user)
            added = await register(client, headers, Authenticator())
            await client.delete(f"{PASSKEYS}/{added['id']}", headers=headers)
            mails = await smtp.inbox.wait_for(2)

    assert [(mail["To"], mail["Subject"]) for mail in mails] == [
        (user.email, "A passkey was added"),
        (user.email, "A passkey was removed"),
    ]
    assert "A passkey was added to your account." in text_of(mails[0])


# --- a passkey as the second factor after a password ----------------------------


async def mfa_token_of(client: Client, email: str) -> str:
    """The right password of an account with a passkey: the 401's mfa_token."""
    response = await post_login(client, email)
    body = await response.get_json()
    assert response.status_code == 401, body
    assert body["error"] == "Second factor required"
    assert "passkey" in body["methods"]
    token: str = body["mfa_token"]
    return token


async def second_factor(
    client: Client, credential: dict[str, Any], mfa_token: str
) -> Any:
    return await client.post(
        PASSKEY_LOGIN, json={"credential": credential, "mfa_token": mfa_token}
    )


async def test_a_passkey_finishes_a_password_login_in_a_fresh_passkey_session(
    client: Client,
    session: AsyncSession,
    user: User,
    registered: Any,
    authenticator: Authenticator,
) -> None:
    mfa_token = await mfa_token_of(client, user.email)
    options = await request_options(client, mfa_token=mfa_token)
    # As a second factor the passkey need not verify the user: the password did.
    signed = authenticator.get(options, user_verified=False)

    response = await second_factor(client, signed, mfa_token)

    assert response.status_code == 200, await response.get_json()
    tokens = await response.get_json()
    sid = jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"]
    assert (await session.get_one(AuthSession, sid)).auth_method == "passkey"
    me = await client.get(ME, headers=bearer(tokens["access_token"]))
    assert (await me.get_json())["id"] == user.id


async def test_second_factor_options_allow_only_that_users_passkeys(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    user: User,
    registered: Any,
    authenticator: Authenticator,
) -> None:
    await another_users_authenticator(client, session, settings)

    options = await request_options(
        client, mfa_token=await mfa_token_of(client, user.email)
    )

    [mine] = authenticator.credentials
    assert options["allowCredentials"] == [
        {"id": b64url(mine.id), "type": "public-key", "transports": ["internal"]}
    ]
    assert options["userVerification"] == "preferred"


async def test_one_mfa_token_finishes_one_login(
    client: Client, user: User, registered: Any, authenticator: Authenticator
) -> None:
    mfa_token = await mfa_token_of(client, user.email)
    # Two challenges for the one login, both answered.
    first, second = [
        authenticator.get(await request_options(client, mfa_token=mfa_token))
        for _ in range(2)
    ]

    finished = await second_factor(client, first, mfa_token)
    again = await second_factor(client, second, mfa_token)
    options = await client.post(LOGIN_OPTIONS, json={"mfa_token": mfa_token})

    assert finished.status_code == 200
    for refused in (again, options):
        assert (refused.status_code, await refused.get_json()) == (
            401,
            INVALID_MFA_TOKEN,
        )


async def test_two_completions_of_one_login_at_once_open_one_session(
    client: Client,
    session: AsyncSession,
    user: User,
    registered: Any,
    authenticator: Authenticator,
) -> None:
    mfa_token = await mfa_token_of(client, user.email)
    signed = [
        authenticator.get(await request_options(client, mfa_token=mfa_token))
        for _ in range(3)
    ]

    answers = await asyncio.gather(
        *(second_factor(client, each, mfa_token) for each in signed)
    )

    assert sorted(answer.status_code for answer in answers) == [200, 401, 401]
    opened = select(func.count()).where(
        AuthSession.user_id == user.id, AuthSession.auth_method == "passkey"
    )
    assert await session.scalar(opened) == 1


async def test_another_users_passkey_does_not_finish_a_login(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    user: User,
    registered: Any,
) -> None:
    other = await another_users_authenticator(client, session, settings)
    mfa_token = await mfa_token_of(client, user.email)
    options = await request_options(client, mfa_token=mfa_token)

    signed = other.get(options, credential=other.credentials[0])
    response = await second_factor(client, signed, mfa_token)

    assert (response.status_code, await response.get_json()) == (401, INVALID)


@pytest.mark.parametrize("options_for", ["a passkey alone", "another login"])
async def test_a_challenge_of_another_ceremony_does_not_finish_a_login(
    client: Client,
    user: User,
    registered: Any,
    authenticator: Authenticator,
    options_for: str,
) -> None:
    mfa_token = await mfa_token_of(client, user.email)
    other_token = await mfa_token_of(client, user.email)
    options = (
        await request_options(client)
        if options_for == "a passkey alone"
        else await request_options(client, mfa_token=other_token)
    )

    response = await second_factor(client, authenticator.get(options), mfa_token)

    # (For another login of the same user the challenge is the user's own: it
    # may finish this one, as a code would finish either.)
    expected = 401 if options_for == "a passkey alone" else 200
    assert response.status_code == expected


async def test_second_factor_options_do_not_sign_in_alone(
    client: Client, user: User, registered: Any, authenticator: Authenticator
) -> None:
    options = await request_options(
        client, mfa_token=await mfa_token_of(client, user.email)
    )

    response = await passkey_login(client, authenticator.get(options))

    assert (response.status_code, await response.get_json()) == (401, INVALID)


async def test_an_unknown_mfa_token_gets_no_options_and_no_login(
    client: Client, registered: Any, authenticator: Authenticator
) -> None:
    options = await client.post(LOGIN_OPTIONS, json={"mfa_token": "made-up"})
    signed = authenticator.get(await request_options(client))
    login = await second_factor(client, signed, "made-up")

    for response in (options, login):
        assert (response.status_code, await response.get_json()) == (
            401,
            INVALID_MFA_TOKEN,
        )


async def test_wrong_passkeys_after_a_password_spend_the_login_budget(
    make_app: AppMaker, session: AsyncSession, settings: Settings, user: User
) -> None:
    async with make_app(login_max_failures=3) as app:
        client = app.test_client()
        authenticator = Authenticator()
        await register(
            client, await login_headers(session, settings, user), authenticator
        )
        mfa_token = await mfa_token_of(client, user.email)
        answers = []
        for _ in range(4):
            options = await request_options(client, mfa_token=mfa_token)
            signed = authenticator.get(options, origin="https://evil.example.com")
            answers.append(await second_factor(client, signed, mfa_token))

    assert [answer.status_code for answer in answers] == [401, 401, 401, 429]
    assert await answers[0].get_json() == INVALID


async def test_a_passkey_second_factor_is_recorded_as_used_and_failed(
    client: Client,
    user: User,
    user_headers: dict[str, str],
    registered: Any,
    authenticator: Authenticator,
) -> None:
    mfa_token = await mfa_token_of(client, user.email)
    wrong = authenticator.get(
        await request_options(client, mfa_token=mfa_token),
        origin="https://evil.example.com",
    )
    await second_factor(client, wrong, mfa_token)
    right = authenticator.get(await request_options(client, mfa_token=mfa_token))
    await second_factor(client, right, mfa_token)

    response = await client.get(f"{API}/auth/events", headers=user_headers)

    assert [
        (each["type"], each["detail"]) for each in (await response.get_json())["events"]
    ][:3] == [
        ("login", None),
        ("second_factor_used", "passkey"),
        ("second_factor_failed", None),
    ]


@cases(
    "url, body, errors",
    {
        "registration: a name with NUL": (
            PASSKEYS,
            {"credential": {}, "name": "a\x00b"},
            {"name": ["Must not contain NUL characters."]},
        ),
        "rename: no name": ("{passkey}", {}, {"name": MISSING}),
        "rename: a name too long": (
            "{passkey}",
            {"name": "x" * 101},
            {"name": ["Length must be between 1 and 100."]},
        ),
        "options: an empty mfa_token": (
            LOGIN_OPTIONS,
            {"mfa_token": ""},
            {"mfa_token": ["Length must be between 1 and 2048."]},
        ),
        "options: an mfa_token not a string": (
            LOGIN_OPTIONS,
            {"mfa_token": 5},
            {"mfa_token": ["Not a valid string."]},
        ),
        "login: a null mfa_token": (
            PASSKEY_LOGIN,
            {"credential": {}, "mfa_token": None},
            {"mfa_token": ["Field may not be null."]},
        ),
    },
)
async def test_every_passkey_body_names_what_is_wrong(
    client: Client,
    user_headers: dict[str, str],
    registered: Any,
    url: str,
    body: dict[str, Any],
    errors: dict[str, Any],
) -> None:
    target = url.replace("{passkey}", f"{PASSKEYS}/{registered['id']}")
    method = "PATCH" if url == "{passkey}" else "POST"

    response = await client.open(target, method=method, json=body, headers=user_headers)

    assert response.status_code == 400
    assert await response.get_json() == {"error": "Validation failed", "errors": errors}


# --- MFA_REQUIRED ---------------------------------------------------------------


async def test_under_mfa_required_all_a_password_session_enrols_a_passkey_and_it_counts(
    make_app: AppMaker, user: User
) -> None:
    """Enrolment is reachable without a second factor; a passkey login then is one."""
    async with make_app(mfa_required="all") as app:
        client = app.test_client()
        password_only = bearer((await login(client, user.email))["access_token"])
        posts_before = await client.get(f"{API}/posts", headers=password_only)
        authenticator = Authenticator()
        await register(client, password_only, authenticator)
        signed = authenticator.get(await request_options(client))
        tokens = await (await passkey_login(client, signed)).get_json()
        posts_after = await client.get(
            f"{API}/posts", headers=bearer(tokens["access_token"])
        )

    assert (posts_before.status_code, await posts_before.get_json()) == (
        403,
        {"error": "Second factor required"},
    )
    assert posts_after.status_code == 200


async def test_under_mfa_required_admins_a_passkey_session_has_admin_rights(
    make_app: AppMaker, session: AsyncSession, settings: Settings
) -> None:
    admin = await make_user(session, is_admin=True)
    other = await make_user(session)
    async with make_app(mfa_required="admins") as app:
        client = app.test_client()
        headers = await login_headers(session, settings, admin)
        password_only = await client.delete(f"{API}/users/{other.id}", headers=headers)
        authenticator = Authenticator()
        await register(client, headers, authenticator)
        mfa_token = await mfa_token_of(client, admin.email)
        signed = authenticator.get(await request_options(client, mfa_token=mfa_token))
        tokens = await (await second_factor(client, signed, mfa_token)).get_json()
        with_passkey = await client.delete(
            f"{API}/users/{other.id}", headers=bearer(tokens["access_token"])
        )

    assert (password_only.status_code, await password_only.get_json()) == (
        403,
        {"error": "Admin access requires a second factor"},
    )
    assert with_passkey.status_code == 204
