"""JWTs, claim for claim as flask-jwt-extended 4.x issues and checks them."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import jwt

from service.errors import AuthError, BadRequestError, InvalidTokenError

TokenType = Literal["access", "refresh"]
ALGORITHM = "HS256"
MAX_USER_ID = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: int
    token_type: TokenType
    jti: str | None
    is_admin: bool
    issued_at: int
    session_id: str | None
    claims: dict[str, Any] = field(repr=False)


def create_token(
    *,
    user_id: int,
    token_type: TokenType,
    key: str,
    expires_in: int,
    additional_claims: dict[str, Any] | None = None,
    now: int | None = None,
    jti: str | None = None,
    csrf: str | None = None,
) -> str:
    issued_at = int(time.time()) if now is None else now
    # Key order matters only for byte-for-byte parity with flask-jwt-extended.
    payload: dict[str, Any] = {
        "fresh": False,
        "iat": issued_at,
        "jti": jti or str(uuid.uuid4()),
        "type": token_type,
        "sub": str(user_id),
        "nbf": issued_at,
        "csrf": csrf or str(uuid.uuid4()),
        "exp": issued_at + expires_in,
    }
    if additional_claims:
        payload.update(additional_claims)
    return jwt.encode(payload, key, algorithm=ALGORITHM)


def decode_token(
    token: str,
    *,
    key: str,
    expected_type: TokenType,
    fallbacks: tuple[str, ...] = (),
) -> Identity:
    """Verify as flask-jwt-extended does: AuthError (401) or InvalidTokenError (422).

    The signature may be the current key's or any of `fallbacks`' (older keys
    while they are rotated out, as JWT_SECRET_KEY_FALLBACKS lists them); tokens
    are only ever signed with the current key.
    """
    claims = _verified_claims(token, key, fallbacks)
    # The memo below checked exp when it first saw the token; time has moved on.
    if "exp" in claims and claims["exp"] <= time.time():
        raise AuthError("Token has expired", legacy_msg=True)
    if "sub" not in claims:
        raise InvalidTokenError("Missing claim: sub", legacy_msg=True)
    token_type = claims.get("type", "access")
    if expected_type == "access" and token_type == "refresh":
        raise InvalidTokenError("Only non-refresh tokens are allowed", legacy_msg=True)
    if expected_type == "refresh" and token_type != "refresh":
        raise InvalidTokenError("Only refresh tokens are allowed", legacy_msg=True)
    return Identity(
        user_id=_user_id(claims["sub"]),
        token_type="refresh" if token_type == "refresh" else "access",
        jti=claims.get("jti"),
        is_admin=bool(claims.get("is_admin")),
        issued_at=int(claims.get("iat", 0)),
        session_id=_optional_str(claims.get("sid")),
        claims=dict(claims),  # the memo's copy stays as verified
    )


@lru_cache(maxsize=4096)
def _verified_claims(
    token: str, key: str, fallbacks: tuple[str, ...]
) -> dict[str, Any]:
    """The claims of a token whose signature, exp, nbf and iat were checked once.

    A client sends the same token for up to 15 minutes; verifying its HMAC and
    parsing its JSON again on each request would be repeated work. Failures
    raise, and lru_cache does not remember them. The memo is keyed by the keys
    too: a fallback removed from the settings verifies nothing any more.
    """
    signature_error: jwt.InvalidTokenError | None = None
    for candidate in (key, *fallbacks):
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                candidate,
                algorithms=[ALGORITHM],
                options={"verify_aud": False},
                leeway=0,
            )
        except jwt.InvalidSignatureError as error:
            signature_error = error  # perhaps an older key's: try the next
            continue
        except jwt.ExpiredSignatureError:
            raise AuthError("Token has expired", legacy_msg=True) from None
        except jwt.InvalidTokenError as error:
            raise InvalidTokenError(str(error), legacy_msg=True) from None
        return claims
    raise InvalidTokenError(str(signature_error), legacy_msg=True)


def _user_id(subject: str) -> int:
    # PyJWT has already insisted on a string; the Flask service then crashed on int().
    if (
        not (subject.isascii() and subject.isdigit())
        or not 0 < int(subject) <= MAX_USER_ID
    ):
        raise InvalidTokenError("Subject must be a user id", legacy_msg=True)
    return int(subject)


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


RESET_TYPE = "password_reset"
INVALID_RESET = "Invalid or expired reset token"


def create_reset_token(
    *, user_id: int, password_hash: str, key: str, expires_in: int
) -> str:
    """A password-reset token, bound to the current hash so it dies with it."""
    now = int(time.time())
    payload = {
        "sub": str(user_id),
        "type": RESET_TYPE,
        "pwd": _fingerprint(key, password_hash),
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + expires_in,
    }
    return jwt.encode(payload, _reset_key(key), algorithm=ALGORITHM)


@dataclass(frozen=True, slots=True)
class ResetClaim:
    """A valid reset token's user, its hash fingerprint, and the key that signed it
    (the fingerprint is that key's HMAC of the hash)."""

    user_id: int
    fingerprint: str
    key: str

    def matches(self, password_hash: str) -> bool:
        """Was the token issued for this very hash? (A changed password ends it.)"""
        return reset_fingerprint_matches(
            self.fingerprint, key=self.key, password_hash=password_hash
        )


def decode_reset_token(
    token: str, *, key: str, fallbacks: tuple[str, ...] = ()
) -> ResetClaim:
    """A valid reset token's claim, signed with `key` or any of `fallbacks`
    (SECRET_KEY_FALLBACKS); else BadRequestError."""
    for candidate in (key, *fallbacks):
        try:
            claims = jwt.decode(
                token,
                _reset_key(candidate),
                algorithms=[ALGORITHM],
                options={"require": ["exp", "sub"]},
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidTokenError:
            break
        fingerprint = claims.get("pwd")
        if claims.get("type") != RESET_TYPE or not isinstance(fingerprint, str):
            break
        try:
            return ResetClaim(_user_id(claims["sub"]), fingerprint, candidate)
        except InvalidTokenError:
            break
    raise BadRequestError(INVALID_RESET)


def reset_fingerprint_matches(
    fingerprint: str, *, key: str, password_hash: str
) -> bool:
    """Was the token issued for this very hash? (A changed password ends it.)"""
    return hmac.compare_digest(fingerprint, _fingerprint(key, password_hash))


def _reset_key(key: str) -> str:
    # Its own key: a reset token must never verify as an access token.
    return hmac.new(key.encode(), b"password-reset", hashlib.sha256).hexdigest()


def _fingerprint(key: str, password_hash: str) -> str:
    return hmac.new(key.encode(), password_hash.encode(), hashlib.sha256).hexdigest()[
        :32
    ]
