"""Routes for /auth."""

from __future__ import annotations

from quart import Blueprint

from service.api.deps import auth_service
from service.api.guards import current_identity, jwt_required
from service.api.io import body, returns
from service.schemas.auth import (
    AccessTokenSchema,
    Credentials,
    LoginSchema,
    MessageSchema,
    TokenPairSchema,
)
from service.services.auth import AccessToken, TokenPair

blueprint = Blueprint("auth", __name__, url_prefix="/auth")


@blueprint.post("/login")
@body(LoginSchema)
@returns(TokenPairSchema)
async def login(data: Credentials) -> TokenPair:
    """Exchange an email and password for an access and a refresh token."""
    return await auth_service().login(data["email"], data["password"])


@blueprint.post("/refresh")
@jwt_required(refresh=True)
@returns(AccessTokenSchema)
async def refresh() -> AccessToken:
    """A new access token for a refresh token."""
    return await auth_service().refresh(current_identity())


@blueprint.post("/logout")
@jwt_required()
@returns(MessageSchema)
async def logout() -> dict[str, str]:
    """End the session of this token."""
    return {"message": "Successfully logged out"}
