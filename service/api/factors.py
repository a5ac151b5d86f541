"""Routes for second factors under /auth: the account's security state, TOTP
and recovery codes."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import tag_blueprint

from service.api.deps import client, factor_service, user_service
from service.api.guards import (
    fresh_required,
    get_jwt_identity,
    jwt_required,
    without_second_factor,
)
from service.api.io import body, document_errors, returns
from service.schemas.security import (
    AccountSchema,
    CodeBody,
    CodeSchema,
    RecoveryCodesSchema,
    TotpEnrolmentSchema,
)
from service.services.factors import Enrolment

blueprint = Blueprint("factors", __name__, url_prefix="/auth")
tag_blueprint(blueprint, ["second factors"])


@blueprint.get("/account")
@jwt_required()
@returns(AccountSchema)
@document_errors(404)  # the account is gone (REVOCATION_CHECK=false)
@without_second_factor
async def account() -> dict[str, object]:
    """The caller's security state: TOTP, passkeys, recovery codes left."""
    user = await user_service().get(get_jwt_identity())
    return await factor_service().account(user)


@blueprint.post("/totp")
@jwt_required()
@fresh_required
@returns(TotpEnrolmentSchema)
@document_errors(404, 409)
@without_second_factor
async def start_totp() -> Enrolment:
    """Start TOTP enrolment (a fresh session): nothing changes until confirmed.

    Again before confirming: a new secret replaces the pending one. 409 while
    TOTP is on.
    """
    user = await user_service().get(get_jwt_identity())
    return await factor_service().start_totp(user)


@blueprint.post("/totp/confirm")
@jwt_required()
@body(CodeSchema)
@returns(RecoveryCodesSchema)
@document_errors(404, 409)
@without_second_factor
async def confirm_totp(data: CodeBody) -> dict[str, list[str]]:
    """Confirm enrolment with a code: TOTP is on, and ten recovery codes are
    shown, once. 400 `Invalid code`."""
    user = await user_service().get(get_jwt_identity())
    codes = await factor_service().confirm_totp(user, data["code"], client=client())
    return {"recovery_codes": codes}


@blueprint.delete("/totp")
@jwt_required()
@fresh_required
@returns(None, status=204)
@document_errors(404)
async def disable_totp() -> None:
    """Turn TOTP off (a fresh session); 404 when it is not on."""
    user = await user_service().get(get_jwt_identity())
    await factor_service().disable_totp(user, client=client())


@blueprint.post("/recovery-codes")
@jwt_required()
@fresh_required
@returns(RecoveryCodesSchema)
@document_errors(404, 409)
async def regenerate_recovery_codes() -> dict[str, list[str]]:
    """Ten new recovery codes (a fresh session); the old ones stop working.
    409 without a second factor."""
    user = await user_service().get(get_jwt_identity())
    codes = await factor_service().regenerate_recovery_codes(user, client=client())
    return {"recovery_codes": codes}
