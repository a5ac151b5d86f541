"""Routes for /auth: tokens, password change and sessions."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import tag, tag_blueprint

from service.api.account import record_ended
from service.api.deps import (
    auth_service,
    client,
    outbox,
    session_service,
    settings,
    user_service,
)
from service.api.guards import (
    current_caller,
    current_identity,
    fresh_required,
    get_jwt_identity,
    jwt_required,
    without_second_factor,
)
from service.api.io import body, document_errors, returns
from service.api.limits import (
    LOGIN_BUDGET,
    RESET_MAIL_PER_ADDRESS,
    RESET_MAIL_PER_CLIENT,
    RESET_PER_CLIENT,
    limited,
)
from service.schemas.auth import (
    Credentials,
    ForgotPassword,
    ForgotPasswordSchema,
    LoginSchema,
    MessageSchema,
    PasswordChange,
    PasswordChangeSchema,
    PasswordReset,
    PasswordResetSchema,
    RefreshedTokensSchema,
    SessionListSchema,
    TokenPairSchema,
)
from service.schemas.security import (
    FreshSchema,
    MfaLogin,
    MfaLoginSchema,
    Reauthentication,
    SecondFactorRequiredSchema,
)
from service.services.auth import AccessToken, TokenPair
from service.services.events import Detail

blueprint = Blueprint("auth", __name__, url_prefix="/auth")
tag_blueprint(blueprint, ["authentication"])


@blueprint.post("/login")
@body(LoginSchema)
@returns(TokenPairSchema)
@document_errors(401, schema=SecondFactorRequiredSchema)
@document_errors(403)  # REQUIRE_VERIFIED_EMAIL and an unverified address
@limited(LOGIN_BUDGET)
async def login(data: Credentials) -> TokenPair:
    """Exchange an email and password for an access and a refresh token.

    An account with a second factor answers the right password with 401
    `Second factor required`, an `mfa_token` and the account's `methods`:
    the login goes on at POST /auth/login/mfa (or with a passkey).
    """
    return await auth_service().login(data["email"], data["password"], client=client())


@blueprint.post("/login/mfa")
@body(MfaLoginSchema)
@returns(TokenPairSchema)
@document_errors(401)
@limited(LOGIN_BUDGET)
async def login_mfa(data: MfaLogin) -> TokenPair:
    """Finish a login with its second factor: a TOTP code or a recovery code.

    401 `Invalid code` spends the account's login budget (429 past it), as a
    wrong password does; 401 `Invalid or expired mfa_token` for a token that is
    unknown, used, older than 5 minutes, or from before a password change.
    """
    return await auth_service().login_with_code(
        data["mfa_token"],
        code=data.get("code"),
        recovery_code=data.get("recovery_code"),
        client=client(),
    )


@blueprint.post("/refresh")
@jwt_required(refresh=True)
@returns(RefreshedTokensSchema)
@document_errors(404)  # the account is gone (REVOCATION_CHECK=false)
async def refresh() -> AccessToken | TokenPair:
    """A new access token (and, with rotation on, a new refresh token)."""
    return await auth_service().refresh(current_caller(), client=client())


@blueprint.post("/logout")
@jwt_required()
@returns(MessageSchema)
@without_second_factor
async def logout() -> dict[str, str]:
    """End the session of this token: its access and refresh tokens stop working."""
    await auth_service().logout(current_identity(), client=client())
    return {"message": "Successfully logged out"}


@blueprint.post("/password")
@jwt_required()
@body(PasswordChangeSchema)
@returns(None, status=204)
@document_errors(404)  # the account is gone (REVOCATION_CHECK=false)
@limited(LOGIN_BUDGET)
async def change_password(data: PasswordChange) -> None:
    """Change one's password; every session of the user ends."""
    user = await user_service().get(get_jwt_identity())
    await auth_service().change_password(
        user, data["current_password"], data["new_password"], client=client()
    )


@blueprint.post("/password/forgot")
@body(ForgotPasswordSchema)
@returns(MessageSchema, status=202)
@limited(RESET_MAIL_PER_CLIENT, RESET_MAIL_PER_ADDRESS)
async def forgot_password(data: ForgotPassword) -> dict[str, str]:
    """Mail a reset link; the same answer, in the same time, for any address."""
    mail = await auth_service().forgot_password(data["email"])
    if mail is not None:
        outbox().submit(mail)
    return {"message": "If the address is registered, a reset link is on its way"}


@blueprint.post("/password/reset")
@body(PasswordResetSchema)
@returns(None, status=204)
@limited(RESET_PER_CLIENT)
async def reset_password(data: PasswordReset) -> None:
    """Set a new password with a reset token; every session of the user ends."""
    await auth_service().reset_password(
        data["token"], data["new_password"], client=client()
    )


@blueprint.get("/sessions")
@tag(["sessions"])
@jwt_required()
@returns(SessionListSchema)
@without_second_factor
async def list_sessions() -> dict[str, Any]:
    """The caller's live sessions, the current one marked."""
    identity = current_identity()
    live = await session_service(readonly=True).live(
        identity.user_id, max_idle=settings().refresh_token_expires
    )
    return {
        "sessions": [
            {
                "id": row.id,
                "created_at": row.created_at,
                "last_used_at": row.last_used_at,
                "user_agent": row.user_agent,
                "ip": row.ip,
                "current": row.id == identity.session_id,
            }
            for row in live
        ]
    }


@blueprint.delete("/sessions/<session_id>")
@tag(["sessions"])
@jwt_required()
@returns(None, status=204)
@without_second_factor
async def revoke_session(session_id: str) -> None:
    """Revoke one of one's own sessions."""
    user_id = current_identity().user_id
    sessions = session_service()
    await sessions.revoke(session_id, user_id=user_id)
    await record_ended(sessions, user_id, Detail.REVOKED)


@blueprint.delete("/sessions")
@tag(["sessions"])
@jwt_required()
@fresh_required
@returns(None, status=204)
@document_errors(404)  # the account is gone (REVOCATION_CHECK=false)
@without_second_factor
async def revoke_other_sessions() -> None:
    """Log out every session but this one (a fresh session: see POST /auth/fresh)."""
    user = await user_service().get(get_jwt_identity())
    sessions = session_service()
    await sessions.revoke_others(user, keep=current_identity().session_id)
    await record_ended(sessions, user.id, Detail.OTHERS_REVOKED)


@blueprint.post("/fresh")
@tag(["sessions"])
@jwt_required()
@body(FreshSchema)
@returns(None, status=204)
@document_errors(404)  # the account is gone (REVOCATION_CHECK=false)
@limited(LOGIN_BUDGET)
@without_second_factor
async def make_fresh(data: Reauthentication) -> None:
    """Authenticate again: the session counts as fresh for FRESH_SESSION_SECONDS.

    With the password, or a TOTP code. A wrong one answers 401 `Invalid
    password` or `Invalid code` and spends the account's login budget; a token
    without a session (Flask-era) answers 401 `Fresh token required`: log in again.
    """
    user = await user_service().get(get_jwt_identity())
    await auth_service().make_fresh(
        current_identity(),
        user,
        password=data.get("password"),
        code=data.get("code"),
        client=client(),
    )
