"""Who a token belongs to: the check every protected request makes, in one query."""

from __future__ import annotations

from dataclasses import dataclass, replace

from service.config import Settings
from service.errors import AuthError
from service.models import UserRecord
from service.security.tokens import Identity, TokenType, decode_token
from service.services.users import UserService

REVOKED = "Token has been revoked"


@dataclass(frozen=True, slots=True)
class Caller:
    """A verified token and, when revocation is checked, its user's live row."""

    identity: Identity
    user: UserRecord | None


async def identify(
    users: UserService,
    token: str,
    expected_type: TokenType,
    settings: Settings,
) -> Caller:
    """Decode the token; with revocation on, load and check its user and session.

    Revoked sessions and tokens, deleted and deactivated users all answer
    401 "Token has been revoked", and so do Flask-era tokens (no session)
    once ACCEPT_LEGACY_TOKENS is off: a Flask client logs in again on it.
    """
    identity = decode_token(
        token, key=settings.jwt_secret_key, expected_type=expected_type
    )
    if identity.session_id is None and not settings.accept_legacy_tokens:
        raise AuthError(REVOKED, legacy_msg=True)
    if not settings.revocation_check:
        return Caller(identity, None)
    user = await users.token_holder(
        identity, touch_interval=settings.session_touch_interval
    )
    if user is None:
        raise AuthError(REVOKED, legacy_msg=True)
    # Admin rights come from the row, so a demoted admin loses them at once.
    return Caller(replace(identity, is_admin=user.is_admin), user)
