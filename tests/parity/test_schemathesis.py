"""Contract tests generated from /openapi.json by schemathesis, in process over ASGI.

Every operation is exercised with generated input (valid and invalid) without a
token, and every protected operation again as a regular user and as an admin.
Each response must be free of 5xx, carry a status code the document lists for
the operation, the documented content type and headers, and a body that validates
against the documented schema (schemathesis' default checks).

The app runs on its own engine and the per-run test database: schemathesis sends
its requests from its own event loop thread, so the test's rolled-back connection
cannot be shared. The rows the run commits are deleted afterwards.

Hypothesis is driven per operation here rather than through
`schemathesis.pytest.from_fixture`, whose subtests use `Node._nodeid`, gone in
pytest 9.2 (AttributeError: 'Function' object has no attribute '_nodeid').

SCHEMATHESIS_MAX_EXAMPLES (default 10) sets the examples per operation, caller
and generation mode; setting it also turns off derandomisation, so a longer run
explores new input each time:
    SCHEMATHESIS_MAX_EXAMPLES=200 pytest tests/parity/test_schemathesis.py
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.result import Ok
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.schemas import BaseSchema
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service import create_app
from service.config import Settings
from service.models import (
    AuthSession,
    Passkey,
    Post,
    RevokedToken,
    SecurityEvent,
    User,
)
from tests.factories import flask_token_for, make_user
from tests.support import PUBLIC_OPERATIONS, REFRESH, bearer

EXAMPLES_FROM_ENV = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES")
MAX_EXAMPLES = int(EXAMPLES_FROM_ENV or "10")
# Far above anything the id sequence reaches in a test run, and too specific for
# generated path parameters to hit: the callers cannot deactivate or delete
# themselves mid-run and lock the rest of the run out.
USER_ID = 2_000_000_011
ADMIN_ID = 2_000_000_017

PUBLIC = PUBLIC_OPERATIONS
PROTECTED = [
    "GET /api/v1/auth/account",
    "POST /api/v1/auth/fresh",
    "POST /api/v1/auth/recovery-codes",
    "DELETE /api/v1/auth/totp",
    "POST /api/v1/auth/totp",
    "POST /api/v1/auth/totp/confirm",
    "POST /api/v1/auth/logout",
    "GET /api/v1/auth/passkeys",
    "POST /api/v1/auth/passkeys",
    "POST /api/v1/auth/passkeys/options",
    "DELETE /api/v1/auth/passkeys/{passkey_id}",
    "PATCH /api/v1/auth/passkeys/{passkey_id}",
    "POST /api/v1/auth/password",
    "POST /api/v1/auth/refresh",
    "DELETE /api/v1/auth/sessions",
    "GET /api/v1/auth/sessions",
    "DELETE /api/v1/auth/sessions/{session_id}",
    "GET /api/v1/auth/events",
    "POST /api/v1/auth/email",
    "POST /api/v1/auth/email/verify/request",
    "GET /api/v1/posts",
    "POST /api/v1/posts",
    "DELETE /api/v1/posts/{post_id}",
    "GET /api/v1/posts/{post_id}",
    "PATCH /api/v1/posts/{post_id}",
    "GET /api/v1/users",
    "GET /api/v1/users/me",
    "DELETE /api/v1/users/{user_id}",
    "GET /api/v1/users/{user_id}",
    "PATCH /api/v1/users/{user_id}",
    "GET /api/v1/users/{user_id}/posts",
    "POST /api/v1/users/{user_id}/restore",
    "GET /api/v1/users/{user_id}/events",
    "GET /api/v1/users/{user_id}/sessions",
    "DELETE /api/v1/users/{user_id}/sessions",
]

Caller = Literal["anonymous", "user", "admin"]


@dataclass(frozen=True)
class Accounts:
    settings: Settings
    user: User
    admin: User

    def headers(self, case: Case[Any], caller: Caller) -> dict[str, str] | None:
        if caller == "anonymous":
            return None
        # A fresh token per request: a generated call to /auth/logout revokes
        # the token it was made with.
        token_type = "refresh" if case.operation.path == REFRESH else "access"
        account = self.user if caller == "user" else self.admin
        token = flask_token_for(self.settings, account, token_type=token_type)
        return bearer(token)


@dataclass(frozen=True)
class HighWater:
    user_id: int
    post_id: int
    jtis: frozenset[str]


async def high_water(session: AsyncSession) -> HighWater:
    user_id = await session.scalar(select(func.max(User.id)))
    post_id = await session.scalar(select(func.max(Post.id)))
    return HighWater(
        user_id=user_id or 0,
        post_id=post_id or 0,
        jtis=frozenset(await session.scalars(select(RevokedToken.jti))),
    )


async def remove_rows_since(session: AsyncSession, mark: HighWater) -> None:
    new_users = select(User.id).where(User.id > mark.user_id)
    await session.execute(
        delete(Post).where((Post.id > mark.post_id) | Post.author_id.in_(new_users))
    )
    await session.execute(delete(AuthSession).where(AuthSession.user_id.in_(new_users)))
    await session.execute(delete(Passkey).where(Passkey.user_id.in_(new_users)))
    await session.execute(
        delete(SecurityEvent).where(SecurityEvent.user_id.in_(new_users))
    )
    await session.execute(
        delete(RevokedToken).where(RevokedToken.jti.not_in(mark.jtis))
    )
    await session.execute(delete(User).where(User.id > mark.user_id))
    await session.commit()


@pytest.fixture(scope="module")
async def accounts(engine: AsyncEngine, settings: Settings) -> AsyncIterator[Accounts]:
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    async with sessionmaker() as session:
        mark = await high_water(session)
        user = await make_user(session, id=USER_ID, email="contract-user@example.com")
        admin = await make_user(
            session, id=ADMIN_ID, email="contract-admin@example.com", is_admin=True
        )
    try:
        yield Accounts(settings, user, admin)
    finally:
        async with sessionmaker() as session:
            await remove_rows_since(session, mark)


# Business rules the document cannot express: a well-formed body can still be
# refused with 400 (an invalid or used reset token, a wrong current password, an
# address already registered, a wrong TOTP code). 400 joins the statuses accepted
# for valid input there (with 422 for a malformed bearer header, below); a 5xx
# still fails.
BUSINESS_RULE_400 = ["2xx", "400", "401", "403", "404", "409", "422", "429"]
CONFIG: dict[str, object] = {
    # PostgreSQL cannot store NUL in text, so every text field refuses it with a
    # 400 on purpose (the Flask service answered 500).
    "generation": {"allow-x00": False},
    # The contract keeps flask-jwt-extended's statuses: a malformed, foreign-key
    # or wrong-type token is a 422, not the 401 this check expects (docs/client.md,
    # "Errors"); tests/api/test_auth.py pins every one of those answers.
    # For the same reason a header that merely looks right (`Bearer` alone, a
    # token that is not a JWT) is a 422 where the check expects 2xx or 401.
    "checks": {
        "ignored_auth": {"enabled": False},
        "positive_data_acceptance": {
            "expected-statuses": [
                "2xx",
                "3xx",
                "401",
                "403",
                "404",
                "409",
                "422",
                "429",
            ]
        },
    },
    "operations": [
        {
            "include-name": [
                # Tokens no mail carried; an address already registered.
                "POST /api/v1/auth/email/confirm",
                "POST /api/v1/auth/email/verify",
                "POST /api/v1/auth/email",
                "POST /api/v1/auth/password/reset",
                "POST /api/v1/auth/password",
                "POST /api/v1/auth/totp/confirm",
                "POST /api/v1/users",
                # An attestation that answers no challenge of ours: Invalid passkey.
                "POST /api/v1/auth/passkeys",
            ],
            "checks": {
                "positive_data_acceptance": {"expected-statuses": BUSINESS_RULE_400}
            },
        },
        {
            # page and per_page fall back to their defaults on junk, as the
            # Flask service's `type=int` did (docs/client.md, pagination): junk
            # query values are accepted on purpose.
            "include-name": [
                "GET /api/v1/users",
                "GET /api/v1/posts",
                "GET /api/v1/users/{user_id}/posts",
                "GET /api/v1/auth/events",
                "GET /api/v1/users/{user_id}/events",
            ],
            "checks": {"negative_data_rejection": {"enabled": False}},
        },
    ],
}


@pytest.fixture
def api(settings: Settings) -> Iterator[BaseSchema]:
    # One app per test: schemathesis ends the ASGI lifespan when a test finishes,
    # and a fresh app keeps each test's state its own.
    app = create_app(settings)
    config = SchemathesisConfig.from_dict(CONFIG)
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    finally:
        # Ends the lifespan here too: the engine is disposed before the database goes.
        shutdown_lifespans()


def exercise(api: BaseSchema, accounts: Accounts, label: str, caller: Caller) -> int:
    """How many generated cases conformed; the first that does not raises."""
    operation = api.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the document"
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @hypothesis_settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=EXAMPLES_FROM_ENV is None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: Case[Any]) -> None:
        case.call_and_validate(headers=accounts.headers(case, caller))
        conforming.append(case)

    conforming: list[Case[Any]] = []
    check()
    return len(conforming)


def test_operation_lists_match_the_document(api: BaseSchema) -> None:
    # The lists below drive the parametrisation: a new route must join them.
    results = list(api.get_all_operations())
    documented = sorted(r.ok().label for r in results if isinstance(r, Ok))

    assert len(documented) == len(results), "the document has invalid operations"
    assert documented == sorted(PUBLIC + PROTECTED)


@pytest.mark.parametrize("label", PUBLIC + PROTECTED)
def test_operation_without_token_conforms(
    api: BaseSchema, accounts: Accounts, label: str
) -> None:
    assert exercise(api, accounts, label, "anonymous") > 0


@pytest.mark.parametrize("label", PROTECTED)
def test_operation_as_user_conforms(
    api: BaseSchema, accounts: Accounts, label: str
) -> None:
    assert exercise(api, accounts, label, "user") > 0


@pytest.mark.parametrize("label", PROTECTED)
def test_operation_as_admin_conforms(
    api: BaseSchema, accounts: Accounts, label: str
) -> None:
    assert exercise(api, accounts, label, "admin") > 0
