"""service.security.tokens against flask-jwt-extended 4.7.4, in both directions."""

from __future__ import annotations

import base64
import json
import time
import uuid
import warnings
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import jwt
import pytest

from service.errors import AppError, AuthError, InvalidTokenError
from service.security.tokens import TokenType, create_token, decode_token
from tests.flask_tokens import FlaskIssuer, alg_none
from tests.support import cases

# Long enough for HS256 without PyJWT's short-key warning (an error here).
KEY = "tokens-test-jwt-secret-key-0123456789-abcdefghij"
OTHER_KEY = "another-jwt-secret-key-0123456789-abcdefghijklm"
ACCESS_LIFETIME = 900
REFRESH_LIFETIME = 2592000
FLASK_HEADER = b'{"alg":"HS256","typ":"JWT"}'
ACCESS_KEYS = ["fresh", "iat", "jti", "type", "sub", "nbf", "csrf", "exp", "is_admin"]
REFRESH_KEYS = ACCESS_KEYS[:-1]


def _segment(token: str, index: int) -> bytes:
    part = token.split(".")[index]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "fresh": False,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "type": "access",
        "sub": "1",
        "nbf": now,
        "csrf": str(uuid.uuid4()),
        "exp": now + ACCESS_LIFETIME,
        "is_admin": False,
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def _signed(claims: dict[str, Any], algorithm: str = "HS256") -> str:
    # The test key is short for HS384/HS512; the warning is not what is tested.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, KEY, algorithm=algorithm)


@pytest.fixture
def flask_tokens() -> FlaskIssuer:
    return FlaskIssuer(KEY)


def _is_uuid4(value: str) -> bool:
    return uuid.UUID(value).version == 4 and str(uuid.UUID(value)) == value


def ours(token_type: TokenType, **claims: Any) -> str:
    """This service's token for user 3 (42 where the test says), as login mints it."""
    user_id = claims.pop("user_id", 3)
    return create_token(
        user_id=user_id,
        token_type=token_type,
        key=KEY,
        expires_in=REFRESH_LIFETIME if token_type == "refresh" else ACCESS_LIFETIME,
        additional_claims=claims or None,
    )


@pytest.mark.parametrize(
    ("token_type", "claims", "lifetime"),
    [
        pytest.param("access", {"is_admin": True}, ACCESS_LIFETIME, id="access"),
        # A refresh token carries no is_admin.
        pytest.param("refresh", {}, REFRESH_LIFETIME, id="refresh"),
    ],
)
async def test_create_token_decodes_in_flask_with_its_claims(
    flask_tokens: FlaskIssuer,
    token_type: TokenType,
    claims: dict[str, Any],
    lifetime: int,
) -> None:
    token = ours(token_type, user_id=42, **claims)

    decoded = flask_tokens.decode(token)

    iat = decoded["iat"]
    assert isinstance(iat, int)
    assert abs(iat - time.time()) < 5
    assert _is_uuid4(decoded["jti"])
    assert _is_uuid4(decoded["csrf"])
    assert decoded == {
        "fresh": False,
        "iat": iat,
        "jti": decoded["jti"],
        "type": token_type,
        "sub": "42",
        "nbf": iat,
        "csrf": decoded["csrf"],
        "exp": iat + lifetime,
        **claims,
    }


async def test_create_token_twice_gives_distinct_jti_and_csrf() -> None:
    first, second = (
        jwt.decode(ours("access"), KEY, algorithms=["HS256"]) for _ in range(2)
    )

    assert first["jti"] != second["jti"]
    assert first["csrf"] != second["csrf"]


def ours_and_flasks(flask_tokens: FlaskIssuer, token_type: TokenType) -> list[str]:
    """The same kind of token for user 3, minted here and by flask-jwt-extended."""
    if token_type == "access":
        return [ours("access", is_admin=False), flask_tokens.access(3)]
    return [ours("refresh"), flask_tokens.refresh(3)]


@pytest.mark.parametrize("token_type", ["access", "refresh"])
async def test_create_token_header_is_byte_for_byte_flasks(
    flask_tokens: FlaskIssuer, token_type: TokenType
) -> None:
    token, flask_token = ours_and_flasks(flask_tokens, token_type)

    assert _segment(token, 0) == FLASK_HEADER
    assert token.split(".")[0] == flask_token.split(".")[0]


@pytest.mark.parametrize(
    ("token_type", "keys"), [("access", ACCESS_KEYS), ("refresh", REFRESH_KEYS)]
)
async def test_create_token_payload_keys_in_flasks_order(
    flask_tokens: FlaskIssuer, token_type: TokenType, keys: list[str]
) -> None:
    tokens = ours_and_flasks(flask_tokens, token_type)

    assert [list(json.loads(_segment(token, 1))) for token in tokens] == [keys, keys]


async def test_create_token_payload_is_compact_json() -> None:
    payload = _segment(ours("access", is_admin=True), 1)

    assert payload == json.dumps(json.loads(payload), separators=(",", ":")).encode()


async def test_decode_token_flask_access_token_accepted(
    flask_tokens: FlaskIssuer,
) -> None:
    token = flask_tokens.access(17, is_admin=True)

    identity = decode_token(token, key=KEY, expected_type="access")

    assert identity.user_id == 17
    assert identity.token_type == "access"
    assert identity.is_admin is True
    assert identity.jti == flask_tokens.decode(token)["jti"]


async def test_decode_token_flask_refresh_token_accepted(
    flask_tokens: FlaskIssuer,
) -> None:
    token = flask_tokens.refresh(17)

    identity = decode_token(token, key=KEY, expected_type="refresh")

    assert identity.user_id == 17
    assert identity.token_type == "refresh"
    assert identity.is_admin is False


async def test_decode_token_without_type_treated_as_access() -> None:
    token = _signed(_claims(type=None, sub="8"))

    identity = decode_token(token, key=KEY, expected_type="access")

    assert identity.user_id == 8
    assert identity.token_type == "access"


IN_AN_HOUR = int(time.time()) + 3600
AN_HOUR_AGO = timedelta(seconds=-60)
Mint = Callable[[FlaskIssuer], str]
Refusal = tuple[type[AppError], int, str]


def invalid(message: str) -> Refusal:
    return InvalidTokenError, 422, message


EXPIRED: Refusal = (AuthError, 401, "Token has expired")
WRONG_ALG = invalid("The specified alg value is not allowed")
ACCESS_ONLY = invalid("Only non-refresh tokens are allowed")
REFRESH_ONLY = invalid("Only refresh tokens are allowed")
# What a token is, what it was presented as, and what flask-jwt-extended answers.
REJECTED: dict[str, tuple[Mint, str, Refusal]] = {
    "expired-access": (
        lambda f: f.access(1, expires_delta=AN_HOUR_AGO),
        "access",
        EXPIRED,
    ),
    "expired-refresh": (
        lambda f: f.refresh(1, expires_delta=AN_HOUR_AGO),
        "refresh",
        EXPIRED,
    ),
    "wrong-key": (
        lambda f: FlaskIssuer(OTHER_KEY).access(1),
        "access",
        invalid("Signature verification failed"),
    ),
    "alg-none": (lambda f: alg_none(f.access(1)), "access", WRONG_ALG),
    "one-segment": (lambda f: "abc", "access", invalid("Not enough segments")),
    "bad-segments": (lambda f: "a.b.c", "access", invalid("Invalid header padding")),
    "int-sub": (
        lambda f: FlaskIssuer(KEY, string_identity=False).access(1),
        "access",
        invalid("Subject must be a string"),
    ),
    "missing-sub": (
        lambda f: _signed(_claims(sub=None)),
        "access",
        invalid("Missing claim: sub"),
    ),
    "refresh-as-access": (lambda f: f.refresh(1), "access", ACCESS_ONLY),
    "access-as-refresh": (lambda f: f.access(1), "refresh", REFRESH_ONLY),
    "no-type-as-refresh": (
        lambda f: _signed(_claims(type=None)),
        "refresh",
        REFRESH_ONLY,
    ),
    "hs384": (lambda f: _signed(_claims(), "HS384"), "access", WRONG_ALG),
    "hs512": (lambda f: _signed(_claims(), "HS512"), "access", WRONG_ALG),
    "iat-in-future": (
        lambda f: _signed(_claims(iat=IN_AN_HOUR)),
        "access",
        invalid("The token is not yet valid (iat)"),
    ),
    "nbf-in-future": (
        lambda f: _signed(_claims(nbf=IN_AN_HOUR)),
        "access",
        invalid("The token is not yet valid (nbf)"),
    ),
}


@cases("mint, expected_type, refusal", REJECTED)
async def test_decode_token_bad_token_raises_flasks_error(
    flask_tokens: FlaskIssuer, mint: Mint, expected_type: TokenType, refusal: Refusal
) -> None:
    error_class, status, message = refusal
    token = mint(flask_tokens)

    with pytest.raises(AppError) as raised:
        decode_token(token, key=KEY, expected_type=expected_type)

    assert type(raised.value) is error_class
    assert raised.value.status_code == status
    assert raised.value.body() == {"msg": message, "error": message}


@pytest.mark.parametrize("subject", ["abc", "-1", "99999999999", "", "1.5", "0x1"])
async def test_decode_token_non_numeric_sub_is_invalid_token(
    flask_tokens: FlaskIssuer, subject: str
) -> None:
    # Validly signed, so only the service's own check stands between it and int().
    token = flask_tokens.access(subject)

    with pytest.raises(AppError) as raised:
        decode_token(token, key=KEY, expected_type="access")

    assert type(raised.value) is InvalidTokenError
    assert raised.value.status_code == 422
    body = raised.value.body()
    assert set(body) == {"msg", "error"}
    assert body["msg"] == body["error"]
