"""Routes for /users."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError
from quart import Blueprint
from quart_schema import tag_blueprint

from service.api import guards
from service.api.deps import outbox, post_service, settings, user_service
from service.api.guards import (
    admin_required,
    jwt_required,
    self_or_admin_required,
    without_second_factor,
)
from service.api.io import body, document_errors, query, returns
from service.api.limits import REGISTRATION, limited
from service.db.request import request_session
from service.models import User, UserRecord
from service.schemas.common import PageQuery, PageQuerySchema
from service.schemas.post import PostPageSchema
from service.schemas.user import (
    NewUser,
    UserChanges,
    UserCreateSchema,
    UserListQuery,
    UserListQuerySchema,
    UserPageSchema,
    UserSchema,
    UserUpdateSchema,
)
from service.services.email import EmailService

blueprint = Blueprint("users", __name__, url_prefix="/users")
tag_blueprint(blueprint, ["users"])


async def _with_taken_email(error: ValidationError, payload: Any) -> ValidationError:
    # Flask reports a taken address with the body's other errors: the rule is
    # UserService's; @body hands it the refused body.
    return await user_service().with_taken_email(error, payload)


@blueprint.post("")
@body(UserCreateSchema, invalid=_with_taken_email)
@returns(UserSchema, status=201)
@limited(REGISTRATION)
async def create_user(data: NewUser) -> User:
    """Register a new user (with REQUIRE_VERIFIED_EMAIL, mailed a link to verify)."""
    user = await user_service().register(data)
    if settings().require_verified_email:
        mail = EmailService(request_session(), settings()).verification_mail(user)
        if mail is not None:
            outbox().submit(mail)
    return user


@blueprint.get("")
@jwt_required()
@query(UserListQuerySchema)
@returns(UserPageSchema)
async def list_users(query_args: UserListQuery) -> dict[str, Any]:
    """List live users, newest first."""
    return (await user_service(readonly=True).list_page(**query_args)).envelope("users")


@blueprint.get("/me")
@jwt_required()
@returns(UserSchema)
@document_errors(404)  # the account is gone (REVOCATION_CHECK=false)
@without_second_factor
async def get_current_user() -> UserRecord:
    """The calling user."""
    return await guards.get_current_user()


@blueprint.get("/<int:user_id>")
@jwt_required()
@returns(UserSchema)
async def get_user(user_id: int) -> UserRecord:
    """One live user."""
    return await user_service(readonly=True).record(user_id)


@blueprint.patch("/<int:user_id>")
@jwt_required()
@self_or_admin_required("user_id")
@body(UserUpdateSchema)
@returns(UserSchema)
async def update_user(user_id: int, data: UserChanges) -> User:
    """Change names or the active flag of oneself, or of anyone as an admin."""
    return await user_service().update(user_id, data)


@blueprint.get("/<int:user_id>/posts")
@jwt_required()
@query(PageQuerySchema)
@returns(PostPageSchema)
async def list_user_posts(user_id: int, query_args: PageQuery) -> dict[str, Any]:
    """List one live user's posts, newest first."""
    await user_service(readonly=True).record(user_id)
    posts = post_service(readonly=True)
    return (await posts.list_page(author_id=user_id, **query_args)).envelope("posts")


@blueprint.post("/<int:user_id>/restore")
@jwt_required()
@admin_required
@returns(UserSchema)
@document_errors(409)
async def restore_user(user_id: int) -> User:
    """Undo a soft delete (admin)."""
    return await user_service().restore(user_id)


@blueprint.delete("/<int:user_id>")
@jwt_required()
@admin_required
@returns(None, status=204)
async def delete_user(user_id: int) -> None:
    """Soft-delete a user (admin)."""
    await user_service().soft_delete(user_id)
