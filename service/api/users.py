"""Routes for /users."""

from __future__ import annotations

from functools import wraps
from typing import Any

from marshmallow import ValidationError
from quart import Blueprint

from service.api import guards
from service.api.deps import post_service, user_service
from service.api.guards import (
    admin_required,
    jwt_required,
    self_or_admin_required,
    signed_in_page,
)
from service.api.io import View, body, document_errors, read_json, returns
from service.api.limits import REGISTRATION, limited
from service.models import UserRecord
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
from service.services.users import EMAIL_TAKEN

blueprint = Blueprint("users", __name__, url_prefix="/users")


def taken_email_reported(view: View) -> View:
    """A taken address is reported with the body's other errors, as Flask does.

    Flask's schema checks the address among its fields, so one 400 lists it
    next to, say, an unknown field; the unique index alone would report it
    only once the rest of the body is valid.
    """

    @wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await view(*args, **kwargs)
        except ValidationError as error:
            raise await _with_taken_email(error) from None

    return wrapper


async def _with_taken_email(error: ValidationError) -> ValidationError:
    messages = error.messages
    # An "email" error already says what is wrong with the address.
    if not isinstance(messages, dict) or "email" in messages:
        return error
    payload = await read_json()
    email = payload.get("email") if isinstance(payload, dict) else None
    if not isinstance(email, str) or await user_service().get_by_email(email) is None:
        return error
    return ValidationError({**messages, "email": [EMAIL_TAKEN]})


@blueprint.post("")
@taken_email_reported
@body(UserCreateSchema)
@returns(UserSchema, status=201)
@limited(REGISTRATION)
async def create_user(data: NewUser) -> UserRecord:
    """Register a new user."""
    return UserRecord.of(await user_service().register(data))


@signed_in_page(blueprint.get(""), UserListQuerySchema, UserPageSchema)
async def list_users(query_args: UserListQuery) -> dict[str, Any]:
    """List live users, newest first."""
    return (await user_service(readonly=True).list_page(**query_args)).envelope("users")


@blueprint.get("/me")
@jwt_required()
@returns(UserSchema)
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
async def update_user(user_id: int, data: UserChanges) -> UserRecord:
    """Change names or the active flag of oneself, or of anyone as an admin."""
    return UserRecord.of(await user_service().update(user_id, data))


@signed_in_page(blueprint.get("/<int:user_id>/posts"), PageQuerySchema, PostPageSchema)
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
async def restore_user(user_id: int) -> UserRecord:
    """Undo a soft delete (admin)."""
    return UserRecord.of(await user_service().restore(user_id))


@blueprint.delete("/<int:user_id>")
@jwt_required()
@admin_required
@returns(None, status=204)
async def delete_user(user_id: int) -> None:
    """Soft-delete a user (admin)."""
    await user_service().soft_delete(user_id)
