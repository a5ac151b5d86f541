"""Routes for /posts."""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import tag_blueprint

from service.api.deps import post_service
from service.api.guards import (
    admin_rights_withheld,
    get_current_user,
    get_jwt_identity,
    jwt_required,
)
from service.api.io import body, document_errors, query, returns
from service.models import Post
from service.schemas.common import PageQuery, PageQuerySchema
from service.schemas.post import (
    NewPost,
    PostChanges,
    PostCreateSchema,
    PostPageSchema,
    PostSchema,
    PostUpdateSchema,
)

blueprint = Blueprint("posts", __name__, url_prefix="/posts")
tag_blueprint(blueprint, ["posts"])


@blueprint.get("")
@jwt_required()
@query(PageQuerySchema)
@returns(PostPageSchema)
async def list_posts(query_args: PageQuery) -> dict[str, Any]:
    """List posts, newest first."""
    posts = post_service(readonly=True)
    return (await posts.list_page(**query_args)).envelope("posts")


@blueprint.post("")
@jwt_required()
@body(PostCreateSchema)
@returns(PostSchema, status=201)
async def create_post(data: NewPost) -> Post:
    """Publish a post as the calling user."""
    return await post_service().create(data, author_id=get_jwt_identity())


@blueprint.get("/<int:post_id>")
@jwt_required()
@returns(PostSchema)
async def get_post(post_id: int) -> Post:
    """One post."""
    return await post_service(readonly=True).get(post_id)


@blueprint.patch("/<int:post_id>")
@jwt_required()
@body(PostUpdateSchema)
@returns(PostSchema)
@document_errors(403)
async def update_post(post_id: int, data: PostChanges) -> Post:
    """Change a post's title or content (its author or an admin)."""
    return await post_service().update(
        post_id,
        data,
        by=await get_current_user(),
        admin_withheld=await admin_rights_withheld(),
    )


@blueprint.delete("/<int:post_id>")
@jwt_required()
@returns(None, status=204)
@document_errors(403)
async def delete_post(post_id: int) -> None:
    """Delete a post (its author or an admin)."""
    await post_service().delete(
        post_id,
        by=await get_current_user(),
        admin_withheld=await admin_rights_withheld(),
    )
