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


async def test_create_token_access_decodes_in_flask_with_its_claims(
    flask_tokens: FlaskIssuer,
) -> None:
    token = create_token(
        user_id=42,
        token_type="access",
        key=KEY,
        expires_in=ACCESS_LIFETIME,
        additional_claims={"is_admin": True},
    )

    claims = flask_tokens.decode(token)

    iat = claims["iat"]
    assert isinstance(iat, int)
    assert abs(iat - time.time()) < 5
    assert _is_uuid4(claims["jti"])
    assert _is_uuid4(claims["csrf"])
    assert claims == {
        "fresh": False,
        "iat": iat,
        "jti": claims["jti"],
        "type": "access",
        "sub": "42",
        "nbf": iat,
        "csrf": claims["csrf"],
        "exp": iat + ACCESS_LIFETIME,
        "is_admin": True,
    }


async def test_create_token_refresh_decodes_in_flask_without_is_admin(
    flask_tokens: FlaskIssuer,
) -> None:
    token = create_token(
        user_id=42, token_type="refresh", key=KEY, expires_in=REFRESH_LIFETIME
    )

    claims = flask_tokens.decode(token)

    iat = claims["iat"]
    assert _is_uuid4(claims["jti"])
    assert _is_uuid4(claims["csrf"])
    assert claims == {
        "fresh": False,
        "iat": iat,
        "jti": claims["jti"],
        "type": "refresh",
        "sub": "42",
        "nbf": iat,
        "csrf": claims["csrf"],
        "exp": iat + REFRESH_LIFETIME,
    }


async def test_create_token_twice_gives_distinct_jti_and_csrf() -> None:
    first, second = (
        jwt.decode(
            create_token(
                user_id=1, token_type="access", key=KEY, expires_in=ACCESS_LIFETIME
            ),
            KEY,
            algorithms=["HS256"],
        )
        for _ in range(2)
    )

    assert first["jti"] != second["jti"]
    assert first["csrf"] != second["csrf"]


@pytest.mark.parametrize("token_type", ["access", "refresh"])
async def test_create_token_header_is_byte_for_byte_flasks(
    flask_tokens: FlaskIssuer, token_type: TokenType
) -> None:
    token = create_token(
        user_id=3,
        token_type=token_type,
        key=KEY,
        expires_in=ACCESS_LIFETIME,
        additional_claims={"is_admin": False} if token_type == "access" else None,
    )
    flask_token = (
        flask_tokens.access(3) if token_type == "access" else flask_tokens.refresh(3)
    )

    assert _segment(token, 0) == FLASK_HEADER
    assert token.split(".")[0] == flask_token.split(".")[0]


@pytest.mark.parametrize(
    ("token_type", "keys"), [("access", ACCESS_KEYS), ("refresh", REFRESH_KEYS)]
)
async def test_create_token_payload_keys_in_flasks_order(
    flask_tokens: FlaskIssuer, token_type: TokenType, keys: list[str]
) -> None:
    token = create_token(
        user_id=3,
        token_type=token_type,
        key=KEY,
        expires_in=ACCESS_LIFETIME,
        additional_claims={"is_admin": False} if token_type == "access" else None,
    )
    flask_token = (
        flask_tokens.access(3) if token_type == "access" else flask_tokens.refresh(3)
    )

    assert list(json.loads(_segment(token, 1))) == keys
    assert list(json.loads(_segment(flask_token, 1))) == keys


async def test_create_token_payload_is_compact_json() -> None:
    token = create_token(
        user_id=3,
        token_type="access",
        key=KEY,
        expires_in=ACCESS_LIFETIME,
        additional_claims={"is_admin": True},
    )

    payload = _segment(token, 1)

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
Mint = Callable[[FlaskIssuer], str]
REJECTED: list[Any] = [
    pytest.param(
        lambda f: f.access(1, expires_delta=timedelta(seconds=-60)),
        "access",
        AuthError,
        401,
        "Token has expired",
        id="expired-access",
    ),
    pytest.param(
        lambda f: f.refresh(1, expires_delta=timedelta(seconds=-60)),
        "refresh",
        AuthError,
        401,
        "Token has expired",
        id="expired-refresh",
    ),
    pytest.param(
        lambda f: FlaskIssuer(OTHER_KEY).access(1),
        "access",
        InvalidTokenError,
        422,
        "Signature verification failed",
        id="wrong-key",
    ),
    pytest.param(
        lambda f: alg_none(f.access(1)),
        "access",
        InvalidTokenError,
        422,
        "The specified alg value is not allowed",
        id="alg-none",
    ),
    pytest.param(
        lambda f: "abc",
        "access",
        InvalidTokenError,
        422,
        "Not enough segments",
        id="one-segment",
    ),
    pytest.param(
        lambda f: "a.b.c",
        "access",
        InvalidTokenError,
        422,
        "Invalid header padding",
        id="bad-segments",
    ),
    pytest.param(
        lambda f: FlaskIssuer(KEY, string_identity=False).access(1),
        "access",
        InvalidTokenError,
        422,
        "Subject must be a string",
        id="int-sub",
    ),
    pytest.param(
        lambda f: _signed(_claims(sub=None)),
        "access",
        InvalidTokenError,
        422,
        "Missing claim: sub",
        id="missing-sub",
    ),
    pytest.param(
        lambda f: f.refresh(1),
        "access",
        InvalidTokenError,
        422,
        "Only non-refresh tokens are allowed",
        id="refresh-as-access",
    ),
    pytest.param(
        lambda f: f.access(1),
        "refresh",
        InvalidTokenError,
        422,
        "Only refresh tokens are allowed",
        id="access-as-refresh",
    ),
    pytest.param(
        lambda f: _signed(_claims(type=None)),
        "refresh",
        InvalidTokenError,
        422,
        "Only refresh tokens are allowed",
        id="no-type-as-refresh",
    ),
    pytest.param(
        lambda f: _signed(_claims(), "HS384"),
        "access",
        InvalidTokenError,
        422,
        "The specified alg value is not allowed",
        id="hs384",
    ),
    pytest.param(
        lambda f: _signed(_claims(), "HS512"),
        "access",
        InvalidTokenError,
        422,
        "The specified alg value is not allowed",
        id="hs512",
    ),
    pytest.param(
        lambda f: _signed(_claims(iat=IN_AN_HOUR)),
        "access",
        InvalidTokenError,
        422,
        "The token is not yet valid (iat)",
        id="iat-in-future",
    ),
    pytest.param(
        lambda f: _signed(_claims(nbf=IN_AN_HOUR)),
        "access",
        InvalidTokenError,
        422,
        "The token is not yet valid (nbf)",
        id="nbf-in-future",
    ),
]


@pytest.mark.parametrize(
    ("mint", "expected_type", "error_class", "status", "message"), REJECTED
)
async def test_decode_token_bad_token_raises_flasks_error(
    flask_tokens: FlaskIssuer,
    mint: Mint,
    expected_type: TokenType,
    error_class: type[AppError],
    status: int,
    message: str,
) -> None:
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
