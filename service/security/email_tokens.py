"""Tokens mailed to prove an address: verification and address change.

Each is a JWT under a key of its own (derived from SECRET_KEY, so it never
verifies as an access or a reset token), naming the user and bound, by an
HMAC fingerprint, to the state it may change:

- a verification token to the address and its unverified state: verifying
  (single use) or any change of address ends it;
- a change token to the current address and the new one: confirming (single
  use: the current address is no longer the one it names) or any other change
  ends it.

Nothing is stored: the row's state is the token's use count.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import jwt

from service.errors import BadRequestError

ALGORITHM = "HS256"
Purpose = Literal["email_verify", "email_change"]
INVALID = {
    "email_verify": "Invalid or expired verification token",
    "email_change": "Invalid or expired confirmation token",
}
MAX_USER_ID = 2**31 - 1


def _key(key: str, purpose: Purpose) -> str:
    return hmac.new(key.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def _state(email: str, marker: str) -> str:
    return f"{email.lower()}\x00{marker}"


def verify_state(email: str, verified_at: datetime | None) -> str:
    """What a verification token is bound to: the address, still unverified."""
    return _state(email, verified_at.isoformat() if verified_at else "")


def change_state(current_email: str, new_email: str) -> str:
    """What a change token is bound to: the address it replaces, and the new one."""
    return _state(current_email, new_email.lower())


def _fingerprint(key: str, state: str) -> str:
    return hmac.new(key.encode(), state.encode(), hashlib.sha256).hexdigest()[:32]


def create_email_token(
    purpose: Purpose,
    *,
    user_id: int,
    state: str,
    key: str,
    expires_in: int,
    new_email: str | None = None,
) -> str:
    now = int(time.time())
    payload: dict[str, object] = {
        "sub": str(user_id),
        "type": purpose,
        "state": _fingerprint(key, state),
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + expires_in,
    }
    if new_email is not None:
        payload["new"] = new_email
    return jwt.encode(payload, _key(key, purpose), algorithm=ALGORITHM)


@dataclass(frozen=True, slots=True)
class EmailClaim:
    """A well-signed, unexpired token: whose, for which address (a change's new
    one), and whether it was issued for a given state of the account."""

    user_id: int
    fingerprint: str
    key: str
    new_email: str | None

    def matches(self, state: str) -> bool:
        return hmac.compare_digest(self.fingerprint, _fingerprint(self.key, state))


def decode_email_token(
    purpose: Purpose, token: str, *, key: str, fallbacks: tuple[str, ...] = ()
) -> EmailClaim:
    """The token's claim, signed with `key` or one of `fallbacks`; else a 400."""
    for candidate in (key, *fallbacks):
        try:
            claims = jwt.decode(
                token,
                _key(candidate, purpose),
                algorithms=[ALGORITHM],
                options={"require": ["exp", "sub"]},
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidTokenError:
            break
        subject, fingerprint = claims.get("sub"), claims.get("state")
        new_email = claims.get("new")
        if (
            claims.get("type") != purpose
            or not isinstance(fingerprint, str)
            or not isinstance(subject, str)
            or not (subject.isascii() and subject.isdigit())
            or not 0 < int(subject) <= MAX_USER_ID
            or (purpose == "email_change") != isinstance(new_email, str)
        ):
            break
        return EmailClaim(int(subject), fingerprint, candidate, new_email)
    raise BadRequestError(INVALID[purpose])
