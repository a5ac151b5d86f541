"""Routes for /auth/passkeys: register, list, rename and delete passkeys; sign in
with one (services/passkeys.py holds the WebAuthn ceremonies)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import tag_blueprint

from service.api.deps import auth_service, client, factor_service, passkey_service
from service.api.guards import (
    fresh_required,
    get_current_user,
    get_jwt_identity,
    jwt_required,
    without_second_factor,
)
from service.api.io import body, document_errors, returns
from service.api.limits import LOGIN_BUDGET, limited
from service.models import Passkey
from service.schemas.auth import TokenPairSchema
from service.schemas.passkeys import (
    CreationOptionsSchema,
    NewPasskey,
    NewPasskeySchema,
    PasskeyListSchema,
    PasskeyLogin,
    PasskeyLoginOptions,
    PasskeyLoginOptionsSchema,
    PasskeyLoginSchema,
    PasskeyRename,
    PasskeyRenameSchema,
    PasskeySchema,
    RequestOptionsSchema,
)
from service.services.auth import TokenPair

blueprint = Blueprint("passkeys", __name__, url_prefix="/auth/passkeys")
tag_blueprint(blueprint, ["passkeys"])


@blueprint.post("/options")
@jwt_required()
@fresh_required
@returns(CreationOptionsSchema)
@document_errors(404)  # the account is gone (REVOCATION_CHECK=false)
@without_second_factor  # enrolment (MFA_REQUIRED=all)
async def passkey_options() -> dict[str, Any]:
    """Creation options for navigator.credentials.create(): a new passkey (a
    fresh session: see POST /auth/fresh)."""
    return await passkey_service().registration_options(await get_current_user())


@blueprint.post("")
@jwt_required()
@body(NewPasskeySchema)
@returns(PasskeySchema, status=201)
@document_errors(404, 409)  # the account is gone; the passkey is registered already
@without_second_factor  # enrolment (MFA_REQUIRED=all)
async def register_passkey(data: NewPasskey) -> Passkey:
    """Register the passkey the browser made from the creation options."""
    return await passkey_service().register(
        await get_current_user(), data["credential"], data.get("name"), client=client()
    )


@blueprint.get("")
@jwt_required()
@returns(PasskeyListSchema)
async def list_passkeys() -> dict[str, Any]:
    """The caller's passkeys, oldest first."""
    return {"passkeys": await passkey_service().list(get_jwt_identity())}


@blueprint.patch("/<passkey_id>")
@jwt_required()
@body(PasskeyRenameSchema)
@returns(PasskeySchema)
@document_errors(404)
async def rename_passkey(passkey_id: str, data: PasskeyRename) -> Passkey:
    """Rename one of the caller's passkeys."""
    return await passkey_service().rename(get_jwt_identity(), passkey_id, data["name"])


@blueprint.delete("/<passkey_id>")
@jwt_required()
@fresh_required
@returns(None, status=204)
@document_errors(404)
async def delete_passkey(passkey_id: str) -> None:
    """Delete one of the caller's passkeys: it signs no one in any more (a fresh
    session: see POST /auth/fresh)."""
    await passkey_service().delete(
        await get_current_user(), passkey_id, client=client()
    )


@blueprint.post("/login/options")
@body(PasskeyLoginOptionsSchema)
@returns(RequestOptionsSchema)
@document_errors(401)  # an mfa_token that is unknown, used or expired
async def passkey_login_options(data: PasskeyLoginOptions) -> dict[str, Any]:
    """Request options for navigator.credentials.get(): a passkey alone, or as
    the second factor of a password login (`mfa_token`)."""
    mfa_token = data.get("mfa_token")
    if mfa_token is None:
        return await passkey_service().authentication_options(None)
    return await passkey_service().second_factor_options(factor_service(), mfa_token)


@blueprint.post("/login")
@body(PasskeyLoginSchema)
@returns(TokenPairSchema)
@document_errors(401)
@limited(LOGIN_BUDGET)  # a wrong passkey after a password spends it
async def passkey_login(data: PasskeyLogin) -> TokenPair:
    """Sign in with a passkey, alone or as the second factor of a password login
    (`mfa_token`): a token pair, as a password login gives."""
    mfa_token = data.get("mfa_token")
    if mfa_token is None:
        return await passkey_service().sign_in(
            auth_service(), data["credential"], user_id=None, client=client()
        )
    return await passkey_service().second_factor(
        auth_service(), data["credential"], mfa_token, client=client()
    )
