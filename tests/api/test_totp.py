"""TOTP enrolment, recovery codes and the account's security state over the
test client; codes from pyotp at the real time (tests/security/test_totp.py puts
them at step edges)."""

from __future__ import annotations

import time

import pyotp
import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.models import RecoveryCode, TotpFactor, User
from service.security.totp import recovery_code_hash
from service.services.factors import FactorService
from tests.factories import PASSWORD, make_stale
from tests.support import ACCOUNT, API, FRESH, FRESH_REQUIRED, INVALID_CODE, send

TOTP = f"{API}/auth/totp"
CONFIRM = f"{API}/auth/totp/confirm"
RECOVERY = f"{API}/auth/recovery-codes"


async def enrol(client: Client, headers: dict[str, str]) -> str:
    """POST /auth/totp, which must succeed: the secret."""
    response = await client.post(TOTP, headers=headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    secret: str = (await response.get_json())["secret"]
    return secret


async def turn_on_totp(
    client: Client, headers: dict[str, str]
) -> tuple[str, list[str]]:
    """Enrol and confirm: the secret and the recovery codes."""
    secret = await enrol(client, headers)
    response = await client.post(
        CONFIRM, headers=headers, json={"code": pyotp.TOTP(secret).now()}
    )
    assert response.status_code == 200, await response.get_data(as_text=True)
    codes: list[str] = (await response.get_json())["recovery_codes"]
    return secret, codes


def next_code(secret: str) -> str:
    """The next step's code: accepted (one step of drift), and later than any
    code used now."""
    return pyotp.TOTP(secret).at(time.time() + 30)


async def test_account_of_a_user_with_no_factor(
    client: Client, user: User, user_headers: dict[str, str]
) -> None:
    response = await client.get(ACCOUNT, headers=user_headers)

    assert response.status_code == 200
    assert await response.get_json() == {
        "email": user.email,
        "email_verified": False,
        "totp": False,
        "passkeys": 0,
        "recovery_codes_left": 0,
    }


async def test_enrolment_answers_a_secret_and_uri_and_changes_nothing_yet(
    client: Client, user: User, user_headers: dict[str, str]
) -> None:
    response = await client.post(TOTP, headers=user_headers)
    body = await response.get_json()
    account = await (await client.get(ACCOUNT, headers=user_headers)).get_json()

    assert response.status_code == 200
    assert set(body) == {"secret", "otpauth_uri"}
    assert len(body["secret"]) == 32
    assert pyotp.parse_uri(body["otpauth_uri"]).secret == body["secret"]
    assert user.email.replace("@", "%40") in body["otpauth_uri"]
    assert account["totp"] is False


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", TOTP), ("DELETE", TOTP), ("POST", RECOVERY)],
    ids=["enrol", "turn-off", "recovery-codes"],
)
async def test_security_changes_need_a_fresh_session(
    client: Client,
    session: AsyncSession,
    user_headers: dict[str, str],
    method: str,
    path: str,
) -> None:
    await turn_on_totp(client, user_headers)
    await make_stale(session, user_headers)

    response = await send(client, method, path, headers=user_headers)
    account = await (await client.get(ACCOUNT, headers=user_headers)).get_json()

    assert response.status_code == 401
    assert await response.get_json() == FRESH_REQUIRED
    assert (account["totp"], account["recovery_codes_left"]) == (True, 10)


async def test_confirming_turns_totp_on_with_ten_recovery_codes(
    client: Client, user_headers: dict[str, str]
) -> None:
    _, codes = await turn_on_totp(client, user_headers)
    account = await (await client.get(ACCOUNT, headers=user_headers)).get_json()

    assert len(codes) == len(set(codes)) == 10
    assert account["totp"] is True
    assert account["recovery_codes_left"] == 10


async def test_a_wrong_confirming_code_is_400_invalid_code(
    client: Client, user_headers: dict[str, str]
) -> None:
    secret = await enrol(client, user_headers)
    wrong = f"{(int(pyotp.TOTP(secret).now()) + 1) % 1_000_000:06d}"

    response = await client.post(CONFIRM, headers=user_headers, json={"code": wrong})
    account = await (await client.get(ACCOUNT, headers=user_headers)).get_json()

    assert response.status_code == 400
    assert await response.get_json() == INVALID_CODE
    assert account["totp"] is False


async def test_confirming_without_an_enrolment_is_400(
    client: Client, user_headers: dict[str, str]
) -> None:
    response = await client.post(CONFIRM, headers=user_headers, json={"code": "123456"})

    assert response.status_code == 400
    assert await response.get_json() == {
        "error": "No TOTP enrolment to confirm: POST /auth/totp first"
    }


async def test_confirming_needs_a_code(
    client: Client, user_headers: dict[str, str]
) -> None:
    response = await client.post(CONFIRM, headers=user_headers, json={"code": 123456})

    assert response.status_code == 400
    assert await response.get_json() == {
        "error": "Validation failed",
        "errors": {"code": ["Not a valid string."]},
    }


async def test_a_second_enrolment_replaces_the_pending_secret(
    client: Client, user_headers: dict[str, str]
) -> None:
    first = await enrol(client, user_headers)
    second = await enrol(client, user_headers)

    stale = await client.post(
        CONFIRM, headers=user_headers, json={"code": pyotp.TOTP(first).now()}
    )
    fresh = await client.post(
        CONFIRM, headers=user_headers, json={"code": pyotp.TOTP(second).now()}
    )

    assert first != second
    assert stale.status_code == 400
    assert fresh.status_code == 200


async def test_enrolling_or_confirming_again_while_on_is_409(
    client: Client, user_headers: dict[str, str]
) -> None:
    secret, _ = await turn_on_totp(client, user_headers)

    again = await client.post(TOTP, headers=user_headers)
    confirm = await client.post(
        CONFIRM, headers=user_headers, json={"code": next_code(secret)}
    )

    assert again.status_code == 409
    assert await again.get_json() == {"error": "TOTP is already on"}
    assert confirm.status_code == 409


async def test_the_secret_is_encrypted_at_rest(
    client: Client, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    secret, codes = await turn_on_totp(client, user_headers)

    row = await session.get_one(TotpFactor, user.id)
    hashes = set(
        await session.scalars(
            select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id)
        )
    )

    assert row.secret.startswith("v1:")
    assert secret not in row.secret
    assert hashes == {recovery_code_hash(code) for code in codes}


async def test_turning_totp_off_takes_the_recovery_codes_with_it(
    client: Client, user_headers: dict[str, str]
) -> None:
    await turn_on_totp(client, user_headers)

    response = await client.delete(TOTP, headers=user_headers)
    account = await (await client.get(ACCOUNT, headers=user_headers)).get_json()

    assert response.status_code == 204
    assert (account["totp"], account["recovery_codes_left"]) == (False, 0)


async def test_turning_totp_off_when_it_is_not_on_is_404(
    client: Client, user_headers: dict[str, str]
) -> None:
    await enrol(client, user_headers)  # pending only

    response = await client.delete(TOTP, headers=user_headers)

    assert response.status_code == 404
    assert await response.get_json() == {"error": "TOTP is not on"}


async def test_new_recovery_codes_kill_the_old_ones(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    user: User,
    user_headers: dict[str, str],
) -> None:
    _, old = await turn_on_totp(client, user_headers)

    response = await client.post(RECOVERY, headers=user_headers)
    new = (await response.get_json())["recovery_codes"]
    factors = FactorService(session, settings)

    assert response.status_code == 200
    assert len(new) == 10
    assert not set(new) & set(old)
    assert await factors.use_recovery_code(user.id, old[0]) is False
    assert await factors.use_recovery_code(user.id, new[0]) is True
    assert await factors.use_recovery_code(user.id, new[0]) is False
    await session.commit()
    account = await (await client.get(ACCOUNT, headers=user_headers)).get_json()
    assert account["recovery_codes_left"] == 9


async def test_new_recovery_codes_need_a_factor(
    client: Client, user_headers: dict[str, str]
) -> None:
    response = await client.post(RECOVERY, headers=user_headers)

    assert response.status_code == 409
    assert await response.get_json() == {"error": "Turn on a second factor first"}


async def test_a_totp_code_makes_the_session_fresh_once(
    client: Client, session: AsyncSession, user_headers: dict[str, str]
) -> None:
    secret, _ = await turn_on_totp(client, user_headers)
    await make_stale(session, user_headers)
    code = next_code(secret)

    first = await client.post(FRESH, headers=user_headers, json={"code": code})
    replayed = await client.post(FRESH, headers=user_headers, json={"code": code})
    again = await client.post(RECOVERY, headers=user_headers)

    assert first.status_code == 204
    assert replayed.status_code == 401
    assert await replayed.get_json() == INVALID_CODE
    assert again.status_code == 200


async def test_a_code_makes_nothing_fresh_without_totp(
    client: Client, user_headers: dict[str, str]
) -> None:
    response = await client.post(FRESH, headers=user_headers, json={"code": "123456"})

    assert response.status_code == 401
    assert await response.get_json() == INVALID_CODE


async def test_post_fresh_takes_a_password_or_a_code_not_both(
    client: Client, user_headers: dict[str, str]
) -> None:
    both = await client.post(
        FRESH, headers=user_headers, json={"password": PASSWORD, "code": "123456"}
    )
    neither = await client.post(FRESH, headers=user_headers, json={})

    for response in both, neither:
        assert response.status_code == 400
        assert await response.get_json() == {"error": "Send either password or code"}
